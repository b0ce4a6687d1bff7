"""An app of its own for a test: a fresh database (SQLite in tmp_path unless config names a DATABASE_URL), migrated,
its context pushed."""
import sqlite3
from contextlib import contextmanager

import jinja2
from cryptography.fernet import Fernet

from tests.support.client import Client
from webapp import create_app, db
from webapp.db import database


class CompiledTemplates(jinja2.BytecodeCache):
    """Templates compiled once per test process, not once per test's app: compiling them took more than half of a
    typical test's time. Jinja checks each template's source against the checksum kept with its code."""

    def __init__(self):
        self.code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        if bucket.key in self.code:
            bucket.bytecode_from_string(self.code[bucket.key])

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self.code[bucket.key] = bucket.bytecode_to_string()


COMPILED_TEMPLATES = CompiledTemplates()


@contextmanager
def running_app(tmp_path, **config):
    """create_app() with the test settings plus config, connected to its database until the block ends."""
    app = create_app({"TESTING": True, "SECRET_KEY": "test-secret-key", "VAULT_KEYS": Fernet.generate_key().decode(),
                      "DATABASE": str(tmp_path / "smtpdesk.db"), **config})
    app.instance_path = str(tmp_path)
    app.test_client_class = Client
    app.jinja_env.bytecode_cache = COMPILED_TEMPLATES
    db.upgrade()
    with app.app_context():
        database.connect(reuse_if_open=True)
        yield app
        if not database.is_closed():
            database.close()


def elsewhere(app, sql: str, params=()) -> list[tuple]:
    """Run one statement on a connection of its own, as another process would, committed; its rows. ? placeholders,
    on either engine (the app's DATABASE_URL, else its SQLite file)."""
    url = app.config.get("DATABASE_URL")
    if url:
        import psycopg

        with psycopg.connect(url, autocommit=True, connect_timeout=10) as connection:
            cursor = connection.execute(sql.replace("?", "%s"), params)
            return cursor.fetchall() if cursor.description else []
    connection = sqlite3.connect(app.config["DATABASE"], timeout=10)
    try:
        with connection:
            return connection.execute(sql, params).fetchall()
    finally:
        connection.close()
