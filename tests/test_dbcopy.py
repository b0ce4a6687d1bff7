"""`smtpdesk db copy --to postgresql://…`: a SQLite installation made through the app, moved into an empty
PostgreSQL database, and the app started there with the same keys: sign-in, secrets, sending, the deliveries' history
and search, fresh ids and the one default all work. Refusals leave the target as it was, and the password in the URL
is never printed."""
import logging
import os
import re
import sqlite3
from datetime import datetime

import psycopg
import pytest
from cryptography.fernet import Fernet
from peewee import IntegrityError

from tests.support import processes
from tests.support.apps import running_app
from tests.support.factories import account_form, connector_form, credential_form, make_account, make_notification
from tests.support.oauth import oauth_form
from tests.support.outbox import fast_worker
from webapp import db, dbcopy
from webapp.db import database
from webapp.models import Connector, Credential, DeliveryAttempt, Notification, SmtpAccount, WorkerHeartbeat
from webapp.outbox import outbox_counts
from webapp.postgresql import shown

pytestmark = pytest.mark.engines("postgresql")

KEYS = dict(SECRET_KEY="moving-house-secret-key", VAULT_KEYS=Fernet.generate_key().decode())
ADMIN_PASSWORD = "Old-Admin-Pass-2291"
LOGIN, SECRET = "mailer@example.com", "Tr0ub4dor&3-smtp"
PROXY_PASSWORD = "Proxy-Pass-7730"
REFRESH_TOKEN = "1//Refresh-Token-Moved-5521"
PG_PASSWORD = "Pg-Target-Pass-4417"
CURRENT = db.latest_version()  # the schema version of this code
BOOLEAN, TIMESTAMP = (psycopg.adapters.types[name].oid for name in ("bool", "timestamp"))
# The tables of the schema and what fills them in installation(): a migration adding a table adds it here.
FILLED_BY = {"user": "users create", "credential": "credential forms", "connector": "connector form",
             "smtp_account": "account forms", "audit_entry": "every change", "setting": "settings form",
             "api_token": "token form", "scheduled_report": "schedule form", "notification": "the API",
             "delivery_attempt": "the worker", "notification_search": "m0005's trigger",
             "notification_tally": "m0005's trigger", "delivery_metric": "the worker",
             "worker_heartbeat": "the worker"}


@pytest.fixture
def owned_database(postgres_cluster):
    """An empty database made as the README says (a role of its own owning it, not a superuser); its URL with the
    password (the test cluster trusts every local connection: it only has to stay out of what is printed)."""
    role = f"mover_{os.getpid()}"
    postgres_cluster.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{PG_PASSWORD}'")
    postgres_cluster.execute(f"CREATE DATABASE \"{role}\" OWNER \"{role}\" ENCODING 'UTF8' TEMPLATE template0")
    yield f"postgresql://{role}:{PG_PASSWORD}@127.0.0.1:{postgres_cluster.port}/{role}"
    postgres_cluster.execute(f"DROP DATABASE \"{role}\" WITH (FORCE)")
    postgres_cluster.execute(f"DROP ROLE \"{role}\"")


def folder(tmp_path, name):
    (tmp_path / name).mkdir()
    return tmp_path / name


def copy(app, url):
    return app.test_cli_runner().invoke(args=["db", "copy", "--to", url])


def tables_of(url: str) -> list[str]:
    with psycopg.connect(url) as connection:
        return [name for name, in connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1")]


def refused(result, words: str) -> str:
    """The command's single error line, after checking it failed cleanly (exit 1, no traceback)."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and words in errors[0], result.output
    return errors[0]


# --- A realistic installation, made through the app -------------------------------------------------------------


@pytest.fixture
def installation(tmp_path, smtp_server, certificates):
    """A SQLite installation with a row in every table, made with the app's commands, forms, API and worker; the
    app stays open, its facts (app.facts) what the tests check afterwards."""
    mail = smtp_server("starttls", users={LOGIN: SECRET})
    refusing = smtp_server(replies={"RCPT": "550 5.1.1 No such user here"})
    greylisting = smtp_server(replies={"DATA": "451 4.3.0 Greylisted, try again later"})
    with running_app(folder(tmp_path, "sqlite"), SMTP_TIMEOUT=2, SMTP_DEADLINE=4, **KEYS) as app:
        runner = app.test_cli_runner()
        for name, role in (("alice", "admin"), ("oscar", "operator")):
            result = runner.invoke(args=["users", "create", name, "--role", role, "--password", ADMIN_PASSWORD])
            assert result.exit_code == 0, result.output
        admin = signed_in(app)
        assert admin.post("/credentials/new", data=credential_form(
            name="Relay login", username=LOGIN, secret=SECRET)).status_code == 303
        assert admin.post("/credentials/new", data=oauth_form(
            "oauth_refresh", name="Gmail", refresh_token=REFRESH_TOKEN)).status_code == 303
        assert admin.post("/connectors/new", data=connector_form(
            name="Office proxy", username="proxy-user", password=PROXY_PASSWORD, is_default="yes")).status_code == 303
        relay = Credential.get(Credential.name == "Relay login")
        for name, server, extra in (
                ("Billing", mail, dict(secure="yes", secure_type="tls", ca_cert=certificates.ca_pem, use_auth="yes",
                                       credential=str(relay.id), is_default="yes")),
                ("Refusing", refusing, dict(secure="no", secure_type="")),
                ("Greylisting", greylisting, dict(secure="no", secure_type=""))):
            response = admin.post("/accounts/new", data=account_form(name=name, host=server.host,
                                                                     port=str(server.port), **extra))
            assert response.status_code == 303, response.get_data(as_text=True)
        assert admin.post("/settings/", data={"footer_text": "ACME Ltda. — não responda."}).status_code == 303
        assert admin.post("/schedules/new", data={"recipients": "ops@example.com", "frequency": "daily",
                                                  "first_run": "2099-01-01T07:00", "filters": ""}).status_code == 303
        page = admin.post("/tokens/new", data={"name": "billing service"}).get_data(as_text=True)
        token = re.search(r"smtpdesk_[\w-]{20,}", page)[0]
        for to, account in (("João Araújo <joao.araujo@example.com>", None), ("ana@example.com", None),
                            ("Rita <rita@example.org>", None), ("nobody@example.net", "Refusing"),
                            ("ghost@example.net", "Refusing"), ("later@example.org", "Greylisting"),
                            ("Ção Silva <cao@example.org>", "Greylisting")):
            body = {"to": to, "subject": "Fatura de março", "text": "Sua fatura está pronta."}
            if account:
                body["account"] = account
            response = admin.post("/api/v1/notifications", json=body, headers={"Authorization": f"Bearer {token}"},
                                  csrf=False)
            assert response.status_code == 202, response.get_data(as_text=True)
        worker = fast_worker(backoff_base_seconds=3600, backoff_max_seconds=3600)
        try:
            while worker.run_once():
                pass
            WorkerHeartbeat.beat(worker.name)  # what `smtpdesk worker` writes from its heartbeat hook (webapp/cli.py)
        finally:
            worker.close()
        admin.post("/api/v1/notifications", json={"to": "queued@example.com", "subject": "Still queued", "text": "."},
                   headers={"Authorization": f"Bearer {token}"}, csrf=False)
        statuses = sorted(n.status for n in Notification.select())
        assert statuses == ["failed"] * 2 + ["queued"] + ["retrying"] * 2 + ["sent"] * 3, statuses
        app.facts = dict(mail=mail, token=token, received=len(mail.received),
                         last_notification=Notification.select().order_by(Notification.id.desc()).get().id,
                         last_account=SmtpAccount.select().order_by(SmtpAccount.id.desc()).get().id)
        yield app


def signed_in(app, username="alice"):
    client = app.test_client()
    client.use_language("en")
    response = client.post("/auth/login", data={"username": username, "password": ADMIN_PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def rows_of_sqlite(path: str, table: str, columns: list[str]) -> list[tuple]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(f'SELECT {", ".join(map(dbcopy._quoted, columns))} FROM "{table}"').fetchall()
    finally:
        connection.close()


def comparable(value, kind: int):
    """A SQLite value as PostgreSQL gives back a column of this type: booleans from 0/1, times from their text."""
    if value is not None and kind == BOOLEAN:
        return bool(value)
    if value is not None and kind == TIMESTAMP:
        return datetime.fromisoformat(value)
    return value


# --- The move -----------------------------------------------------------------------------------------------------


def test_every_table_of_the_schema_is_copied_row_for_row(installation, empty_postgres_database):
    """Generic over the schema: a table added by a migration must be filled in installation() and is then checked
    here column by column (the vault's tokens byte for byte)."""
    source = installation.config["DATABASE"]
    connection = sqlite3.connect(source)
    tables = {name: [row[1] for row in connection.execute(f'PRAGMA table_info("{name}")')] for name, in
              connection.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
    connection.close()
    empty = [name for name, columns in tables.items() if not rows_of_sqlite(source, name, columns)]
    assert not empty, f"installation() leaves {empty} empty: make rows there through the app and name them in FILLED_BY"
    assert set(tables) == set(FILLED_BY), "a migration added or dropped a table: fill it in installation() (through " \
                                          "the app) and name it in FILLED_BY"

    result = copy(installation, empty_postgres_database)
    assert result.exit_code == 0, result.output
    with psycopg.connect(empty_postgres_database) as target:
        for name, columns in tables.items():
            assert f"  {name}: " in result.output
            cursor = target.execute(f'SELECT {", ".join(map(dbcopy._quoted, columns))} FROM "{name}"')
            kinds = [column.type_code for column in cursor.description]
            expected = [tuple(comparable(value, kind) for value, kind in zip(row, kinds))
                        for row in rows_of_sqlite(source, name, columns)]
            assert sorted(cursor.fetchall(), key=repr) == sorted(expected, key=repr), name
        secrets = target.execute('SELECT "secret_encrypted", "refresh_token_encrypted" FROM "credential"').fetchall()
    assert all(token is None or token.startswith("gAAAAA") for row in secrets for token in row)
    assert SECRET not in result.output and REFRESH_TOKEN not in result.output


def test_the_app_runs_on_the_copy_with_the_same_keys(installation, owned_database, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    url = owned_database
    facts = installation.facts
    result = copy(installation, url)
    assert result.exit_code == 0, result.output
    assert PG_PASSWORD not in result.output and PG_PASSWORD not in caplog.text
    assert shown(url) in result.output
    assert "  notification: 8 rows" in result.output and "  delivery_attempt: 7 rows" in result.output
    assert f"Row counts checked table by table: the {len(FILLED_BY)} tables hold the same rows" in result.output

    with running_app(folder(tmp_path, "postgresql"), DATABASE_URL=url, SMTP_TIMEOUT=2, SMTP_DEADLINE=4, **KEYS) as app:
        admin = signed_in(app)  # the password hash came along
        assert signed_in(app, "oscar").get("/accounts/").status_code == 200
        assert Credential.get(Credential.name == "Relay login").reveal_secret() == SECRET
        assert Credential.get(Credential.name == "Gmail").reveal_secret("refresh_token_encrypted") == REFRESH_TOKEN
        assert Connector.get(Connector.name == "Office proxy").reveal_secret() == PROXY_PASSWORD

        billing = SmtpAccount.get(SmtpAccount.name == "Billing")
        response = admin.htmx("post", f"/accounts/{billing.id}/test", data={
            "to": "rita@example.org", "subject": "After the move", "body": "Sent from PostgreSQL.", "next": "/"})
        assert response.status_code == 200 and "After the move" in facts["mail"].received[-1].content.decode()
        assert len(facts["mail"].received) == facts["received"] + 1
        assert facts["mail"].handler.logins[-1][1] == LOGIN  # the server took only the right secret

        history = admin.get("/deliveries/").get_data(as_text=True)
        assert len(re.findall(r'<tr id="notification-\d+"', history)) == 8
        assert "<strong>3</strong> <span>Sent</span>" in history  # the counts kept by the triggers, copied
        assert outbox_counts() == {"queued": 1, "sending": 0, "sent": 3, "retrying": 2, "failed": 2}
        joao = Notification.get(Notification.to_addrs.contains("joao.araujo"))
        assert found(admin, "araújo") == [joao.id]
        failed = Notification.get(Notification.status == "failed")
        assert "No such user here" in admin.get(f"/deliveries/{failed.id}").get_data(as_text=True)
        assert DeliveryAttempt.select().count() == 7

        # New rows get ids past the copied ones, and the triggers are back: keys and counts follow.
        response = admin.post("/api/v1/notifications", json={"to": "Nova <nova@example.com>", "subject": "New",
                                                              "text": "."},
                              headers={"Authorization": f"Bearer {facts['token']}"}, csrf=False)
        assert response.status_code == 202 and response.get_json()["id"] == facts["last_notification"] + 1
        assert found(admin, "nova") == [facts["last_notification"] + 1]
        worker = fast_worker()
        try:
            while worker.run_once():  # the queued one and the new one, through the copied credential
                pass
        finally:
            worker.close()
        assert len(facts["mail"].received) == facts["received"] + 3
        assert outbox_counts() == {"queued": 0, "sending": 0, "sent": 5, "retrying": 2, "failed": 2}

        assert admin.post("/accounts/new", data=account_form(name="Second", is_default="yes")).status_code == 303
        assert SmtpAccount.get(SmtpAccount.name == "Second").id == facts["last_account"] + 1
        assert [a.name for a in SmtpAccount.select().where(SmtpAccount.is_default == True)] == ["Second"]  # noqa: E712
        with pytest.raises(IntegrityError), database.atomic():
            SmtpAccount.update(is_default=True).where(SmtpAccount.name == "Billing").execute()


def found(client, recipient: str) -> list[int]:
    """The deliveries the recipient search lists, newest first."""
    page = client.get("/deliveries/", query_string={"recipient": recipient}).get_data(as_text=True)
    return [int(n) for n in re.findall(r'<tr id="notification-(\d+)"', page)]


# --- Refusals: nothing written ---------------------------------------------------------------------------------


@pytest.fixture
def small(tmp_path):
    """A SQLite installation with a few notifications, its app open."""
    with running_app(folder(tmp_path, "small"), **KEYS) as app:
        account = make_account(name="Main", is_default=True)
        for status in ("sent", "failed", "queued"):
            make_notification(status, account=account, to=f"Ana <ana.{status}@example.com>")
        yield app


def test_a_target_holding_any_row_is_refused_and_left_as_it_was(small, postgres_database):
    with psycopg.connect(postgres_database, autocommit=True) as target:
        target.execute("CREATE TABLE \"notes\" (\"text\" TEXT)")
        target.execute("INSERT INTO \"notes\" VALUES ('keep me')")
    line = refused(copy(small, postgres_database), "is not empty (notes hold rows)")
    assert "nothing was written" in line
    with psycopg.connect(postgres_database) as target:
        assert target.execute('SELECT COUNT(*) FROM "notification"').fetchone()[0] == 0
        assert target.execute('SELECT * FROM "notes"').fetchall() == [("keep me",)]


def test_a_migrated_empty_target_is_used_and_a_newer_one_refused(small, postgres_database, empty_postgres_database):
    result = copy(small, postgres_database)  # `smtpdesk db upgrade` was run there already
    assert result.exit_code == 0 and f"the target is at schema {CURRENT} already" in result.output, result.output
    with psycopg.connect(empty_postgres_database, autocommit=True) as target:
        target.execute('CREATE TABLE "schema_version" ("version" INTEGER NOT NULL)')
        target.execute('INSERT INTO "schema_version" VALUES (99)')
    refused(copy(small, empty_postgres_database), f"is at schema 99, newer than the SQLite database ({CURRENT})")
    assert tables_of(empty_postgres_database) == ["schema_version"]


@pytest.mark.parametrize("version,words", [(CURRENT - 1, "run `smtpdesk db upgrade` first"),
                                           (CURRENT + 1, "newer than this smtpdesk")])
def test_a_source_at_another_schema_version_is_refused(small, empty_postgres_database, version, words):
    database.execute_sql(f"PRAGMA user_version = {version}")
    refused(copy(small, empty_postgres_database), words)
    assert tables_of(empty_postgres_database) == []


def test_a_failure_midway_leaves_the_target_empty(small, empty_postgres_database):
    # PostgreSQL's text cannot hold a NUL, which SQLite stores: the last table to be copied fails.
    database.execute_sql("UPDATE \"notification\" SET \"subject\" = 'a' || char(0) || 'b'")
    first = database.execute_sql('SELECT MIN("id") FROM "notification"').fetchone()[0]
    refused(copy(small, empty_postgres_database), "The copy failed and nothing was written: in the table "
                                                  f"notification, near the row with id {first}: PostgreSQL text")
    assert tables_of(empty_postgres_database) == []


def test_row_counts_that_differ_are_an_error_and_nothing_is_kept(small, empty_postgres_database, monkeypatch):
    original = dbcopy._copy_table

    def losing_a_row(source, target, table, types, say):
        original(source, target, table, types, say)
        if table.name == "notification_search":
            target.execute_sql('DELETE FROM "notification_search" WHERE "key" = %s', ("ana",))

    monkeypatch.setattr(dbcopy, "_copy_table", losing_a_row)
    keys = database.execute_sql('SELECT COUNT(*) FROM "notification_search"').fetchone()[0]
    refused(copy(small, empty_postgres_database), "Row counts differ after the copy (notification_search "
                                                  f"{keys} here, {keys - 3} there); nothing was written.")
    assert tables_of(empty_postgres_database) == []


@pytest.mark.parametrize("damage,words", [
    ("UPDATE \"notification_tally\" SET \"total\" = \"total\" + 1 WHERE \"status\" = 'sent'",
     "counts by status kept in notification_tally differ from the notifications for sent"),
    ("DELETE FROM \"notification_search\" WHERE \"key\" = 'ana'", "recipient search keys of notifications"),
])
def test_derived_tables_are_checked_against_the_notifications(small, empty_postgres_database, damage, words):
    database.execute_sql(damage)
    refused(copy(small, empty_postgres_database), words)
    assert tables_of(empty_postgres_database) == []


@pytest.mark.parametrize("url,words", [
    ("mysql://mover:Sec-9912@127.0.0.1/smtpdesk", "--to must be a PostgreSQL URL"),
    ("postgresql://mover:Sec-9912@127.0.0.1:port/smtpdesk", "Cannot connect to postgresql://mover:***@127.0.0.1:port"),
])
def test_a_bad_url_is_refused_without_its_password(small, closed_port, url, words):
    result = copy(small, url.format(port=closed_port))
    refused(result, words)
    assert "9912" not in result.output


def test_a_password_holding_a_bare_at_sign_is_masked_however_it_is_split():
    # libpq ends the password at the first "@" and quotes the rest as the host it could not find.
    url = "postgresql://mover:Sec@-9912@db.example.com/smtpdesk"
    message = "Cannot connect to postgresql://mover:***@-9912@db.example.com: failed to resolve host '-9912@db'"
    assert "9912" not in dbcopy._masked(message, url) and "Sec" not in dbcopy._masked("password Sec@-9912", url)


def test_an_unreachable_server_is_one_line_without_the_password(small, closed_port):
    """The real command, as an admin runs it: one line on stderr, exit 1, no traceback, no password."""
    url = f"postgresql://mover:Unreach-Pass-3301@127.0.0.1:{closed_port}/smtpdesk"
    finished = processes.run(["db", "copy", "--to", url], processes.instance_env(small))
    assert finished.returncode == 1, finished.stderr
    assert finished.stderr.startswith(f"Error: Cannot connect to postgresql://mover:***@127.0.0.1:{closed_port}/")
    assert "Traceback" not in finished.stderr and len(finished.stderr.strip().splitlines()) == 1
    assert "Unreach-Pass-3301" not in finished.stdout + finished.stderr


def test_an_installation_on_postgresql_already_is_refused(tmp_path, postgres_database, empty_postgres_database):
    with running_app(tmp_path, DATABASE_URL=postgres_database, **KEYS) as app:
        refused(copy(app, empty_postgres_database), "This installation already uses PostgreSQL")
    assert tables_of(empty_postgres_database) == []
