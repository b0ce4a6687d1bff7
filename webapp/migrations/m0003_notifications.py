"""Notifications: the outbox, each delivery attempt, API tokens, scheduled reports and system settings."""
from webapp import postgresql

STATEMENTS = [
    # Admin settings as key/value text (the system footer is "footer_text").
    'CREATE TABLE "setting" ("id" INTEGER NOT NULL PRIMARY KEY, "key" VARCHAR(64) NOT NULL, "value" TEXT NOT NULL)',
    'CREATE UNIQUE INDEX "setting_key" ON "setting" ("key")',
    'CREATE TABLE "notification" ("id" INTEGER NOT NULL PRIMARY KEY, "account_id" INTEGER NOT NULL, '
    '"status" VARCHAR(16) NOT NULL, "to_addrs" TEXT NOT NULL, "cc_addrs" TEXT NOT NULL, "bcc_addrs" TEXT NOT NULL, '
    '"subject" TEXT NOT NULL, "body_text" TEXT NOT NULL, "body_html" TEXT, "attachments" TEXT, '
    '"reply_to" VARCHAR(320), "return_path" VARCHAR(320), "confirmation_email" VARCHAR(320), '
    '"overrides_ignored" INTEGER NOT NULL, "message_id" VARCHAR(255) NOT NULL, "idempotency_key" VARCHAR(255), '
    '"request_fingerprint" VARCHAR(64), "attempts" INTEGER NOT NULL, "next_attempt_at" DATETIME NOT NULL, '
    '"lease_owner" VARCHAR(100), "lease_until" DATETIME, "last_code" INTEGER, "last_reply" TEXT, '
    '"last_step" VARCHAR(32), "headers_sent" TEXT, "source" VARCHAR(16) NOT NULL, "created_by" VARCHAR(100) NOT NULL, '
    '"created_at" DATETIME NOT NULL, "updated_at" DATETIME NOT NULL, "sent_at" DATETIME, '
    'FOREIGN KEY ("account_id") REFERENCES "smtp_account" ("id") ON DELETE RESTRICT)',
    'CREATE INDEX "notification_account_id" ON "notification" ("account_id")',
    # The worker's claim: due rows by status and time.
    'CREATE INDEX "notification_status_next_attempt_at" ON "notification" ("status", "next_attempt_at")',
    'CREATE UNIQUE INDEX "notification_idempotency_key" ON "notification" ("idempotency_key")',
    'CREATE UNIQUE INDEX "notification_message_id" ON "notification" ("message_id")',
    'CREATE INDEX "notification_created_at" ON "notification" ("created_at")',
    'CREATE TABLE "delivery_attempt" ("id" INTEGER NOT NULL PRIMARY KEY, "notification_id" INTEGER NOT NULL, '
    '"started_at" DATETIME NOT NULL, "duration_ms" INTEGER NOT NULL, "ok" INTEGER NOT NULL, "code" INTEGER, '
    '"reply" TEXT, "step" VARCHAR(32), "transient" INTEGER NOT NULL, "worker" VARCHAR(100) NOT NULL, '
    'FOREIGN KEY ("notification_id") REFERENCES "notification" ("id") ON DELETE CASCADE)',
    'CREATE INDEX "delivery_attempt_notification_id" ON "delivery_attempt" ("notification_id")',
    'CREATE TABLE "api_token" ("id" INTEGER NOT NULL PRIMARY KEY, "name" VARCHAR(100) NOT NULL, '
    '"token_hash" VARCHAR(64) NOT NULL, "prefix" VARCHAR(16) NOT NULL, "created_by_id" INTEGER, '
    '"created_at" DATETIME NOT NULL, "last_used_at" DATETIME, "revoked_at" DATETIME, '
    'FOREIGN KEY ("created_by_id") REFERENCES "user" ("id") ON DELETE SET NULL)',
    'CREATE UNIQUE INDEX "api_token_token_hash" ON "api_token" ("token_hash")',
    'CREATE INDEX "api_token_created_by_id" ON "api_token" ("created_by_id")',
    'CREATE TABLE "scheduled_report" ("id" INTEGER NOT NULL PRIMARY KEY, "recipients" TEXT NOT NULL, '
    '"frequency" VARCHAR(8) NOT NULL, "filters" TEXT NOT NULL, "next_run_at" DATETIME NOT NULL, '
    '"last_run_at" DATETIME, "last_result" TEXT, "created_by_id" INTEGER, "created_at" DATETIME NOT NULL, '
    'FOREIGN KEY ("created_by_id") REFERENCES "user" ("id") ON DELETE SET NULL)',
    'CREATE INDEX "scheduled_report_next_run_at" ON "scheduled_report" ("next_run_at")',
    'CREATE INDEX "scheduled_report_created_by_id" ON "scheduled_report" ("created_by_id")',
]
BOOLEANS = ("overrides_ignored", "ok", "transient")


def upgrade(database):
    for statement in postgresql.schema(database, STATEMENTS, BOOLEANS):
        database.execute_sql(statement)
