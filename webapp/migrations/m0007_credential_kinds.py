"""Credential types: a login and password (every credential until now) or an OAuth 2.0 grant, with its settings in
plain columns and its secrets in encrypted ones (webapp.vault.SECRET_COLUMNS)."""
from webapp import postgresql

COLUMNS = [
    # Every credential stored before was a login and password.
    '"kind" VARCHAR(16) NOT NULL DEFAULT \'password\'',
    '"token_url" VARCHAR(2048) NOT NULL DEFAULT \'\'',
    '"authorization_url" VARCHAR(2048) NOT NULL DEFAULT \'\'',
    '"client_id" VARCHAR(255) NOT NULL DEFAULT \'\'',
    '"scope" VARCHAR(1000) NOT NULL DEFAULT \'\'',
    '"client_secret_encrypted" TEXT',
    '"refresh_token_encrypted" TEXT',
    '"service_account_key_encrypted" TEXT',
    '"service_account_email" VARCHAR(254) NOT NULL DEFAULT \'\'',
    '"service_account_key_id" VARCHAR(200) NOT NULL DEFAULT \'\'',
]


def upgrade(database):
    # Added in place, as in m0006: playhouse.migrate would rebuild the credential table, which the accounts' foreign
    # keys (ON DELETE RESTRICT) refer to.
    for statement in postgresql.schema(database, [f'ALTER TABLE "credential" ADD COLUMN {c}' for c in COLUMNS]):
        database.execute_sql(statement)
