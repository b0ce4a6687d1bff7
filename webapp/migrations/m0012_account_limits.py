"""Per-account sending limits, set on the account form: at most so many connections open to the relay at once (all
workers together) and at most so many messages started in any 60 seconds. NULL keeps the configured default
(OUTBOX_MAX_CONNECTIONS, OUTBOX_RATE_PER_MINUTE); they replace the OUTBOX_ACCOUNT_LIMITS setting."""
from webapp import postgresql

STATEMENTS = [
    'ALTER TABLE "smtp_account" ADD COLUMN "max_connections" INTEGER CHECK ("max_connections" >= 1)',
    # 0: no limit.
    'ALTER TABLE "smtp_account" ADD COLUMN "rate_per_minute" INTEGER CHECK ("rate_per_minute" >= 0)',
]


def upgrade(database):
    for statement in postgresql.schema(database, STATEMENTS):
        database.execute_sql(statement)
