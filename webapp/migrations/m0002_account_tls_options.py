"""Two advanced account settings for the TLS session: a custom CA certificate and the HELO/EHLO name."""
from peewee import CharField, TextField
from playhouse.migrate import SqliteMigrator, migrate


def upgrade(database):
    migrator = SqliteMigrator(database)
    migrate(
        # A PEM CA certificate trusted in addition to the system store (internal relays with a private CA).
        migrator.add_column("smtp_account", "ca_cert", TextField(null=True)),
        # The name sent in EHLO/HELO; empty means this machine's name.
        migrator.add_column("smtp_account", "helo_name", CharField(max_length=255, null=True)),
    )
