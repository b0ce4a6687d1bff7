"""Two advanced account settings for the TLS session: a custom CA certificate and the HELO/EHLO name."""
from peewee import CharField, TextField
from playhouse.migrate import SchemaMigrator, migrate

from webapp import postgresql


def upgrade(database):
    migrator = SchemaMigrator.from_database(database)
    # Text compared by code point, as SQLite does (webapp.postgresql).
    collation = '"C"' if postgresql.is_postgresql(database) else None
    migrate(
        # A PEM CA certificate trusted in addition to the system store (internal relays with a private CA).
        migrator.add_column("smtp_account", "ca_cert", TextField(null=True, collation=collation)),
        # The name sent in EHLO/HELO; empty means this machine's name.
        migrator.add_column("smtp_account", "helo_name", CharField(max_length=255, null=True, collation=collation)),
    )
