"""Failover: an account may name a backup account, whose relay carries its notifications while its own fails. The
failover state is kept on the account, in the database, so that every worker on every host agrees on it; each
notification and each attempt says which account's relay carried it when that was a backup."""
from webapp import postgresql

# Added in place, as in m0006 and m0007: playhouse.migrate would rebuild smtp_account, which notifications refer to.
STATEMENTS = [
    # The backup (Conta de contingência); its deletion leaves the account without one.
    'ALTER TABLE "smtp_account" ADD COLUMN "backup_account_id" INTEGER REFERENCES "smtp_account" ("id") '
    'ON DELETE SET NULL',
    'CREATE INDEX "smtp_account_backup_account_id" ON "smtp_account" ("backup_account_id")',
    # Relay failures in a row (since the first of them), the end of the cool-down while failing over, the last
    # relay failure (facts, as a delivery's reply), and the credential (its id and version) that last logged in.
    # Kept by the workers, never by the form, and not audited.
    'ALTER TABLE "smtp_account" ADD COLUMN "failover_failures" INTEGER NOT NULL DEFAULT 0',
    'ALTER TABLE "smtp_account" ADD COLUMN "failover_since" DATETIME',
    'ALTER TABLE "smtp_account" ADD COLUMN "failover_until" DATETIME',
    'ALTER TABLE "smtp_account" ADD COLUMN "failover_reason" TEXT',
    'ALTER TABLE "smtp_account" ADD COLUMN "auth_worked_with" VARCHAR(64)',
    # The backup whose relay carries a notification (set when it is claimed; NULL: its own account's relay). Few rows
    # have one: partial indexes, for the backup's limits and for deleting an account.
    'ALTER TABLE "notification" ADD COLUMN "sent_via_id" INTEGER REFERENCES "smtp_account" ("id") '
    'ON DELETE SET NULL',
    'CREATE INDEX "notification_sent_via_id" ON "notification" ("sent_via_id", "status") '
    'WHERE "sent_via_id" IS NOT NULL',
    'ALTER TABLE "delivery_attempt" ADD COLUMN "via_account_id" INTEGER REFERENCES "smtp_account" ("id") '
    'ON DELETE SET NULL',
    'CREATE INDEX "delivery_attempt_via_account_id" ON "delivery_attempt" ("via_account_id", "started_at") '
    'WHERE "via_account_id" IS NOT NULL',
]


def upgrade(database):
    for statement in postgresql.schema(database, STATEMENTS):
        database.execute_sql(statement)
