"""The deliveries' recipient search at a million notifications: an index of every display name and address from the
start of each of its words (migration m0005), kept by triggers whatever stores the notification, the counts by
status kept the same way, and the migration filling both for the notifications already there."""
import json
import re
import uuid

import pytest

from tests.support.factories import make_account, make_notification
from webapp import db
from webapp.db import database, search_keys, search_term
from webapp.deliveries import listing
from webapp.models import Notification, utcnow
from webapp.outbox import outbox_counts


def rows(html: str) -> list[str]:
    return re.findall(r'<tr id="notification-(\d+)"', html)


def keys_of(notification_id: int) -> list[str]:
    return [key for (key,) in db.execute(
        'SELECT "key" FROM "notification_search" WHERE "notification_id" = ? ORDER BY "key"', (notification_id,))]


def counted_by_scan() -> dict:
    """The counts by status the slow way, to compare with the ones the triggers keep."""
    counts = dict.fromkeys(Notification.STATUSES, 0)
    counts.update(database.execute_sql('SELECT "status", COUNT(*) FROM "notification" GROUP BY "status"').fetchall())
    return counts


@pytest.fixture
def people(app):
    """Five notifications, oldest first: names, cc and bcc, a non-ASCII name, digits inside a word."""
    make_account(name="Billing", is_default=True)
    made = {
        "ana": make_notification("sent", to="Ana Maria <ana.silva@mail.example.com>"),
        "bia": make_notification("failed", to="bia@example.org", cc="Chefe <CHEFE@Example.com>"),
        "caio": make_notification("queued", to="caio@example.net", bcc="auditoria@example.com"),
        "joão": make_notification("sent", to="JOÃO <joao@example.com>"),
        "davi": make_notification("retrying", to="davi4321@example.net"),
    }
    return {name: str(n.id) for name, n in made.items()}


SEARCHES = [
    ("ana", ["ana"]),
    ("ANA.SILVA", ["ana"]),
    ("silva", ["ana"]),  # a word inside the address
    ("maria", ["ana"]),  # a word of the display name
    ("ana.silva@mail.example.com", ["ana"]),
    ("Ana Maria <ana.silva@mail.example.com>", ["ana"]),  # pasted as a row shows it
    ("chefe@example.com", ["bia"]),  # cc, stored in capitals
    ("auditoria", ["caio"]),  # bcc
    ("example.com", ["joão", "caio", "bia", "ana"]),  # a domain, subdomains too
    ("@example.net", ["davi", "caio"]),
    ("joão", ["joão"]),  # non-ASCII, any case
    ("jo", ["joão"]),
    ("4321", []),  # not the start of a word
    ("ilva", []),
    ("ana_", []),  # "_" and "%" are plain characters, not LIKE's wildcards
    ("an%", []),
    ("@", ["davi", "joão", "caio", "bia", "ana"]),  # nothing to look for: not filtered
]


@pytest.mark.parametrize("common", [False, True], ids=["few matches", "common term"])
@pytest.mark.parametrize("term,expected", SEARCHES)
def test_the_recipient_search_finds_names_and_addresses_from_the_start_of_a_word(
        people, auditor, monkeypatch, term, expected, common):
    if common:
        # Below this many keys the search starts from them; above it walks the list and checks each row's keys.
        monkeypatch.setattr(listing, "FEW_MATCHES", 1)
    html = auditor.get("/deliveries/", query_string={"recipient": term}).get_data(as_text=True)
    assert rows(html) == [people[name] for name in expected]


@pytest.mark.parametrize("common", [False, True], ids=["few matches", "common term"])
def test_the_search_combines_with_the_other_filters(people, auditor, monkeypatch, common):
    if common:
        monkeypatch.setattr(listing, "FEW_MATCHES", 1)
    html = auditor.get("/deliveries/?recipient=example.com&status=sent").get_data(as_text=True)
    assert rows(html) == [people["joão"], people["ana"]]
    html = auditor.get("/deliveries/?recipient=example.net&status=failed").get_data(as_text=True)
    assert rows(html) == [] and "No notification matches these filters." in html


def test_the_search_box_says_what_it_matches(auditor):
    html = auditor.get("/deliveries/").get_data(as_text=True)
    field = html[html.index('id="recipient-field"'):]
    assert 'aria-describedby="recipient-help"' in field
    assert ("Matches a name or an address from the start of any of its words: ana, silva, "
            "ana.silva@example.com, example.com.") in field


def test_the_keys_of_a_notification():
    to = json.dumps(["Ana Maria <ana.silva@mail.example.com>", "JOÃO <joao@example.com>"])
    assert json.loads(search_keys(to, json.dumps(['"Silva, Ana" <ana@example.com>']), "[]")) == [
        "ana", "ana maria", "ana.silva@mail.example.com", "ana@example.com", "com", "example.com", "joao@example.com",
        "joão", "mail.example.com", "maria", "silva, ana", "silva@mail.example.com"]
    # Inside the insert trigger: whatever is stored, it never raises (that would refuse the notification).
    assert search_keys("not json", '{"to": 1}', json.dumps([None, 7, "x@example.com"])) == \
        '["com", "example.com", "x@example.com"]'
    assert search_keys(None, None, None) == "[]"


def test_what_a_search_looks_for():
    assert search_term("  ANA  ") == "ana"
    assert search_term("@Example.com") == "example.com"
    assert search_term("Ana <ana@example.com>") == "ana@example.com"
    assert search_term("%_@") == ""


# --- Triggers: every way a notification is stored keeps the keys and the counts -----------------------------------


def test_a_notification_stored_by_plain_sql_is_searchable_and_counted(app, auditor):
    """As bench/seed.py does it (executemany), without the model or the outbox."""
    account = make_account(is_default=True)
    now = str(utcnow())
    db.execute_many(
        'INSERT INTO "notification" ("account_id", "status", "to_addrs", "cc_addrs", "bcc_addrs", "subject", '
        '"body_text", "overrides_ignored", "message_id", "attempts", "next_attempt_at", "source", "created_by", '
        '"created_at", "updated_at") VALUES (?, ?, ?, ?, \'[]\', \'Report\', \'\', ?, ?, 0, ?, \'python\', \'\', ?, ?)',
        [(account.id, status, json.dumps([to]), json.dumps([cc]), False, f"<{uuid.uuid4().hex}@test>", now, now, now)
         for status, to, cc in (("sent", "user1@example.com", "boss@example.org"),
                                ("failed", "user2@example.com", "Boss <BOSS@example.org>"))])
    html = auditor.get("/deliveries/?recipient=boss").get_data(as_text=True)
    assert len(rows(html)) == 2
    assert outbox_counts() == counted_by_scan() == {"queued": 0, "sending": 0, "sent": 1, "retrying": 0, "failed": 1}


def test_changed_recipients_are_searched_as_they_are_now_and_deleted_ones_leave_nothing(app):
    notification = make_notification("sent", to="old@example.com")
    assert "old@example.com" in keys_of(notification.id)
    Notification.update(to_addrs=json.dumps(["new@example.org"])).where(Notification.id == notification.id).execute()
    assert keys_of(notification.id) == ["example.org", "new@example.org", "org"]
    Notification.delete().where(Notification.id == notification.id).execute()
    assert keys_of(notification.id) == []
    assert outbox_counts() == counted_by_scan()


def test_the_counts_and_the_version_follow_every_change(app, auditor):
    make_account(is_default=True)
    first = make_notification("queued")
    second = make_notification("queued")
    assert outbox_counts() == counted_by_scan()
    _counts, version = listing.tally()

    # A change that moves no count (a new reply while retrying) still tells the page to reload its rows.
    Notification.update(status="retrying").where(Notification.id == first.id).execute()
    _counts, after_status = listing.tally()
    Notification.update(last_reply="451 try later", attempts=2).where(Notification.id == first.id).execute()
    counts, after_reply = listing.tally()
    assert len({version, after_status, after_reply}) == 3
    assert counts == counted_by_scan() == {"queued": 1, "sending": 0, "sent": 0, "retrying": 1, "failed": 0}

    Notification.update(status="sent").where(Notification.id.in_([first.id, second.id])).execute()
    Notification.delete().where(Notification.id == second.id).execute()
    assert outbox_counts() == counted_by_scan() == {"queued": 0, "sending": 0, "sent": 1, "retrying": 0, "failed": 0}
    html = auditor.get("/deliveries/").get_data(as_text=True)
    assert "1 notification" in html and '<strong>1</strong> <span>Sent</span>' in html


# --- The migration: notifications stored before it -------------------------------------------------------------------


@pytest.fixture
def release_four_database(tmp_path, monkeypatch, empty_database_config):
    """A database as the previous release left it (migrations up to m0004), with notifications in it."""
    every = db.migrations()
    db.init_database(empty_database_config.get("DATABASE_URL") or str(tmp_path / "old.db"))
    monkeypatch.setattr(db, "migrations", lambda: every[:4])
    assert db.upgrade()[-1] == "m0004_last_delivery_index"
    monkeypatch.setattr(db, "migrations", lambda: every)
    with database.connection_context():
        db.execute(
            'INSERT INTO "smtp_account" ("id", "name", "enabled", "sender", "reply_to", "return_path", '
            '"confirmation_email", "is_default", "read_confirmation", "force_settings", "footer_enabled", "host", '
            '"port", "secure", "use_auth", "ignore_cert_errors", "use_connector", "created_at", "updated_at") '
            "VALUES (1, 'Old', TRUE, 'ops@example.com', '', '', '', TRUE, FALSE, FALSE, FALSE, 'smtp.example.com', 25, "
            "FALSE, FALSE, FALSE, FALSE, "
            "'2025-01-01', '2025-01-01')")
        for number, (status, to, cc) in enumerate([
                ("sent", "Ana <ANA@example.com>", "[]"),
                ("failed", "bia@example.org", json.dumps(["chefe@example.com"])),
                ("sent", "caio@example.net", "[]")], start=1):
            db.execute(
                'INSERT INTO "notification" ("account_id", "status", "to_addrs", "cc_addrs", "bcc_addrs", "subject", '
                '"body_text", "overrides_ignored", "message_id", "attempts", "next_attempt_at", "source", '
                '"created_by", "created_at", "updated_at") '
                "VALUES (1, ?, ?, ?, '[]', 'Report', '', FALSE, ?, 1, ?, 'python', '', ?, ?)",
                (status, json.dumps([to]), cc, f"<{number}@old>", f"2025-03-0{number} 10:00:00",
                 f"2025-03-0{number} 10:00:00", f"2025-03-0{number} 10:00:00"))
    yield
    if not database.is_closed():
        database.close()


def test_the_migration_indexes_and_counts_the_notifications_already_there(release_four_database):
    assert db.upgrade()[0] == "m0005_delivery_search"
    with database.connection_context():
        def found(term, status=None):
            return [row.id for row in listing.window(listing.Criteria(status=status, term=search_term(term)), 30).items]

        assert found("ana") == [1] and found("chefe") == [2] and found("example") == [3, 2, 1]
        assert found("example", "sent") == [3, 1]
        counts, _version = listing.tally()
        assert counts == counted_by_scan() == {"queued": 0, "sending": 0, "sent": 2, "retrying": 0, "failed": 1}
        # From here on the triggers keep both.
        database.execute_sql('UPDATE "notification" SET "status" = \'queued\' WHERE "id" = 2')
        assert listing.tally()[0] == counted_by_scan()
