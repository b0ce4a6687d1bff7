"""The SMTP connections workers keep open to each account between batches: the per-account connection limit counts
them, besides the workers holding the account's leases, so that it holds at the relay across worker processes."""
from webapp import postgresql

STATEMENTS = [
    # One row per worker and account while the worker keeps a connection open to it; written with the outcomes of
    # every batch, deleted when the worker closes the connection. A dead worker's row lapses at "until".
    'CREATE TABLE "outbox_connection" ("account_id" INTEGER NOT NULL REFERENCES "smtp_account" ("id") '
    'ON DELETE CASCADE, "worker" VARCHAR(100) NOT NULL, "until" DATETIME NOT NULL, '
    'PRIMARY KEY ("account_id", "worker"))',
]


def upgrade(database):
    for statement in postgresql.schema(database, STATEMENTS):
        database.execute_sql(statement)
