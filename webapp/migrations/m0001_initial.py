"""The first schema: users, credentials, connectors, SMTP accounts and the audit log."""
from webapp import postgresql

STATEMENTS = [
    'CREATE TABLE "user" ("id" INTEGER NOT NULL PRIMARY KEY, "username" VARCHAR(64) NOT NULL, '
    '"password_hash" VARCHAR(255) NOT NULL, "role" VARCHAR(16) NOT NULL, "locale" VARCHAR(8), '
    '"active" INTEGER NOT NULL, "created_at" DATETIME NOT NULL, "last_login_at" DATETIME)',
    'CREATE UNIQUE INDEX "user_username" ON "user" ("username")',
    'CREATE TABLE "credential" ("id" INTEGER NOT NULL PRIMARY KEY, "name" VARCHAR(100) NOT NULL, '
    '"username" VARCHAR(254) NOT NULL, "secret_encrypted" TEXT, "description" TEXT NOT NULL, '
    '"allowed_hosts" TEXT NOT NULL, "created_at" DATETIME NOT NULL, "updated_at" DATETIME NOT NULL)',
    'CREATE UNIQUE INDEX "credential_name" ON "credential" ("name")',
    'CREATE TABLE "connector" ("id" INTEGER NOT NULL PRIMARY KEY, "name" VARCHAR(100) NOT NULL, '
    '"kind" VARCHAR(8) NOT NULL, "host" VARCHAR(255) NOT NULL, "port" INTEGER NOT NULL, '
    '"username" VARCHAR(255) NOT NULL, "password_encrypted" TEXT, "remote_dns" INTEGER NOT NULL, '
    '"is_default" INTEGER NOT NULL, "created_at" DATETIME NOT NULL, "updated_at" DATETIME NOT NULL)',
    'CREATE UNIQUE INDEX "connector_name" ON "connector" ("name")',
    # At most one default connector, whatever two requests do at the same moment.
    'CREATE UNIQUE INDEX "connector_one_default" ON "connector" ("is_default") WHERE "is_default" = 1',
    'CREATE TABLE "smtp_account" ("id" INTEGER NOT NULL PRIMARY KEY, "name" VARCHAR(100) NOT NULL, '
    '"enabled" INTEGER NOT NULL, "sender" VARCHAR(320) NOT NULL, "reply_to" VARCHAR(320) NOT NULL, '
    '"return_path" VARCHAR(320) NOT NULL, "confirmation_email" VARCHAR(320) NOT NULL, '
    '"is_default" INTEGER NOT NULL, "read_confirmation" INTEGER NOT NULL, '
    '"force_settings" INTEGER NOT NULL, "footer_enabled" INTEGER NOT NULL, '
    '"host" VARCHAR(255) NOT NULL, "port" INTEGER, "secure" INTEGER NOT NULL, "secure_type" VARCHAR(3), '
    '"use_auth" INTEGER NOT NULL, "credential_id" INTEGER, "ignore_cert_errors" INTEGER NOT NULL, '
    '"use_connector" INTEGER NOT NULL, "connector_id" INTEGER, "last_test_at" DATETIME, '
    '"last_test_ok" INTEGER, "last_test_summary" TEXT, "last_tls_verified" INTEGER, '
    '"created_at" DATETIME NOT NULL, "updated_at" DATETIME NOT NULL, '
    'FOREIGN KEY ("credential_id") REFERENCES "credential" ("id") ON DELETE RESTRICT, '
    'FOREIGN KEY ("connector_id") REFERENCES "connector" ("id") ON DELETE RESTRICT, '
    # The default account must be enabled (DESIGN.md), checked by the database as well as the form.
    'CHECK (NOT ("is_default" = 1 AND "enabled" = 0)))',
    'CREATE UNIQUE INDEX "smtp_account_name" ON "smtp_account" ("name")',
    'CREATE INDEX "smtp_account_credential_id" ON "smtp_account" ("credential_id")',
    'CREATE INDEX "smtp_account_connector_id" ON "smtp_account" ("connector_id")',
    'CREATE UNIQUE INDEX "smtp_account_one_default" ON "smtp_account" ("is_default") WHERE "is_default" = 1',
    'CREATE TABLE "audit_entry" ("id" INTEGER NOT NULL PRIMARY KEY, "at" DATETIME NOT NULL, '
    '"actor_id" INTEGER, "actor_name" VARCHAR(64) NOT NULL, "action" VARCHAR(32) NOT NULL, '
    '"object_type" VARCHAR(32) NOT NULL, "object_id" INTEGER, "object_name" VARCHAR(255) NOT NULL, '
    '"changes_json" TEXT NOT NULL, "remote_addr" VARCHAR(64) NOT NULL, '
    'FOREIGN KEY ("actor_id") REFERENCES "user" ("id") ON DELETE SET NULL)',
    'CREATE INDEX "audit_entry_at" ON "audit_entry" ("at")',
    'CREATE INDEX "audit_entry_actor_id" ON "audit_entry" ("actor_id")',
    'CREATE INDEX "audit_entry_action" ON "audit_entry" ("action")',
    'CREATE INDEX "audit_entry_object_type" ON "audit_entry" ("object_type")',
]
BOOLEANS = ("active", "remote_dns", "is_default", "enabled", "read_confirmation", "force_settings", "footer_enabled",
            "secure", "use_auth", "ignore_cert_errors", "use_connector", "last_test_ok", "last_tls_verified")


def upgrade(database):
    for statement in postgresql.schema(database, STATEMENTS, BOOLEANS):
        database.execute_sql(statement)
