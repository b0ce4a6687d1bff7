"""The one SQLite database, opened per request, and its numbered schema migrations."""
import importlib
import os
import pkgutil

from peewee import SqliteDatabase, fn

database = SqliteDatabase(None)


@database.func("casefold", num_params=1, deterministic=True)
def _casefold(value):
    # SQLite's LIKE and lower() fold ASCII only; "AÇÃO" must find "ação" too.
    return value.casefold() if isinstance(value, str) else value


def contains(column, text: str):
    """column contains text, ignoring case (Unicode-aware); "%" and "_" are literal, unlike LIKE."""
    return fn.instr(fn.casefold(column), text.casefold()) > 0

PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 5000,
    "synchronous": "normal",
}


def init_database(path: str) -> None:
    """Point the deferred database at a file, with the pragmas every connection needs."""
    database.init(path, pragmas=PRAGMAS)


def init_app(app) -> None:
    """Bind the database to the app: a connection per request, closed at teardown."""
    init_database(app.config["DATABASE"])

    @app.before_request
    def _db_connect():
        database.connect(reuse_if_open=True)

    @app.teardown_request
    def _db_close(exc):
        if not database.is_closed():
            database.close()


def migrations() -> list:
    """The migration modules of webapp.migrations, in number order (m0001_..., m0002_...)."""
    from webapp import migrations as package

    names = sorted(m.name for m in pkgutil.iter_modules(package.__path__) if m.name.startswith("m"))
    return [importlib.import_module(f"webapp.migrations.{name}") for name in names]


def schema_version() -> int:
    """The number of the last migration applied to this database (SQLite's user_version)."""
    return database.execute_sql("PRAGMA user_version").fetchone()[0]


def schema_version_now() -> int:
    """The schema version, opening a connection if needed."""
    with database.connection_context():
        return schema_version()


def upgrade() -> list[str]:
    """Apply every migration newer than the database, each in its own transaction; return their names."""
    applied = []
    path = database.database
    if path and path != ":memory:" and not os.path.exists(path):
        # Created owner-only: it holds encrypted secrets and the audit trail. WAL files inherit the mode.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    with database.connection_context():
        for module in migrations():
            number = int(module.__name__.rsplit(".", 1)[1][1:5])
            if number <= schema_version():
                continue
            with database.atomic("IMMEDIATE"):
                # Re-read inside the lock: another process may have applied it meanwhile.
                if number <= schema_version():
                    continue
                module.upgrade(database)
                database.execute_sql(f"PRAGMA user_version = {number:d}")
            applied.append(module.__name__.rsplit(".", 1)[1])
    return applied
