"""A row in notification_tally for every status from the start, not only once a notification first takes it.

Outbox transactions lock the rows of the statuses they change, in one order, before changing any notification
(db.lock_tally), so that they never deadlock on them. A row that does not exist yet cannot be locked: the first
notification to fail made the "failed" row inside a transaction that had locked the others, and with three workers
recording at once one of them deadlocked there (PostgreSQL; SQLite's one writer cannot)."""

STATUSES = ("queued", "sending", "sent", "retrying", "failed")  # Notification.STATUSES when written


def upgrade(database):
    for status in STATUSES:
        database.execute_sql('INSERT INTO "notification_tally" ("status", "total", "changes") '
                             f'VALUES ({database.param}, 0, 0) ON CONFLICT ("status") DO NOTHING', (status,))
