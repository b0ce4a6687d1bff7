"""An index for the accounts report's last delivery per account (newest sent or failed notification)."""


def upgrade(database):
    # (account_id, status, id) answers "newest id of this account in this status" with one index seek,
    # instead of scanning every notification of the page's accounts.
    database.execute_sql('CREATE INDEX IF NOT EXISTS "notification_account_status_id" '
                         'ON "notification" ("account_id", "status", "id")')
