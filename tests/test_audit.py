"""The audit log: entries from real actions, labels, filters, pages, htmx fragments, CSV export and roles."""
import csv
import io
import json
import re
from datetime import datetime

import pytest

from tests.support.factories import PASSWORD, make_user
from webapp.csv_export import safe_cell
from webapp.models import AuditEntry, User

ROW = re.compile(r'<tr id="audit-(\d+)">(.*?)</tr>', re.S)
CELL = re.compile(r"<td[^>]*>(.*?)</td>", re.S)


@pytest.fixture
def en(admin):
    """The admin's browser, in English, with an empty audit log (the sign-in entry removed)."""
    AuditEntry.delete().execute()
    return admin


def entry(at, action="update", object_type="smtp_account", object_name="Main account", actor_name="alice",
          changes=None, remote_addr="10.0.0.5"):
    """An audit line as the screens write it, at a chosen time."""
    return AuditEntry.create(at=at, action=action, object_type=object_type, object_name=object_name,
                             actor_name=actor_name, changes_json=json.dumps(changes or {}, ensure_ascii=False),
                             remote_addr=remote_addr)


def shown(response) -> list[int]:
    """The ids of the entries on the page, in display order."""
    return [int(i) for i, _ in ROW.findall(response.get_data(as_text=True))]


def rows(response) -> list[list[str]]:
    """The table as text: one list of cells per entry; changes joined with " | "."""
    table = []
    for _id, row in ROW.findall(response.get_data(as_text=True)):
        cells = [re.sub(r"<[^>]+>", "", cell.replace("</li><li>", " | ")) for cell in CELL.findall(row)]
        table.append([" ".join(cell.split()) for cell in cells])
    return table


def read_csv(response) -> list[list[str]]:
    text = response.get_data().decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:])))


# --- entries written by real actions ---------------------------------------------------------------------------

def test_the_log_shows_sign_ins_and_a_user_created_through_the_form(app, client):
    admin = make_user("admin", username="alice")
    client.use_language("en")
    assert client.post("/auth/login", data={"username": "alice", "password": "wrong password"}).status_code == 422
    client.login(admin)
    response = client.post("/users/new", data={"username": "Bob", "role": "operator", "password": PASSWORD + "1",
                                                "confirm": PASSWORD + "1"})
    assert response.status_code == 303

    page = client.get("/audit/")
    assert page.status_code == 200
    created, signed_in, failed = rows(page)
    assert created[1:] == ["alice", "created", "user", "bob",
                           "Active: — → Yes | Password: changed | Role: — → Operator | Username: — → bob",
                           "127.0.0.1"]
    assert signed_in[1:] == ["alice", "signed in", "user", "alice", "—", "127.0.0.1"]
    assert failed[1:] == ["system", "sign-in failed", "user", "alice", "—", "127.0.0.1"]
    body = page.get_data(as_text=True) + client.get("/audit/export.csv").get_data(as_text=True)
    assert PASSWORD + "1" not in body and "$argon2" not in body


def test_when_is_formatted_for_the_reader(en):
    entry(datetime(2024, 3, 1, 9, 30))
    assert rows(en.get("/audit/"))[0][0] == "3/1/24 9:30:00 AM"  # the short date and the time, as every screen
    assert 'datetime="2024-03-01T09:30:00Z"' in en.get("/audit/").get_data(as_text=True)


# --- how entries read ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fields,expected", [
    (dict(action="update", object_type="smtp_account",
          changes={"name": ["Old", "New"], "sender": ["a@example.com", "Ops <b@example.com>"],
                   "secure": [False, True], "port": [None, 587], "secure_type": [None, "tls"]}),
     ["updated", "SMTP account",
      "Account name: Old → New | Sender e-mail: a@example.com → Ops &lt;b@example.com&gt;"
      " | Use secure connection?: No → Yes | Port: — → 587 | Secure connection type (SSL / TLS): — → tls"]),
    (dict(action="update", object_type="credential", changes={"name": ["a", "b"], "secret_encrypted": "changed"}),
     ["updated", "credential", "Name: a → b | Secret: changed"]),
    (dict(action="update", object_type="connector",
          changes={"password_encrypted": "changed", "remote_dns": [True, False], "is_default": [False, True]}),
     ["updated", "network connector",
      "Password: changed | Resolve names at the proxy: Yes → No | System default connector: No → Yes"]),
    (dict(action="update", object_type="user", changes={"password_hash": "changed", "role": ["admin", "auditor"]}),
     ["updated", "user", "Password: changed | Role: Administrator → Auditor"]),
    (dict(action="make_default", object_type="smtp_account"), ["made default", "SMTP account", "—"]),
    (dict(action="make_default", object_type="connector"), ["made default", "network connector", "—"]),
    (dict(action="unset_default", object_type="connector",
          changes={"is_default": [True, False], "default_connector": ["Proxy", None]}),
     ["default unset", "network connector", "System default connector: Yes → No | System default: Proxy → —"]),
    (dict(action="enable", changes={"enabled": [False, True]}), ["enabled", "SMTP account", "Enabled: No → Yes"]),
    (dict(action="disable"), ["disabled", "SMTP account", "—"]),
    (dict(action="delete", object_type="credential"), ["deleted", "credential", "—"]),
    (dict(action="logout", object_type="user"), ["signed out", "user", "—"]),
    (dict(action="frobnicate", object_type="widget", changes={"colour": ["red", "blue"]}),
     ["frobnicate", "widget", "colour: red → blue"]),
])
def test_actions_object_types_and_fields_read_as_labels(en, fields, expected):
    entry(datetime(2024, 3, 1), **fields)
    [row] = rows(en.get("/audit/"))
    assert [row[2], row[3], row[5]] == expected


def test_a_secret_column_never_shows_a_value_even_if_one_was_recorded(en):
    entry(datetime(2024, 3, 1), object_type="credential",
          changes={"secret_encrypted": ["gAAAAold-token", "gAAAAnew-token"]})
    page = en.get("/audit/").get_data(as_text=True)
    assert "Secret: changed" in page and "gAAAA" not in page
    assert "gAAAA" not in en.get("/audit/export.csv").get_data(as_text=True)


@pytest.mark.parametrize("actor_name,remote_addr,who", [
    ("alice", "10.0.0.5", "alice"),
    ("", "cli", "command line"),
    ("", "", "system"),
])
def test_who_is_the_user_or_the_command_line_or_the_system(en, actor_name, remote_addr, who):
    entry(datetime(2024, 3, 1), actor_name=actor_name, remote_addr=remote_addr)
    assert rows(en.get("/audit/"))[0][1] == who


def test_user_created_on_the_command_line_reads_as_command_line(en, runner):
    result = runner.invoke(args=["users", "create", "ops", "--role", "auditor", "--password", PASSWORD])
    assert result.exit_code == 0, result.output
    [row] = rows(en.get("/audit/"))
    assert row[1:6] == ["command line", "created", "user", "ops", "Role: — → Auditor"]


def test_long_values_are_cut_in_the_table_and_whole_in_the_csv(en):
    long_text = "word " * 60
    entry(datetime(2024, 3, 1), object_type="credential", changes={"description": ["", long_text]})
    cell = rows(en.get("/audit/"))[0][5]
    assert cell.endswith("…") and len(cell) < 120
    assert long_text in read_csv(en.get("/audit/export.csv"))[1][5]


# --- filters ---------------------------------------------------------------------------------------------------

@pytest.fixture
def log(en):
    """Five entries over five days, by name."""
    return {
        "e1": entry(datetime(2024, 3, 1, 9), "update", "smtp_account", "Main account", "alice"),
        "e2": entry(datetime(2024, 3, 2, 10), "create", "credential", "Mailer login", "bob"),
        "e3": entry(datetime(2024, 3, 3, 11), "login", "user", "alice", "alice"),
        "e4": entry(datetime(2024, 3, 4, 12), "make_default", "smtp_account", "Backup Account", "carol"),
        "e5": entry(datetime(2024, 3, 5, 13), "login_failed", "user", "mallory", ""),
    }


@pytest.mark.parametrize("query,expected", [
    ("", ["e5", "e4", "e3", "e2", "e1"]),
    ("who=ali", ["e3", "e1"]),
    ("who=ALICE", ["e3", "e1"]),
    ("who=_", []),  # a literal underscore, not a LIKE wildcard
    ("action=login", ["e3"]),
    ("action=make_default", ["e4"]),
    ("object_type=smtp_account", ["e4", "e1"]),
    ("object_type=user", ["e5", "e3"]),
    ("name=account", ["e4", "e1"]),
    ("name=MAILER", ["e2"]),
    ("date_from=2024-03-02&date_to=2024-03-04", ["e4", "e3", "e2"]),
    ("date_from=2024-03-04", ["e5", "e4"]),
    ("date_to=2024-03-01", ["e1"]),
    ("who=alice&object_type=smtp_account", ["e1"]),
    ("who=a&action=make_default&name=backup&date_from=2024-03-04&date_to=2024-03-04", ["e4"]),
    ("who=alice&action=create", []),
    ("who=&action=&object_type=&name=&date_from=&date_to=", ["e5", "e4", "e3", "e2", "e1"]),
])
def test_filters_alone_and_combined(en, log, query, expected):
    response = en.get(f"/audit/?{query}")
    assert response.status_code == 200
    assert shown(response) == [log[name].id for name in expected]
    if not expected:
        assert "No entries match these filters." in response.get_data(as_text=True)


def test_the_date_range_includes_both_days_entirely(en):
    before = entry(datetime(2024, 2, 29, 23, 59, 59))
    first = entry(datetime(2024, 3, 1, 0, 0, 0))
    last = entry(datetime(2024, 3, 1, 23, 59, 59, 999999))
    after = entry(datetime(2024, 3, 2, 0, 0, 0))
    assert shown(en.get("/audit/?date_from=2024-03-01&date_to=2024-03-01")) == [last.id, first.id]
    assert shown(en.get("/audit/?date_from=2024-03-01")) == [after.id, last.id, first.id]
    assert shown(en.get("/audit/?date_to=2024-03-01")) == [last.id, first.id, before.id]


def test_bad_filter_values_are_reported_and_ignored(en, log):
    response = en.get("/audit/?date_from=2024-13-45&action=bogus&page=abc")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert re.search(r'id="date_from-error">[^<]*Not a valid date value', page)
    assert re.search(r'id="action-error">[^<]*Not a valid choice', page)
    assert len(shown(response)) == 5


def test_the_filter_form_keeps_what_was_chosen(en, log):
    page = en.get("/audit/?who=carol&action=make_default&object_type=smtp_account&name=backup"
                  "&date_from=2024-03-01&date_to=2024-03-31").get_data(as_text=True)
    assert 'name="who" type="search" value="carol"' in page
    assert '<option selected value="make_default">' in page
    assert '<option selected value="smtp_account">' in page
    assert 'name="name" type="search" value="backup"' in page
    assert 'name="date_from" type="date" value="2024-03-01"' in page
    assert 'name="date_to" type="date" value="2024-03-31"' in page


# --- pages -----------------------------------------------------------------------------------------------------

def test_fifty_entries_a_page_newest_first_and_links_keep_the_filters(en):
    AuditEntry.insert_many([
        {"at": datetime(2024, 1, 1, 0, minute), "action": "update", "object_type": "smtp_account",
         "object_name": f"account {minute}", "actor_name": "alice"} for minute in range(60)
    ] + [
        {"at": datetime(2024, 1, 1, 1, minute), "action": "update", "object_type": "smtp_account",
         "object_name": f"account {60 + minute}", "actor_name": "alice"} for minute in range(60)
    ] + [{"at": datetime(2024, 2, 1), "action": "create", "actor_name": "alice"} for _ in range(5)]).execute()
    updates = [e.id for e in AuditEntry.select().where(AuditEntry.action == "update")
               .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())]

    first = en.get("/audit/?action=update")
    page = first.get_data(as_text=True)
    assert shown(first) == updates[:50]
    assert "120 entries" in page and "Page 1 of 3" in page
    next_link = re.search(r'<a href="([^"]+)" hx-get="([^"]+)" hx-target="#audit-rows"', page)
    assert next_link.group(1) == next_link.group(2) == "/audit/?action=update&amp;page=2"
    assert 'hx-push-url="true"' in page

    assert shown(en.get("/audit/?action=update&page=2")) == updates[50:100]
    third = en.get("/audit/?action=update&page=3")
    assert shown(third) == updates[100:]
    assert "Page 3 of 3" in third.get_data(as_text=True)
    assert shown(en.get("/audit/?action=update&page=99")) == updates[100:]  # past the end: the last page


def test_a_page_link_fetched_by_htmx_is_a_fragment_and_by_the_browser_a_page(en):
    AuditEntry.insert_many([{"at": datetime(2024, 1, 1, 0, m), "action": "update"} for m in range(55)]).execute()
    fragment = en.htmx("get", "/audit/?page=2")
    assert "<html" not in fragment.get_data(as_text=True) and len(shown(fragment)) == 5
    assert "<html" in en.get("/audit/?page=2").get_data(as_text=True)


# --- htmx ------------------------------------------------------------------------------------------------------

def test_filtering_over_htmx_swaps_only_the_results(en, log):
    fragment = en.htmx("get", "/audit/?action=login")
    body = fragment.get_data(as_text=True)
    assert fragment.status_code == 200
    assert "<html" not in body and 'id="audit-filters"' not in body
    assert body.lstrip().startswith('<section id="audit-rows"')
    assert shown(fragment) == [log["e3"].id]
    assert 'href="/audit/export.csv?action=login"' in body
    assert "HX-Request" in fragment.headers["Vary"]

    page = en.get("/audit/?action=login")
    body = page.get_data(as_text=True)
    assert "<html" in body and 'id="audit-filters"' in body and 'id="audit-rows"' in body
    assert shown(page) == [log["e3"].id]
    # The filter form pushes the URL it fetches; that URL answers a whole page to a plain GET (above).
    assert re.search(r'<form id="audit-filters"[^>]*hx-target="#audit-rows"[^>]*hx-push-url="true"', body, re.S)


def test_a_history_restore_gets_the_whole_page(en, log):
    response = en.htmx("get", "/audit/?action=login", headers={"HX-History-Restore-Request": "true"})
    assert "<html" in response.get_data(as_text=True)


# --- CSV export ------------------------------------------------------------------------------------------------

def test_csv_export_holds_the_filtered_entries_with_formula_cells_neutralised(en):
    for name in ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2", "@SUM(A1)", "\tTAB", "\rCR",
                 "plain, with comma"]:
        entry(datetime(2024, 3, 1), action="delete", object_type="credential", object_name=name,
              actor_name="@boss", changes={"name": [name, None]})
    entry(datetime(2024, 3, 2), action="update", object_name="not exported")

    response = en.get("/audit/export.csv?action=delete")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert re.fullmatch(r'attachment; filename=audit-log-[\d-]+\.csv', response.headers["Content-Disposition"])
    header, *data = read_csv(response)
    assert header == ["When", "Who", "Action", "Object type", "Object name", "Changes", "Client address"]
    assert len(data) == 7
    names = sorted(row[4] for row in data)
    assert names == sorted(["'=HYPERLINK(\"http://evil.example\",\"x\")", "'+1+1", "'-2", "'@SUM(A1)", "'\tTAB",
                            "'\rCR", "plain, with comma"])
    for row in data:
        assert row[:4] == ["2024-03-01 00:00:00", "'@boss", "deleted", "credential"]
        assert row[5].startswith("Name: ") and row[5].endswith(" → —")
        assert row[6] == "10.0.0.5"


def test_the_export_link_carries_the_filters(en, log):
    page = en.get("/audit/?who=alice&object_type=user").get_data(as_text=True)
    assert 'href="/audit/export.csv?who=alice&amp;object_type=user"' in page
    [header, row] = read_csv(en.get("/audit/export.csv?who=alice&object_type=user"))
    assert row[4] == "alice" and row[2] == "signed in"


@pytest.mark.parametrize("value,cell", [
    (None, ""), ("", ""), (42, "42"), (True, "True"), ("plain", "plain"), ("a=b", "a=b"),
    ("=1+2", "'=1+2"), ("+1", "'+1"), ("-1", "'-1"), ("@A1", "'@A1"), ("\tx", "'\tx"), ("\rx", "'\rx"),
    ("'quoted", "'quoted"),
])
def test_safe_cell_neutralises_what_a_spreadsheet_would_run(value, cell):
    assert safe_cell(value) == cell


# --- escaping --------------------------------------------------------------------------------------------------

def test_markup_in_names_and_changes_is_shown_as_text(en):
    entry(datetime(2024, 3, 1), object_name="<script>alert(1)</script>",
          changes={"name": ['"><img src=x onerror=alert(1)>', "<script>alert(2)</script>"]})
    for response in (en.get("/audit/"), en.htmx("get", "/audit/")):
        body = response.get_data(as_text=True)
        assert "<script>alert" not in body and "<img src=x" not in body
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
        assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt; → &lt;script&gt;alert(2)&lt;/script&gt;" in body
    body = en.get('/audit/?name="><script>alert(3)</script>').get_data(as_text=True)
    assert "<script>alert" not in body
    assert 'value="&#34;&gt;&lt;script&gt;alert(3)&lt;/script&gt;"' in body


# --- who may read the log --------------------------------------------------------------------------------------

@pytest.mark.parametrize("role,status", [("admin", 200), ("auditor", 200), ("operator", 403)])
def test_admins_and_auditors_read_the_log_operators_do_not(app, role, status):
    client = app.test_client()
    client.login(make_user(role, username="someone"))
    for url in ("/audit/", "/audit/?action=login", "/audit/export.csv"):
        assert client.get(url).status_code == status, url
        assert client.htmx("get", url).status_code == status, url
    nav = client.get("/accounts/").get_data(as_text=True)
    assert ('href="/audit/"' in nav) == (status == 200)


def test_auditor_sees_entries_but_no_users_link(app):
    client = app.test_client().use_language("en")
    client.login(make_user("auditor", username="audrey"))
    page = client.get("/audit/").get_data(as_text=True)
    assert "signed in" in page and "audrey" in page
    assert 'href="/users/"' not in page


def test_anonymous_visitors_are_sent_to_sign_in(client):
    make_user("admin")  # past first-run setup
    for url in ("/audit/", "/audit/export.csv"):
        response = client.get(url)
        assert response.status_code == 302 and "/auth/login" in response.headers["Location"]
        response = client.htmx("get", url)
        assert response.status_code == 401 and "/auth/login" in response.headers["HX-Redirect"]


def test_nobody_can_write_to_the_log_through_the_web(en):
    assert en.post("/audit/").status_code == 405
    assert en.post("/audit/export.csv").status_code == 405
    assert User.select().count() == 1
