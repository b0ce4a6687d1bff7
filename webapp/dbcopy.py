"""`smtpdesk db copy --to postgresql://…`: the SQLite installation moved whole into an empty PostgreSQL database.

Generic over the schema: every table SQLite holds, parents before children, every column, each value as stored (the
vault's tokens unchanged, so the same key reads them), booleans made booleans for the target's columns. The target
is migrated to the same schema version inside the one transaction the copy writes in, so a refusal or a failure at
any point leaves it as it was. The tables that triggers keep (the recipient search keys and the counts by status,
m0005) are copied as they are with the triggers off, then checked against the notifications; each identity sequence
is set past the highest id copied."""
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

import peewee
import psycopg

from webapp import db, postgresql

BATCH_ROWS = 5000  # rows read from SQLite at a time: memory stays the same whatever a table's size
PROGRESS_SECONDS = 10  # a progress line this often inside a big table
SEARCH_SAMPLE = 200  # notifications whose copied search keys are compared with the server's own search_keys()
# The rows that make a table hold something, where migrations put rows of their own (m0013: a count per status).
HOLDS = {"notification_tally": ' WHERE "total" <> 0'}
VERSION_TABLE = "schema_version"  # PostgreSQL's stand-in for SQLite's user_version (webapp.postgresql)


class CopyError(Exception):
    """Why the copy was refused or failed: one line, fit to print, never the password. Nothing was written."""


@dataclass
class Table:
    name: str
    columns: list[str]
    rows: int  # in the source's snapshot


def copy_database(source_path: str, url: str, say=print) -> list[Table]:
    """Copy every table of the SQLite database at source_path into the empty PostgreSQL database at url, saying what
    it does through say(line); return the tables copied, in order. Raises CopyError (the target left as it was)."""
    if not postgresql.is_url(url):
        raise CopyError("--to must be a PostgreSQL URL: postgresql://user@host:port/name")
    started = time.monotonic()
    shown = postgresql.shown(url)
    say = _masking(say, url)
    with _reported(url), _source(source_path) as source:
        version = _source_version(source, source_path)
        tables = _tables(source)
        say(f"Copying {source_path} (schema {version}, {len(tables)} tables) into {shown}")
        target = _connect(url)
        try:
            with target.atomic("IMMEDIATE"):
                _prepare(target, version, shown, say)
                types = _target_tables(target, tables, shown)
                with _triggers_off(target):  # what they would write is in the tables copied
                    for table in tables:
                        _copy_table(source, target, table, types[table.name], say)
                _move_sequences(target)
                total = _check_counts(target, tables)
                _check_derived(target)
        finally:
            target.close()
    say(f"Row counts checked table by table: the {len(tables)} tables hold the same rows there as here "
        f"({total:,} in all), and the counts by status match the notifications.")
    say(f"Done in {time.monotonic() - started:.0f} s. Next: start smtpdesk with SMTPDESK_DATABASE_URL naming this "
        "database and the same vault key and secret key (README, \"Moving to PostgreSQL\").")
    return tables


# --- The source: the SQLite file, read in one snapshot ---------------------------------------------------------------


@contextmanager
def _source(path: str):
    if not os.path.isfile(path):
        raise CopyError(f"There is no SQLite database at {path}.")
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        connection.execute("PRAGMA query_only = 1")
        # One read transaction for every table: a process still writing (it should be stopped) is not half-seen.
        connection.execute("BEGIN")
        yield connection
    finally:
        connection.close()


def _number(migration) -> int:
    return int(migration.__name__.rsplit(".", 1)[1][1:5])


def _source_version(source, path: str) -> int:
    version = source.execute("PRAGMA user_version").fetchone()[0]
    current = _number(db.migrations()[-1])
    if version < current:
        raise CopyError(f"The database {path} is at schema {version} and this smtpdesk at {current}: run "
                        "`smtpdesk db upgrade` first, then copy.")
    if version > current:
        raise CopyError(f"The database {path} is at schema {version}, newer than this smtpdesk ({current}): copy it "
                        "with the smtpdesk version that wrote it.")
    return version


def _tables(source) -> list[Table]:
    """Every table of the source, each after the tables its foreign keys refer to."""
    names = [name for name, in source.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite!_%' ESCAPE '!' ORDER BY name")]
    parents = {name: {row[2] for row in source.execute(f"PRAGMA foreign_key_list({_quoted(name)})")} - {name}
               for name in names}
    ordered = []
    while parents:
        ready = [name for name, needs in parents.items() if needs <= set(ordered)]
        if not ready:
            raise CopyError(f"The foreign keys of {', '.join(sorted(parents))} refer to each other in a circle; "
                            "db copy cannot order them.")
        ordered += ready
        for name in ready:
            del parents[name]
    return [Table(name, [row[1] for row in source.execute(f"PRAGMA table_info({_quoted(name)})")],
                  source.execute(f"SELECT COUNT(*) FROM {_quoted(name)}").fetchone()[0]) for name in ordered]


# --- The target: connected, checked empty, migrated, all in the copy's transaction ----------------------------------


def _connect(url: str):
    target = postgresql.PostgresqlDatabase(None)
    target.init(url)  # with its timeouts (postgresql.PostgresqlDatabase)
    try:
        target.connect()
    except peewee.DatabaseError as error:
        raise CopyError(f"Cannot connect to {postgresql.shown(url)}: {_one_line(error, url)}") from None
    return target


def _prepare(target, source_version: int, shown: str, say) -> None:
    """Refuse a target holding any row or a newer schema; migrate it to the source's version."""
    postgresql.check_server(target)
    version = postgresql.schema_version(target)
    if version > source_version:
        raise CopyError(f"{shown} is at schema {version}, newer than the SQLite database ({source_version}); "
                        "nothing was written.")
    full = [name for name in _names(target, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            if name != VERSION_TABLE
            and target.execute_sql(
                f"SELECT EXISTS (SELECT 1 FROM {_quoted(name)}{HOLDS.get(name, '')})").fetchone()[0]]
    if full:
        raise CopyError(f"{shown} is not empty ({', '.join(sorted(full))} hold rows): db copy writes only into an "
                        "empty database; nothing was written.")
    postgresql.install_functions(target)
    applied = []
    for migration in db.migrations():
        number = _number(migration)
        if version < number <= source_version:
            migration.upgrade(target)
            postgresql.set_schema_version(target, number)
            applied.append(migration.__name__.rsplit(".", 1)[1])
    say(f"  migrated the target: {', '.join(applied)}" if applied else f"  the target is at schema {version} already")


def _target_tables(target, tables: list[Table], shown: str) -> dict[str, dict[str, str]]:
    """Each table's column types on the target, once the tables are known to have the source's columns and are
    emptied of what a migration may have put there (the source holds it too: the same migration wrote it)."""
    types = {}
    for table, column, kind in target.execute_sql(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema()").fetchall():
        types.setdefault(table, {})[column] = kind
    for table in tables:
        if set(types.get(table.name, ())) != set(table.columns):
            raise CopyError(f"The table {table.name} has other columns in {shown} than in the SQLite database at the "
                            "same schema version; nothing was written.")
        target.execute_sql(f"DELETE FROM {_quoted(table.name)}")
    return types


@contextmanager
def _triggers_off(target):
    """The user triggers of every table disabled, then enabled again (a failure rolls both back)."""
    triggered = _names(target, "SELECT DISTINCT event_object_table FROM information_schema.triggers "
                               "WHERE event_object_schema = current_schema()")
    for name in triggered:
        target.execute_sql(f"ALTER TABLE {_quoted(name)} DISABLE TRIGGER USER")
    yield
    for name in triggered:
        target.execute_sql(f"ALTER TABLE {_quoted(name)} ENABLE TRIGGER USER")


def _copy_table(source, target, table: Table, types: dict[str, str], say) -> None:
    """The table's rows, streamed: SQLite read a batch at a time, PostgreSQL fed through COPY."""
    columns = ", ".join(map(_quoted, table.columns))
    booleans = [i for i, column in enumerate(table.columns) if types[column] == "boolean"]  # SQLite stores 0 and 1
    rows = source.execute(f"SELECT {columns} FROM {_quoted(table.name)}")
    done, started, row = 0, time.monotonic(), None
    next_progress = started + PROGRESS_SECONDS
    try:
        with target.cursor().copy(f"COPY {_quoted(table.name)} ({columns}) FROM STDIN") as copy:
            while batch := rows.fetchmany(BATCH_ROWS):
                for row in batch:
                    if booleans:
                        row = list(row)
                        for i in booleans:
                            row[i] = None if row[i] is None else bool(row[i])
                    copy.write_row(row)
                done += len(batch)
                if time.monotonic() >= next_progress and done < table.rows:
                    say(f"  {table.name}: {done:,} of {table.rows:,} rows…")
                    next_progress = time.monotonic() + PROGRESS_SECONDS
    except psycopg.Error as error:
        # PostgreSQL may refuse a value SQLite kept (a NUL in text): say where, for the admin to mend it.
        near = f", near the row with id {row[0]}" if row is not None and table.columns[0] == "id" else ""
        raise RuntimeError(f"in the table {table.name}{near}: {error}") from error
    if done != table.rows:
        raise CopyError(f"{table.name}: read {done:,} rows of {table.rows:,}; nothing was written.")
    seconds = time.monotonic() - started
    say(f"  {table.name}: {done:,} row{'' if done == 1 else 's'}" + (f" ({seconds:.0f} s)" if seconds >= 1 else ""))


def _move_sequences(target) -> None:
    """Set each identity column's sequence past the highest id copied, so that new rows do not collide."""
    for table, column in target.execute_sql(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND is_identity = 'YES'").fetchall():
        target.execute_sql(f"SELECT setval(pg_get_serial_sequence(%s, %s), COALESCE(MAX({_quoted(column)}), 0) + 1, "
                           f"false) FROM {_quoted(table)}", (_quoted(table), column))


# --- The checks before committing -----------------------------------------------------------------------------------


def _check_counts(target, tables: list[Table]) -> int:
    differ = []
    for table in tables:
        count = target.execute_sql(f"SELECT COUNT(*) FROM {_quoted(table.name)}").fetchone()[0]
        if count != table.rows:
            differ.append(f"{table.name} {table.rows:,} here, {count:,} there")
    if differ:
        raise CopyError(f"Row counts differ after the copy ({'; '.join(differ)}); nothing was written.")
    return sum(table.rows for table in tables)


def _check_derived(target) -> None:
    """The tables the triggers keep, copied as they were, are what the triggers would have written here."""
    wrong = _names(target, 'SELECT COALESCE("t"."status", "n"."status") FROM "notification_tally" AS "t" '
                           'FULL JOIN (SELECT "status", COUNT(*) AS "total" FROM "notification" GROUP BY "status") '
                           'AS "n" ON "n"."status" = "t"."status" WHERE COALESCE("t"."total", 0) <> '
                           'COALESCE("n"."total", 0)')
    if wrong:
        raise CopyError(f"The counts by status kept in notification_tally differ from the notifications for "
                        f"{', '.join(sorted(wrong))}; nothing was written.")
    count = target.execute_sql('SELECT COUNT(*) FROM "notification"').fetchone()[0]
    wrong = _names(target, 'SELECT "n"."id" FROM "notification" AS "n" WHERE "n"."id" %% %s = 0 AND '
                           'ARRAY(SELECT "s"."key" FROM "notification_search" AS "s" '
                           'WHERE "s"."notification_id" = "n"."id" ORDER BY "s"."key" COLLATE "C") IS DISTINCT FROM '
                           'ARRAY(SELECT "k" FROM search_keys("n"."to_addrs", "n"."cc_addrs", "n"."bcc_addrs") AS "k" '
                           'ORDER BY "k" COLLATE "C") ORDER BY 1 LIMIT 5', (max(1, count // SEARCH_SAMPLE),))
    if wrong:
        raise CopyError(f"The recipient search keys of notifications {', '.join(map(str, wrong))} differ from the "
                        "server's search_keys(); nothing was written.")


# --- Helpers --------------------------------------------------------------------------------------------------------


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _names(target, sql: str, params=()) -> list:
    return [value for value, in target.execute_sql(sql, params).fetchall()]


def _passwords(url: str) -> list[str]:
    """The password in the URL (as written and decoded), to be masked in any message; one holding a bare "@" also
    in pieces, as libpq ends it at the first "@" and takes the rest for the host, which its messages then quote."""
    try:
        parts = urlsplit(url)
        found = [parts.password or ""] + [value for key, value in parse_qsl(parts.query) if key == "password"]
    except ValueError:
        found = [url]  # unparsable: nothing of it is quoted
    found += [piece for value in found for piece in value.split("@")]
    return sorted({text for value in found for text in (value, unquote(value)) if text}, key=len, reverse=True)


def _masked(text: str, url: str) -> str:
    """The text with every appearance of the URL's password masked."""
    for password in _passwords(url):
        text = text.replace(password, "***")
    return text


def _masking(say, url: str):
    return lambda line: say(_masked(line, url))


def _one_line(error: BaseException, url: str) -> str:
    """An error's message on one line, the URL's password masked."""
    return _masked(" ".join(str(error).split()), url) or type(error).__name__


@contextmanager
def _reported(url: str):
    """Errors of either database, or of the server's checks, as a CopyError of one line."""
    try:
        yield
    except CopyError as error:
        raise CopyError(_masked(str(error), url)) from None
    except (peewee.PeeweeException, psycopg.Error, sqlite3.Error, RuntimeError) as error:
        raise CopyError(f"The copy failed and nothing was written: {_one_line(error, url)}") from None
