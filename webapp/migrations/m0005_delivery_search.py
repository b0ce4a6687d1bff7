"""Deliveries at a million notifications: an index for the recipient search, the counts by status kept by
triggers, and indexes that give each filter of the list in its order (newest first) without sorting."""
from webapp import postgresql

SEARCH = [
    # Every key of every notification (webapp/db.py search_keys(): each display name and address from the start of
    # every word, casefolded): a search is a range of this primary key, an index seek instead of a scan.
    'CREATE TABLE "notification_search" ("key" TEXT NOT NULL, "notification_id" INTEGER NOT NULL, '
    'PRIMARY KEY ("key", "notification_id")) WITHOUT ROWID',
    # The notifications there already (search_keys() returns each key once per notification); in key order, so
    # the table is written from left to right.
    'INSERT INTO "notification_search" ("key", "notification_id") '
    'SELECT "keys"."value", "n"."id" FROM "notification" AS "n", '
    'json_each(search_keys("n"."to_addrs", "n"."cc_addrs", "n"."bcc_addrs")) AS "keys" ORDER BY 1, 2',
    # "Does this notification match?" while walking the list in its order (a common term), and the deletes.
    'CREATE INDEX "notification_search_notification_id" ON "notification_search" ("notification_id")',
    # Triggers, so that every way in (the outbox, the API, bench/seed.py's executemany) keeps the keys.
    'CREATE TRIGGER "notification_search_insert" AFTER INSERT ON "notification" BEGIN '
    'INSERT INTO "notification_search" ("key", "notification_id") '
    'SELECT "value", NEW."id" FROM json_each(search_keys(NEW."to_addrs", NEW."cc_addrs", NEW."bcc_addrs")); END',
    'CREATE TRIGGER "notification_search_update" AFTER UPDATE OF "to_addrs", "cc_addrs", "bcc_addrs" '
    'ON "notification" BEGIN '
    'DELETE FROM "notification_search" WHERE "notification_id" = OLD."id"; '
    'INSERT INTO "notification_search" ("key", "notification_id") '
    'SELECT "value", NEW."id" FROM json_each(search_keys(NEW."to_addrs", NEW."cc_addrs", NEW."bcc_addrs")); END',
    'CREATE TRIGGER "notification_search_delete" AFTER DELETE ON "notification" BEGIN '
    'DELETE FROM "notification_search" WHERE "notification_id" = OLD."id"; END',
]

TALLY = [
    # How many notifications are in each status (kept here: counting a million rows on every page is slow), and
    # how many times a notification in that status was added or changed: the deliveries' refresh compares these
    # numbers to tell whether anything moved on, instead of MAX(updated_at) over the whole table.
    'CREATE TABLE "notification_tally" ("status" VARCHAR(16) NOT NULL PRIMARY KEY, "total" INTEGER NOT NULL, '
    '"changes" INTEGER NOT NULL) WITHOUT ROWID',
    'INSERT INTO "notification_tally" ("status", "total", "changes") '
    'SELECT "status", COUNT(*), 0 FROM "notification" GROUP BY "status"',
    'CREATE TRIGGER "notification_tally_insert" AFTER INSERT ON "notification" BEGIN '
    'INSERT INTO "notification_tally" ("status", "total", "changes") VALUES (NEW."status", 1, 1) '
    'ON CONFLICT ("status") DO UPDATE SET "total" = "total" + 1, "changes" = "changes" + 1; END',
    'CREATE TRIGGER "notification_tally_update" AFTER UPDATE ON "notification" BEGIN '
    'UPDATE "notification_tally" SET "total" = "total" - 1 '
    'WHERE "status" = OLD."status" AND OLD."status" IS NOT NEW."status"; '
    'INSERT INTO "notification_tally" ("status", "total", "changes") '
    'VALUES (NEW."status", OLD."status" IS NOT NEW."status", 1) '
    'ON CONFLICT ("status") DO UPDATE SET "total" = "total" + excluded."total", "changes" = "changes" + 1; END',
    'CREATE TRIGGER "notification_tally_delete" AFTER DELETE ON "notification" BEGIN '
    'UPDATE "notification_tally" SET "total" = "total" - 1, "changes" = "changes" + 1 '
    'WHERE "status" = OLD."status"; END',
]

LIST_ORDER = [
    # The list is ordered by (created_at, id): SQLite appends the rowid (id) to every index, so each of these walks
    # one filter's rows newest first and stops after a page, a date range being a range of the same index.
    'CREATE INDEX "notification_status_created_at" ON "notification" ("status", "created_at")',
    'CREATE INDEX "notification_account_created_at" ON "notification" ("account_id", "created_at")',
    'CREATE INDEX "notification_account_status_created_at" ON "notification" ("account_id", "status", "created_at")',
]


# PostgreSQL: the same tables, kept by PL/pgSQL triggers; search_keys() is webapp.postgresql's copy of the Python
# function. Its secondary index names the key too, as SQLite's WITHOUT ROWID index holds the primary key.
POSTGRESQL_SEARCH = [
    'CREATE TABLE "notification_search" ("key" TEXT COLLATE "C" NOT NULL, "notification_id" BIGINT NOT NULL, '
    'PRIMARY KEY ("key", "notification_id"))',
    'INSERT INTO "notification_search" ("key", "notification_id") '
    'SELECT "keys"."value", "n"."id" FROM "notification" AS "n", '
    'search_keys("n"."to_addrs", "n"."cc_addrs", "n"."bcc_addrs") AS "keys" ("value") ORDER BY 1, 2',
    'CREATE INDEX "notification_search_notification_id" ON "notification_search" ("notification_id", "key")',
    'CREATE FUNCTION "notification_search_keep"() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN '
    'IF TG_OP <> \'INSERT\' THEN DELETE FROM "notification_search" WHERE "notification_id" = OLD."id"; END IF; '
    'IF TG_OP <> \'DELETE\' THEN INSERT INTO "notification_search" ("key", "notification_id") '
    'SELECT "value", NEW."id" FROM search_keys(NEW."to_addrs", NEW."cc_addrs", NEW."bcc_addrs") AS "keys" ("value"); '
    'END IF; RETURN NULL; END $$',
    'CREATE TRIGGER "notification_search_insert" AFTER INSERT ON "notification" '
    'FOR EACH ROW EXECUTE FUNCTION "notification_search_keep"()',
    'CREATE TRIGGER "notification_search_update" AFTER UPDATE OF "to_addrs", "cc_addrs", "bcc_addrs" '
    'ON "notification" FOR EACH ROW EXECUTE FUNCTION "notification_search_keep"()',
    'CREATE TRIGGER "notification_search_delete" AFTER DELETE ON "notification" '
    'FOR EACH ROW EXECUTE FUNCTION "notification_search_keep"()',
]

POSTGRESQL_TALLY = [
    'CREATE TABLE "notification_tally" ("status" VARCHAR(16) COLLATE "C" NOT NULL PRIMARY KEY, '
    '"total" BIGINT NOT NULL, "changes" BIGINT NOT NULL)',
    TALLY[1],
    'CREATE FUNCTION "notification_tally_keep"() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN '
    'IF TG_OP = \'INSERT\' THEN '
    'INSERT INTO "notification_tally" AS "t" ("status", "total", "changes") VALUES (NEW."status", 1, 1) '
    'ON CONFLICT ("status") DO UPDATE SET "total" = "t"."total" + 1, "changes" = "t"."changes" + 1; '
    'ELSIF TG_OP = \'UPDATE\' THEN '
    'UPDATE "notification_tally" SET "total" = "total" - 1 '
    'WHERE "status" = OLD."status" AND OLD."status" IS DISTINCT FROM NEW."status"; '
    'INSERT INTO "notification_tally" AS "t" ("status", "total", "changes") '
    'VALUES (NEW."status", (OLD."status" IS DISTINCT FROM NEW."status")::integer, 1) '
    'ON CONFLICT ("status") DO UPDATE SET "total" = "t"."total" + excluded."total", "changes" = "t"."changes" + 1; '
    'ELSE '
    'UPDATE "notification_tally" SET "total" = "total" - 1, "changes" = "changes" + 1 '
    'WHERE "status" = OLD."status"; '
    'END IF; RETURN NULL; END $$',
    'CREATE TRIGGER "notification_tally_insert" AFTER INSERT ON "notification" '
    'FOR EACH ROW EXECUTE FUNCTION "notification_tally_keep"()',
    'CREATE TRIGGER "notification_tally_update" AFTER UPDATE ON "notification" '
    'FOR EACH ROW EXECUTE FUNCTION "notification_tally_keep"()',
    'CREATE TRIGGER "notification_tally_delete" AFTER DELETE ON "notification" '
    'FOR EACH ROW EXECUTE FUNCTION "notification_tally_keep"()',
]


def upgrade(database):
    if postgresql.is_postgresql(database):
        statements = POSTGRESQL_SEARCH + POSTGRESQL_TALLY + postgresql.schema(database, LIST_ORDER)
    else:
        statements = SEARCH + TALLY + LIST_ORDER
    for statement in statements:
        database.execute_sql(statement)
