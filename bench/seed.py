"""Fill a fresh instance for the page benchmarks (run in its own process): `python -m bench.seed N_ACCOUNTS N_NOTES
SINK_PORT`.

The data looks like a year of a Brazilian company's notifications: 200 accounts named by department and city (the
default one on smtp-sink at SINK_PORT, the others on the usual relays), notifications from bench.workload (one to
three new recipients each, display names and subjects with accents, about 1 KB of pt-BR text), mostly sent, some
failed or retrying, with the replies a server gives. Inserted in one transaction, with one executemany into SQLite or
COPY into PostgreSQL (SMTPDESK_DATABASE_URL); the recipient search keys are webapp.db.search_keys()'s on both (see
insert_notifications() and copy_notifications()).

Prints JSON: the admin's username and password, an API token, and what a user would type to find one recipient of
the seeded data: part of a display name ("luíza souz") and the start of an address ("ana.souza104711@").
"""
import json
import sys
from datetime import timedelta
from itertools import islice

from bench.workload import Workload, ascii_slug
from webapp import create_app, db, postgresql
from webapp.auth.passwords import hash_password
from webapp.db import search_keys
from webapp.migrations import m0005_delivery_search as m0005
from webapp.models import ApiToken, SmtpAccount, User, utcnow

PASSWORD = "bench-password-123"
DEPARTMENTS = ["Financeiro", "Atendimento", "Cobrança", "Recursos Humanos", "Comercial", "Suporte Técnico",
               "Marketing", "Logística", "Jurídico", "Compras"]
CITIES = ["São Paulo", "Rio de Janeiro", "Belo Horizonte", "Curitiba", "Porto Alegre", "Salvador", "Recife",
          "Fortaleza", "Brasília", "Goiânia", "Manaus", "Belém", "Florianópolis", "Vitória", "Natal", "João Pessoa",
          "Maceió", "Teresina", "São Luís", "Cuiabá"]
RELAYS = [("smtp.exemplo.com.br", 587, "tls"), ("email-smtp.sa-east-1.amazonaws.com", 587, "tls"),
          ("smtp.office365.com", 587, "tls"), ("smtp.gmail.com", 465, "ssl"), ("smtp.sendgrid.net", 587, "tls"),
          ("mail.exemplo.net.br", 25, None)]
# Status, share (of 100), attempts, last code and reply; the reply's {address} is the notification's first recipient.
OUTCOMES = [
    ("sent", 90, 1, 250, "250 2.0.0 Ok: queued as {queue_id}"),
    ("failed", 6, 1, 550, "550 5.1.1 <{address}>: Recipient address rejected: User unknown in virtual mailbox table"),
    ("retrying", 4, 3, 451, "451 4.7.1 <{address}>: Recipient address rejected: Greylisted, try again later"),
]
STEPS = {"sent": None, "failed": "recipient", "retrying": "recipient"}
SEARCH_AT = 0.7  # the recipient a user searches for: in the notification this far into the data (not the newest)


def account_rows(count: int, sink_port: int) -> list[dict]:
    """SmtpAccount fields: department and city names, the first one (the default) on smtp-sink."""
    rows = []
    for n in range(count):
        department, city = DEPARTMENTS[n % len(DEPARTMENTS)], CITIES[n // len(DEPARTMENTS) % len(CITIES)]
        slug = ascii_slug(f"{department} {city}").replace(" ", "-")
        host, port, mode = ("127.0.0.1", sink_port, None) if n == 0 else RELAYS[n % len(RELAYS)]
        rows.append(dict(
            name=f"{department} — {city}" + (f" {n // 200 + 1}" if n >= 200 else ""),
            sender=f"{department} {city} <{slug}@exemplo.com.br>", reply_to=f"atendimento.{slug}@exemplo.com.br",
            return_path=f"devolucoes.{slug}@exemplo.com.br", confirmation_email=f"confirmacoes.{slug}@exemplo.com.br",
            host=host, port=port, secure=mode is not None, secure_type=mode, enabled=n % 25 != 24,
            is_default=n == 0))
    return rows


COLUMNS = ("account_id", "status", "to_addrs", "cc_addrs", "bcc_addrs", "subject", "body_text", "overrides_ignored",
           "message_id", "attempts", "last_code", "last_reply", "last_step", "next_attempt_at", "source", "created_by",
           "created_at", "updated_at", "sent_at")
NAMES = ", ".join(f'"{column}"' for column in COLUMNS)
INSERT = f'INSERT INTO "notification" ({NAMES}) VALUES ({", ".join("?" for _ in COLUMNS)})'
SEARCH_TRIGGER = "notification_search_insert"
# Migration m0005's statement that gives notifications inserted without that trigger their search keys.
FILL_SEARCH = next(statement for statement in m0005.SEARCH if statement.startswith('INSERT INTO "notification_search"'))


def insert_notifications(connection, rows) -> None:
    """SQLite: executemany() the rows, then their recipient search keys, in the caller's transaction.

    The search's insert trigger (and the search table's indexes) are set aside meanwhile and the keys filled in key
    order by the migration's own statement: through the trigger, each notification's ten-odd keys went into the
    B-tree at random places, and the seed took much longer. The rows are the same either way (checked on
    a sample); the trigger and indexes are put back from their own SQL."""
    schema = dict(connection.execute(
        "SELECT name, sql FROM sqlite_master WHERE (type = 'trigger' AND name = ?) OR "
        "(type = 'index' AND tbl_name = 'notification_search' AND sql IS NOT NULL)", (SEARCH_TRIGGER,)).fetchall())
    if SEARCH_TRIGGER not in schema:
        raise SystemExit(f"bench.seed: no trigger {SEARCH_TRIGGER} in the schema; update bench/seed.py")
    for name in schema:
        connection.execute(f'DROP {"TRIGGER" if name == SEARCH_TRIGGER else "INDEX"} "{name}"')
    connection.executemany(INSERT, rows)
    connection.execute(FILL_SEARCH)
    for sql in schema.values():
        connection.execute(sql)


# The counts by status the tally's insert trigger keeps, of notifications inserted without it (into an empty table).
TALLY_TRIGGER = "notification_tally_insert"
# Every status has its row already (m0013); SQLite's upsert after a SELECT needs the WHERE to parse.
FILL_TALLY = ('INSERT INTO "notification_tally" ("status", "total", "changes") '
              'SELECT "status", COUNT(*), COUNT(*) FROM "notification" WHERE true GROUP BY "status" '
              'ON CONFLICT ("status") DO UPDATE SET "total" = excluded."total", "changes" = excluded."changes"')
ADDRESSES = [COLUMNS.index(column) for column in ("to_addrs", "cc_addrs", "bcc_addrs")]
CHUNK = 50_000  # notifications held in memory between the two COPYs


def copy_notifications(connection, rows) -> None:
    """PostgreSQL: COPY the rows into the empty table, with their recipient search keys and counts by status, in the
    caller's transaction.

    As insert_notifications() does, the triggers are disabled and the search table's key and index dropped
    meanwhile, then built again from their own definitions. The keys are search_keys()'s, the Python function
    SQLite's trigger calls, COPYed chunk by chunk after their notifications (numbered here); PostgreSQL's own
    function, through the migration's statement, took five times as long, and check_search_keys() compares the two
    on a sample. Through the tally's trigger, each update left a row version no one can clean up before the
    transaction ends, the next update walked past all of them, and the seed slowed down with the square of the rows;
    the counts are filled as the trigger would have."""
    triggers = [name for name, in connection.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'notification'::regclass AND tgname IN (%s, %s)",
        (SEARCH_TRIGGER, TALLY_TRIGGER)).fetchall()]
    if len(triggers) != 2:
        raise SystemExit(f"bench.seed: no trigger {SEARCH_TRIGGER} or {TALLY_TRIGGER} in the schema; update "
                         "bench/seed.py")
    if connection.execute('SELECT EXISTS (SELECT 1 FROM "notification")').fetchone()[0]:
        raise SystemExit("bench.seed: the notification table is not empty")
    key = connection.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                             "WHERE conrelid = 'notification_search'::regclass AND contype = 'p'").fetchone()
    indexes = connection.execute("SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
                                 "WHERE indrelid = 'notification_search'::regclass AND NOT indisprimary").fetchall()
    for name in triggers:
        connection.execute(f'ALTER TABLE "notification" DISABLE TRIGGER "{name}"')
    for name, _ in indexes:
        connection.execute(f"DROP INDEX {name}")
    connection.execute(f'ALTER TABLE "notification_search" DROP CONSTRAINT "{key[0]}"')
    cursor, rows, first = connection.cursor(), iter(rows), 1
    while chunk := list(islice(rows, CHUNK)):
        with cursor.copy(f'COPY "notification" ("id", {NAMES}) FROM STDIN') as copy:
            for number, row in enumerate(chunk, first):
                copy.write_row((number, *row))
        with cursor.copy('COPY "notification_search" ("key", "notification_id") FROM STDIN') as copy:
            for number, row in enumerate(chunk, first):
                for search_key in json.loads(search_keys(*(row[i] for i in ADDRESSES))):
                    copy.write_row((search_key, number))
        first += len(chunk)
    if first > 1:
        connection.execute("SELECT setval(pg_get_serial_sequence('notification', 'id'), %s)", (first - 1,))
    connection.execute(FILL_TALLY)
    connection.execute(f'ALTER TABLE "notification_search" ADD CONSTRAINT "{key[0]}" {key[1]}')
    for _, sql in indexes:
        connection.execute(sql)
    for name in triggers:
        connection.execute(f'ALTER TABLE "notification" ENABLE TRIGGER "{name}"')


def check_search_keys() -> None:
    """A sample of the notifications has the search keys the trigger would have given them: webapp.db's
    search_keys(), and on PostgreSQL its SQL function's too."""
    on_postgresql = postgresql.is_postgresql(db.database)
    total = db.execute('SELECT MAX("id") FROM "notification"').fetchone()[0] or 0
    for notification_id in range(1, total + 1, max(1, total // 200)):
        addresses = db.execute('SELECT "to_addrs", "cc_addrs", "bcc_addrs" FROM "notification" WHERE "id" = ?',
                               (notification_id,)).fetchone()
        stored = sorted(key for key, in db.execute('SELECT "key" FROM "notification_search" '
                                                   'WHERE "notification_id" = ?', (notification_id,)).fetchall())
        expected = [sorted(json.loads(search_keys(*addresses)))]
        if on_postgresql:
            expected.append(sorted(key for key, in db.execute(
                'SELECT "value" FROM search_keys(?, ?, ?) AS "keys" ("value")', tuple(addresses)).fetchall()))
        if any(stored != keys for keys in expected):
            raise SystemExit(f"bench.seed: notification {notification_id}'s search keys differ from the trigger's")


def main() -> None:
    """Create the admin, the accounts (the first one the default) and the notifications."""
    accounts, notifications, sink_port = (int(arg) for arg in sys.argv[1:4])
    app = create_app()
    with app.app_context():
        db.upgrade()
        with db.database.connection_context(), db.database.atomic():
            owner = User.create(username="bench", password_hash=hash_password(PASSWORD), role="admin")
            _, token = ApiToken.issue("bench", created_by=owner)
            ids = [SmtpAccount.create(**fields).id for fields in account_rows(accounts, sink_port)]
        workload = Workload("seed")
        search_index = int(notifications * SEARCH_AT)
        searched = {}
        # Bodies are drawn from a few hundred notifications: the pages never read them, and composing a million
        # texts would only slow the seed down.
        bodies = [workload.notification()["text"] for _ in range(min(notifications, 300))]
        statuses = [status for status, share, *_ in OUTCOMES for _ in range(share)]
        outcome = {status: rest for status, _share, *rest in OUTCOMES}
        now = utcnow()

        def rows():
            rng = workload.rng
            for i in range(notifications):
                to, cc = workload.recipients()
                name = to[0].rpartition("<")[0].strip()
                subject, _ = workload.subject_and_text(name or None, text=False)
                status = statuses[int(rng.random() * 100)]
                attempts, code, reply = outcome[status]
                address = to[0].rpartition("<")[2].rstrip(">")
                if i >= search_index and not searched and status == "sent" and name:
                    searched.update(name=name, address=address)
                created = now - timedelta(seconds=30 * (notifications - i))
                yield (ids[int(rng.random() * len(ids))], status, json.dumps(to, ensure_ascii=False),
                       json.dumps(cc, ensure_ascii=False), "[]", subject, bodies[i % len(bodies)], False,
                       f"<{int(created.timestamp() * 100)}.{rng.getrandbits(48):012x}@exemplo.com.br>", attempts, code,
                       reply.format(queue_id=f"{rng.getrandbits(40):010X}", address=address), STEPS[status],
                       str(created + timedelta(minutes=30) if status == "retrying" else created), "api", "bench",
                       str(created), str(created + timedelta(seconds=2)),
                       str(created + timedelta(seconds=2)) if status == "sent" else None)

        on_postgresql = postgresql.is_postgresql(db.database)
        with db.database.connection_context():
            with db.database.atomic():
                (copy_notifications if on_postgresql else insert_notifications)(db.database.connection(), rows())
                check_search_keys()
            if on_postgresql:
                # The statistics and visibility map autovacuum would make soon after such a load, made now so that
                # it does not run during the measurements.
                db.database.execute_sql("VACUUM ANALYZE")
    words = searched["name"].casefold().split()
    print(json.dumps({"username": "bench", "password": PASSWORD, "token": token,
                      # As typed: the name's last two words, the surname cut short, in lower case; the address up
                      # to its "@".
                      "search_name": f"{words[-2]} {words[-1][:4]}",
                      "search_address": searched["address"].partition("@")[0] + "@"}, ensure_ascii=False))


if __name__ == "__main__":
    main()
