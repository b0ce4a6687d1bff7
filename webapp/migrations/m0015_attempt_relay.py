"""Each delivery attempt says whose relay took it (its notification's account, or the backup that carried it), with an
index by relay and start: the rate limit counts a relay's attempts of the last 60 seconds as one index range. Before,
the count walked every notification the account ever had (100,000 sent made each of its claims, under SQLite's write
lock, 20 times slower).

Attempts older than an hour keep NULL: the rate looks back 60 seconds only, and filling millions of old rows would
make the upgrade rewrite the whole table."""
from datetime import datetime, timedelta, timezone

from webapp import postgresql

STATEMENTS = [
    'ALTER TABLE "delivery_attempt" ADD COLUMN "relay_account_id" INTEGER REFERENCES "smtp_account" ("id") '
    'ON DELETE SET NULL',
    'CREATE INDEX "delivery_attempt_relay_account_id" ON "delivery_attempt" ("relay_account_id", "started_at")',
]


def upgrade(database):
    for statement in postgresql.schema(database, STATEMENTS):
        database.execute_sql(statement)
    recent = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(hours=1)
    database.execute_sql(
        'UPDATE "delivery_attempt" SET "relay_account_id" = COALESCE("via_account_id", (SELECT "n"."account_id" '
        'FROM "notification" AS "n" WHERE "n"."id" = "delivery_attempt"."notification_id")) '
        f'WHERE "started_at" >= {database.param}', (recent,))
