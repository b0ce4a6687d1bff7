"""The database: one SQLite file (the default) or a PostgreSQL server (DATABASE_URL), a connection kept per serving
thread, and the numbered schema migrations both share."""
import importlib
import json
import os
import pkgutil
import sqlite3
import threading

from peewee import SQL, DatabaseProxy, SqliteDatabase, __exception_wrapper__, fn

from webapp import postgresql

sqlite = SqliteDatabase(None)
server = postgresql.PostgresqlDatabase(None)
# What the models and every query use: the SQLite file until init_database() is given a PostgreSQL URL.
database = DatabaseProxy()
database.initialize(sqlite)


@sqlite.func("casefold", num_params=1, deterministic=True)
def _casefold(value):
    # SQLite's LIKE and lower() fold ASCII only; "AÇÃO" must find "ação" too. PostgreSQL: webapp.postgresql.
    return value.casefold() if isinstance(value, str) else value


def contains(column, text: str):
    """column contains text, ignoring case (Unicode-aware); "%" and "_" are literal, unlike LIKE."""
    position = fn.strpos if database.obj is server else fn.instr
    return position(fn.casefold(column), text.casefold()) > SQL("0")


# --- The deliveries' recipient search (m0005): triggers fill notification_search with these keys ----------------------


def _search_texts(recipient: str) -> tuple[str, ...]:
    """The display name and the address of "Name <address>" (the address alone when there is no name)."""
    name, bracket, rest = recipient.rpartition("<")
    if bracket and rest.endswith(">"):
        return name.strip().strip('"'), rest[:-1]
    return (recipient,)


@sqlite.func("search_keys", num_params=3, deterministic=True)
def search_keys(*address_lists) -> str:
    """The recipient search's keys of a notification (its to, cc and bcc JSON lists): each display name and address
    from the start of every word, casefolded ("ana.silva@example.com" gives "ana.silva@example.com",
    "silva@example.com", "example.com" and "com"); a JSON list without repeats. Runs inside the insert triggers, so
    it never raises. Changing these rules needs a migration that rebuilds notification_search (and PostgreSQL's
    copy of them, webapp.postgresql, the same change)."""
    keys = set()
    for value in address_lists:
        try:
            recipients = json.loads(value) if isinstance(value, str) else []
        except ValueError:
            recipients = []
        for recipient in recipients if isinstance(recipients, list) else []:
            for text in _search_texts(recipient) if isinstance(recipient, str) else ():
                text = text.casefold()
                keys.update(text[i:] for i, char in enumerate(text)
                            if char.isalnum() and (i == 0 or not text[i - 1].isalnum()))
    return json.dumps(sorted(keys), ensure_ascii=False)


def search_term(text: str) -> str:
    """What a recipient search looks for among the keys (a prefix): the typed text casefolded, the address alone
    when "Name <address>" was pasted, from its first letter or digit ("@example.com" looks for "example.com")."""
    text = _search_texts(text.strip())[-1].casefold()
    start = next((i for i, char in enumerate(text) if char.isalnum()), len(text))
    return text[start:]


def _for_engine(sql: str) -> str:
    # psycopg takes %s, and a % of its own as %%.
    return sql.replace("%", "%%").replace("?", "%s") if database.obj is server else sql


def execute(sql: str, params=()):
    """Run SQL written by hand, with ? placeholders, on either engine. A ? inside a quoted literal would be taken for
    a placeholder: build such a query with peewee instead."""
    return database.execute_sql(_for_engine(sql), params)


def execute_many(sql: str, rows) -> None:
    """Run one hand-written statement (? placeholders, as execute()) once for each row of parameters. Its errors are
    peewee's, as execute()'s are: a deadlock is then an OperationalError that retry_locked() runs again."""
    with __exception_wrapper__:
        database.cursor().executemany(_for_engine(sql), rows)


# --- Transactions that lock rows, not the database (the outbox's claims, leases and outcomes) -------------------------


def row_locking():
    """A transaction that takes only what it touches, so that several workers write the outbox at once: on
    PostgreSQL a plain BEGIN (its writes lock their rows; a row read before it is written is read with
    for_update()); SQLite has one writer anyway, and takes its write lock at once (BEGIN IMMEDIATE)."""
    return database.atomic() if database.obj is server else database.atomic("IMMEDIATE")


def for_update(sql: str, skip_locked: bool = False) -> str:
    """A hand-written SELECT that locks the rows it reads until the transaction ends (PostgreSQL; skip_locked: rows
    another transaction holds are passed over, not waited for). On SQLite the write lock holds them already."""
    if database.obj is not server:
        return sql
    return sql + (" FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE")


def locked(query, skip_locked: bool = False):
    """for_update() for a peewee SELECT."""
    return query.for_update(skip_locked=skip_locked or None) if database.obj is server else query


def lock_tally(statuses) -> None:
    """Before changing notifications from or to these statuses, lock their notification_tally rows, in one order for
    every transaction (PostgreSQL; the notifications' own rows are locked before, with for_update()). The m0005
    triggers update those rows notification by notification, in whatever order the notifications come: a claim
    taking "retrying" then "sending" and a record taking "sending" then "retrying" would deadlock, which PostgreSQL
    takes a second to notice. Every status has its row (m0013): a row that does not exist cannot be locked. SQLite's
    write lock covers them."""
    if database.obj is server:
        statuses = sorted(set(statuses))
        execute(f'SELECT 1 FROM "notification_tally" WHERE "status" IN ({", ".join("?" * len(statuses))}) '
                'ORDER BY "status" FOR UPDATE', statuses)


def try_lock(namespace: int, key: int) -> bool:
    """Take the lock named (namespace, key) until the transaction ends, without waiting: False when another
    transaction holds it (PostgreSQL's advisory locks; namespace and key are 32-bit). SQLite's write lock admits one
    writer: always True."""
    if database.obj is not server:
        return True
    return database.execute_sql("SELECT pg_try_advisory_xact_lock(%s, %s)", (namespace, key)).fetchone()[0]


def _causes(error: BaseException | None):
    """An error, what peewee wrapped in it, and what it was raised while handling, down the chain."""
    while error is not None:
        yield from (error, *error.args[:1])
        error = error.__cause__ or error.__context__


def contention(error: BaseException) -> bool:
    """Whether a transaction failed only because others held what it needed, so that running it again may succeed:
    SQLite still locked after its busy timeout, or a PostgreSQL deadlock or serialization failure."""
    return any((isinstance(candidate, sqlite3.OperationalError) and "locked" in str(candidate))
               or getattr(candidate, "sqlstate", None) in ("40P01", "40001") for candidate in _causes(error))


def storage_full(error: BaseException | None) -> bool:
    """Whether a database error comes from a full disk: SQLite's "database or disk is full" (the disk, or
    max_page_count), or PostgreSQL's disk_full."""
    # peewee raises its own error with sqlite3's as first argument. SQLite may roll the whole transaction back
    # itself when full, so peewee's ROLLBACK then fails ("no transaction is active") while handling it: the cause is
    # further down the chain.
    for candidate in _causes(error):
        code = getattr(candidate, "sqlite_errorcode", None)
        if code is not None and code & 0xFF == sqlite3.SQLITE_FULL:  # the primary code, whatever the extension
            return True
        if getattr(candidate, "sqlstate", None) == "53100":
            return True
    return False


PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 5000,
    "synchronous": "normal",
}



# Which init_database() a thread's kept connection belongs to (each test app points at another database).
_generation = 0
_kept = threading.local()


def init_database(location: str) -> None:
    """Point the database at a PostgreSQL URL or a SQLite file (with the pragmas every connection needs)."""
    global _generation
    if postgresql.is_url(location):
        server.init(location)
        database.initialize(server)
    else:
        sqlite.init(location, pragmas=PRAGMAS)
        database.initialize(sqlite)
    _generation += 1


def location(config) -> str:
    """Where an app's data lives: its DATABASE_URL when set, else its SQLite file."""
    return config.get("DATABASE_URL") or config["DATABASE"]


# Blueprints whose views open the connection themselves, when they need one (health checks: /healthz answers while
# the database is down, /readyz and /metrics say that it is instead of failing).
OWN_CONNECTION_BLUEPRINTS = {"health"}


def keep_connection() -> None:
    """Open this serving thread's connection, or keep the one it has (see init_app)."""
    if getattr(_kept, "generation", None) != _generation:
        for engine in (sqlite, server):
            if not engine.is_closed():
                engine.close()  # opened on another database (an earlier app in this process)
    if database.connect(reuse_if_open=True):
        _kept.generation = _generation


def init_app(app) -> None:
    """Bind the database to the app: each serving thread keeps one connection open from request to request."""
    from flask import request

    init_database(location(app.config))

    # Opening a connection per request cost more than serving a static file: the file open, four PRAGMAs, the
    # schema parsed again, a cold page cache, and closing the last connection checkpoints the WAL (PostgreSQL: a
    # server process started, and sign-in). A waitress thread serves one request at a time, so it keeps its
    # connection; no transaction outlives a request.
    @app.before_request
    def _db_connect():
        if request.blueprint not in OWN_CONNECTION_BLUEPRINTS:
            keep_connection()

    @app.teardown_request
    def _db_release(exc):
        if database.is_closed():
            return
        connection = database.connection()
        if exc is not None or database.in_transaction() or _in_transaction(connection):
            # Never carry a transaction (a bug), or SQLite's lock, into the next request; nor, after an error, a
            # query abandoned half-read, whose open statement would hold this connection to an old snapshot.
            database.dispose()
            connection.close()  # without COMMIT: rolled back


def _in_transaction(connection) -> bool:
    if isinstance(connection, sqlite3.Connection):
        return connection.in_transaction
    return server.in_server_transaction()


def migrations() -> list:
    """The migration modules of webapp.migrations, in number order (m0001_..., m0002_...)."""
    from webapp import migrations as package

    names = sorted(m.name for m in pkgutil.iter_modules(package.__path__) if m.name.startswith("m"))
    return [importlib.import_module(f"webapp.migrations.{name}") for name in names]


def schema_version() -> int:
    """The number of the last migration applied to this database (SQLite's user_version)."""
    if database.obj is server:
        return postgresql.schema_version(database)
    return database.execute_sql("PRAGMA user_version").fetchone()[0]


def latest_version() -> int:
    """The number of the newest migration: a database whose schema_version() is lower lacks some."""
    return max(_number(module) for module in migrations())


def _number(module) -> int:
    """A migration's number: 7 for webapp.migrations.m0007_credential_kinds."""
    return int(module.__name__.rsplit(".", 1)[1][1:5])


def schema_version_now() -> int:
    """The schema version, opening a connection if needed."""
    with database.connection_context():
        return schema_version()


def _create_sqlite_file(path: str) -> None:
    # auto_vacuum must be set before the header is first written (journal_mode = wal writes it): freed pages can then
    # go back to the file system (webapp.outbox.retention). Not a pragma of every connection: on a file that has it,
    # setting it writes the header again, a write transaction at each connect. A file made before keeps its mode
    # until one VACUUM (`smtpdesk db upgrade`).
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
        connection.execute("PRAGMA journal_mode = WAL")
    finally:
        connection.close()


def upgrade() -> list[str]:
    """Apply every migration newer than the database, each in its own transaction; return their names."""
    applied = []
    engine = database.obj
    path = database.database
    if engine is sqlite and path and path != ":memory:" and not os.path.exists(path):
        # Created owner-only: it holds encrypted secrets and the audit trail. WAL files inherit the mode.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        _create_sqlite_file(path)
    with database.connection_context():
        if engine is server:
            postgresql.check_server(database)
            with database.atomic("IMMEDIATE"):
                # SQLite has them from Python on every connection; the server keeps a copy (webapp.postgresql).
                postgresql.install_functions(database)
        for module in migrations():
            number = _number(module)
            if number <= schema_version():
                continue
            with database.atomic("IMMEDIATE"):
                # Re-read inside the lock: another process may have applied it meanwhile.
                if number <= schema_version():
                    continue
                module.upgrade(engine)
                if engine is server:
                    postgresql.set_schema_version(database, number)
                else:
                    database.execute_sql(f"PRAGMA user_version = {number:d}")
            applied.append(module.__name__.rsplit(".", 1)[1])
    return applied
