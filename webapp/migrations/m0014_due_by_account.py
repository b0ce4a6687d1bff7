"""An index of the notifications waiting to be sent, by account and due time: a claim that finds the oldest due
notifications belong to an account at its limits looks past that account with one index seek per account, instead
of grouping the whole queue (100,000 queued for a rate-limited account made every claim hold SQLite's write lock
for about 100 ms). Partial: rows leave it when claimed, so sending and the delivery history do not maintain it."""
from webapp import postgresql

# One per waiting status (webapp.outbox.settings.WAITING), each matching the claims' "status" = '...' exactly:
# SQLite uses a partial index only for a query whose terms imply its WHERE in so many words.
STATEMENTS = [
    f'CREATE INDEX "notification_{status}_by_account" ON "notification" ("account_id", "next_attempt_at", "id") '
    f'WHERE "status" = \'{status}\'' for status in ("queued", "retrying")
]


def upgrade(database):
    for statement in postgresql.schema(database, STATEMENTS):
        database.execute_sql(statement)
