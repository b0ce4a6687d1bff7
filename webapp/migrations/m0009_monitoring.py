"""Monitoring: each outbox worker's last heartbeat (GET /readyz), and the delivery counters GET /metrics reads,
added to where outcomes are recorded so that every process on every host counts into the same numbers."""
from webapp import postgresql

STATEMENTS = [
    # One row per worker (its name: host:pid:random), rewritten every WORKER_HEARTBEAT_SECONDS.
    'CREATE TABLE "worker_heartbeat" ("name" VARCHAR(100) NOT NULL PRIMARY KEY, "beat_at" DATETIME NOT NULL)',
    # Counters of an account since it was created: name "notifications" (label: final status), "duration_le" (a
    # histogram bucket's upper bound in seconds, counted on its own, not cumulatively), "duration_ms" (label "sum"),
    # "failures" (label: the step that failed), "failovers" (label: the backup account's id).
    'CREATE TABLE "delivery_metric" ("account_id" INTEGER NOT NULL, "name" VARCHAR(16) NOT NULL, '
    '"label" VARCHAR(32) NOT NULL, "value" BIGINT NOT NULL, PRIMARY KEY ("account_id", "name", "label"), '
    'FOREIGN KEY ("account_id") REFERENCES "smtp_account" ("id") ON DELETE CASCADE)',
]


def upgrade(database):
    for statement in postgresql.schema(database, STATEMENTS):
        database.execute_sql(statement)
