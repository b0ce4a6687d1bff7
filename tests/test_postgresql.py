"""PostgreSQL's stand-ins for what SQLite does its own way: casefold() and search_keys() in SQL, the write lock of
BEGIN IMMEDIATE, text compared by code point, and the settings that name the server."""
import json
import threading
import time

import peewee
import pytest
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, given, settings, strategies as st
from peewee import BooleanField, CharField, DateTimeField, ForeignKeyField, TextField

from tests.support.factories import make_account, make_credential, make_notification
from webapp import create_app, db, maintenance, postgresql
from webapp.config import ConfigError
from webapp.db import database
from webapp.models import MODELS, Credential, Notification
from webapp.vault import VaultKeyError, vault

pytestmark = pytest.mark.engines("postgresql")

# Every character case folding or case mapping touches, and a few it leaves alone (PostgreSQL text holds no NUL).
CASED = "".join(char for char in map(chr, range(1, 0x110000)) if not 0xD800 <= ord(char) <= 0xDFFF
                and (char.casefold() != char or char.lower() != char or char.upper() != char))


def sql_value(sql: str, *params):
    return database.execute_sql(sql, params).fetchone()[0]


def sql_keys(to, cc="[]", bcc="[]") -> list[str]:
    return [key for (key,) in database.execute_sql(
        "SELECT k FROM search_keys(%s, %s, %s) AS k ORDER BY k COLLATE \"C\"", (to, cc, bcc))]


def test_the_translated_schema_has_the_types_the_models_read(app):
    """A migration that forgets to name a boolean column would store 0/1 where peewee compares with TRUE."""
    expected = {BooleanField: "boolean", DateTimeField: "timestamp without time zone", CharField: "character varying",
                TextField: "text", ForeignKeyField: "bigint"}
    for model in MODELS:
        columns = {name: (kind, collation) for name, kind, collation in database.execute_sql(
            "SELECT column_name, data_type, collation_name FROM information_schema.columns WHERE table_name = %s",
            (model._meta.table_name,))}
        if "id" in model._meta.fields:  # not the tables with a natural key (worker_heartbeat, delivery_metric)
            assert columns["id"][0] == "bigint"
        for field in model._meta.sorted_fields:
            kind = next((kind for cls, kind in expected.items() if isinstance(field, cls)), None)
            if kind is not None:
                assert columns[field.column_name][0] == kind, (model.__name__, field.name)
            if kind in ("character varying", "text"):
                assert columns[field.column_name][1] == "C", (model.__name__, field.name)


def test_casefold_is_pythons_for_every_cased_character(app):
    assert sql_value("SELECT casefold(%s)", CASED) == CASED.casefold()
    assert sql_value("SELECT casefold(%s)", "Straße ΣΊΣΥΦΟΣ İstanbul ﬁx µ ſ AÇÃO") == \
        "Straße ΣΊΣΥΦΟΣ İstanbul ﬁx µ ſ AÇÃO".casefold()
    assert sql_value("SELECT casefold(%s)", "Plain ASCII, Only!") == "plain ascii, only!"
    assert sql_value("SELECT casefold(NULL)") is None


RECIPIENT = st.one_of(
    st.text(max_size=30),
    st.builds(lambda name, address: f"{name} <{address}>", st.text(max_size=15), st.emails()),
    st.builds(lambda name, address: f'"{name}" <{address}>', st.text(max_size=15), st.emails()),
).filter(lambda text: "\x00" not in text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(to=st.lists(RECIPIENT, max_size=3), cc=st.lists(RECIPIENT, max_size=2))
def test_search_keys_match_python_for_any_recipients(app, to, cc):
    """The trigger's keys must be the ones search_term() looks for, character for character."""
    lists = (json.dumps(to, ensure_ascii=False), json.dumps(cc), "[]")
    assert sql_keys(*lists) == json.loads(db.search_keys(*lists))


def test_search_keys_skip_what_is_not_a_list_of_strings(app):
    assert sql_keys("not json", '{"to": 1}', json.dumps([None, 7, "x@example.com"])) == \
        ["com", "example.com", "x@example.com"]
    assert sql_keys(None, None, None) == []


def test_the_triggers_keep_the_keys_and_the_counts(app):
    notification = make_notification("queued", to="Ana Silva <ana.silva@example.com>")

    def keys():
        return [key for (key,) in database.execute_sql(
            'SELECT "key" FROM "notification_search" WHERE "notification_id" = %s ORDER BY "key"', (notification.id,))]

    assert keys() == json.loads(db.search_keys(notification.to_addrs, "[]", "[]"))
    Notification.update(to_addrs=json.dumps(["bob@example.org"])).where(Notification.id == notification.id).execute()
    assert keys() == ["bob@example.org", "example.org", "org"]
    Notification.update(status="sent").where(Notification.id == notification.id).execute()
    tally = dict(database.execute_sql('SELECT "status", "total" FROM "notification_tally"').fetchall())
    assert tally["sent"] == 1 and tally["queued"] == 0
    Notification.delete().where(Notification.id == notification.id).execute()
    assert keys() == [] and sql_value('SELECT "total" FROM "notification_tally" WHERE "status" = %s', "sent") == 0


def test_text_sorts_by_code_point_as_in_sqlite_whatever_the_servers_collation(app):
    """The test cluster's default collation is ICU English, which would put "a_b" after "ab" and "B" near "b"."""
    names = ["b", "B", "ab", "a_b", "A b", "Émile", "émile", "z"]
    for name in names:
        make_credential(name=name)
    assert [c.name for c in Credential.select().order_by(Credential.name)] == sorted(names)


def test_immediate_transactions_wait_for_each_other_and_see_what_the_first_wrote(app):
    """BEGIN IMMEDIATE's meaning: one writer at a time, and the next one reads after the first committed."""
    account = make_account(name="counter", port=1)
    inside, seen = threading.Event(), []

    def second():
        with app.app_context(), database.connection_context():
            inside.wait()
            with database.atomic("IMMEDIATE"):
                seen.append(type(account).get_by_id(account.id).port)

    thread = threading.Thread(target=second)
    thread.start()
    with database.atomic("IMMEDIATE"):
        type(account).update(port=2).where(type(account).id == account.id).execute()
        inside.set()
        time.sleep(0.3)  # the second transaction is waiting for the lock meanwhile
        assert seen == []
    thread.join(10)
    assert seen == [2]


def test_a_wrong_vault_key_is_refused_on_postgresql_too(app):
    make_credential(name="stored")
    url = app.config["DATABASE_URL"]
    with pytest.raises(VaultKeyError) as refused:
        create_app({"TESTING": True, "SECRET_KEY": "x", "VAULT_KEYS": Fernet.generate_key().decode(),
                    "DATABASE_URL": url})
    assert url.rsplit("/", 1)[1] in str(refused.value)


def test_database_url_must_name_postgresql(tmp_path):
    with pytest.raises(ConfigError, match="DATABASE_URL must be a PostgreSQL URL"):
        create_app({"TESTING": True, "SECRET_KEY": "x", "VAULT_KEYS": Fernet.generate_key().decode(),
                    "DATABASE": str(tmp_path / "x.db"), "DATABASE_URL": "mysql://root@localhost/smtpdesk"})


def test_messages_never_show_the_database_password():
    assert postgresql.shown("postgresql://desk:s3cret@db.example:5432/smtpdesk") == \
        "postgresql://desk:***@db.example:5432/smtpdesk"
    assert postgresql.shown("postgresql://db.example/smtpdesk?sslmode=require&password=s3cret") == \
        "postgresql://db.example/smtpdesk?sslmode=require&password=***"
    assert postgresql.shown("/var/lib/smtpdesk/smtpdesk.db") == "/var/lib/smtpdesk/smtpdesk.db"


def test_the_vault_key_rotates_on_postgresql_and_backup_points_to_pg_dump(app, runner):
    make_credential(name="rotated", secret="s3cret-value")
    vault.init(f"{Fernet.generate_key().decode()},{app.config['VAULT_KEYS']}", None)
    assert maintenance.reencrypt_all() == (1, [])
    assert maintenance.not_under_newest_key() == [] and Credential.get().reveal_secret() == "s3cret-value"
    result = runner.invoke(args=["backup", "copy.db"])
    assert result.exit_code != 0 and "back it up with pg_dump" in result.output


def test_a_database_host_that_never_answers_is_given_up_on():
    """Every socket has a timeout: a database host that accepts the connection and then says nothing (a firewall,
    a hung server) fails the connection after connect_timeout (10 s unless given), not after the OS's minutes."""
    import socket

    silent = socket.create_server(("127.0.0.1", 0))
    try:
        assert postgresql.CONNECTION["connect_timeout"] == 10 and postgresql.CONNECTION["keepalives"] == 1
        quiet = postgresql.PostgresqlDatabase(None)
        quiet.init(f"postgresql://smtpdesk@127.0.0.1:{silent.getsockname()[1]}/smtpdesk", connect_timeout=2)
        started = time.monotonic()
        with pytest.raises(peewee.OperationalError, match="timeout"):
            quiet.connect()
        assert time.monotonic() - started < 8
    finally:
        silent.close()
