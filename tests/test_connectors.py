"""The network connectors screen: list, add, edit, delete, the system default, roles, and the proxy password."""
import re

import pytest

from tests.support.factories import QueryCounter, connector_form, make_account, make_connector
from tests.test_credentials import database_bytes, encodings
from webapp.models import AuditEntry, Connector

PASSWORD_INPUT = re.compile(r'<input[^>]*name="password"[^>]*>')


def audit_entries():
    """The audit lines this screen writes (signing in writes its own)."""
    return AuditEntry.select().where(AuditEntry.object_type == "connector").order_by(AuditEntry.id)


def page(response) -> str:
    return response.get_data(as_text=True)


def is_fragment(response) -> bool:
    return "<html" not in page(response)


def row_of(html: str, connector) -> str:
    row = html[html.index(f'<tr id="connector-{connector.id}"'):]
    return row[:row.index("</tr>")]


def the_default():
    defaults = list(Connector.select().where(Connector.is_default == True))  # noqa: E712
    assert len(defaults) <= 1
    return defaults[0].name if defaults else None


def edit_form(connector, **overrides) -> dict:
    """The edit form as the browser would submit it untouched (the password field comes empty)."""
    data = {"name": connector.name, "kind": connector.kind, "host": connector.host, "port": str(connector.port),
            "username": connector.username, "password": "", "remove_password": "no",
            "remote_dns": "yes" if connector.remote_dns else "no",
            "is_default": "yes" if connector.is_default else "no"}
    data.update(overrides)
    return data


# --- list ---------------------------------------------------------------------------------------

def test_list_shows_each_connector_with_its_type_address_password_state_and_users(admin):
    socks = make_connector(name="Office SOCKS", kind="socks5", host="proxy.example.com", port=1080,
                           username="hop", password="Hop-Pass-1", remote_dns=False, is_default=True)
    http = make_connector(name="Web proxy", kind="http", host="::1", port=3128)
    make_account(name="Billing", use_connector=True, connector=http)
    make_account(name="Alerts", use_connector=True)  # no connector chosen: the system default
    make_account(name="Direct")

    html = page(admin.get("/connectors/"))
    row = row_of(html, socks)
    for text in ("Office SOCKS", "SOCKS5", "proxy.example.com:1080", "hop", "password set", "No",
                 "badge-default", "Alerts", "(through the system default)"):
        assert text in row
    row = row_of(html, http)
    for text in ("HTTP CONNECT", "[::1]:3128", "no password", "—", "Billing"):
        assert text in row
    assert "badge-default" not in row and "Alerts" not in row
    assert "Direct" not in html


def test_the_list_asks_the_database_as_often_for_many_connectors_as_for_one(admin):
    make_account(use_connector=True, connector=make_connector(is_default=True))
    make_account(use_connector=True)  # through the system default
    with QueryCounter() as one:
        admin.get("/connectors/")
    for _ in range(5):
        make_account(use_connector=True, connector=make_connector())
    with QueryCounter() as six:
        html = page(admin.get("/connectors/"))
    assert html.count('<tr id="connector-') == 6
    assert six.count == one.count


def test_the_test_action_opens_the_test_connector_dialog(admin):
    connector = make_connector(name="Proxy")
    html = page(admin.get("/connectors/"))
    link = re.search(r"<a [^>]*>Test connector</a>", html, re.S).group(0)
    assert f'href="/connectors/{connector.id}/test"' in link and 'hx-target="#test-dialog"' in link


@pytest.mark.parametrize("role_client", ["operator", "auditor"])
def test_operators_and_auditors_see_the_list_without_write_buttons(request, role_client):
    client = request.getfixturevalue(role_client).use_language("en")
    connector = make_connector(name="Proxy")
    html = page(client.get("/connectors/"))
    assert "Proxy" in html
    for url in ("/connectors/new", f"/connectors/{connector.id}/edit", f"/connectors/{connector.id}/delete",
                f"/connectors/{connector.id}/make-default", f"/connectors/{connector.id}/unset-default"):
        assert url not in html


def test_list_answers_its_rows_to_htmx_and_the_page_otherwise(admin):
    make_connector(name="Proxy")
    fragment = admin.htmx("get", "/connectors/")
    assert fragment.status_code == 200 and is_fragment(fragment)
    assert page(fragment).lstrip().startswith('<tbody id="connector-rows"')
    assert not is_fragment(admin.get("/connectors/"))


# --- add ----------------------------------------------------------------------------------------

def test_admin_adds_a_connector_with_an_encrypted_password_and_audits_it(admin):
    data = connector_form(name="Office SOCKS", kind="socks5", host="Proxy.Example.COM", port="1080",
                          username="hop", password="Proxy-Secret-7", remote_dns="no")
    response = admin.post("/connectors/new", data=data)
    assert response.status_code == 303 and response.headers["Location"] == "/connectors/"

    connector = Connector.get(Connector.name == "Office SOCKS")
    assert (connector.kind, connector.host, connector.port, connector.username) == \
        ("socks5", "proxy.example.com", 1080, "hop")
    assert connector.remote_dns is False and connector.is_default is False
    assert connector.reveal_secret() == "Proxy-Secret-7"
    assert "Proxy-Secret-7" not in connector.password_encrypted

    entry = audit_entries().get()
    assert (entry.action, entry.object_name) == ("create", "Office SOCKS")
    assert entry.changes["password_encrypted"] == "changed"
    assert entry.changes["port"] == [None, 1080]
    assert "Proxy-Secret-7" not in entry.changes_json


def test_a_connector_needs_no_credentials(admin):
    assert admin.post("/connectors/new", data=connector_form(name="Open", kind="http")).status_code == 303
    connector = Connector.get(Connector.name == "Open")
    assert connector.has_secret is False and connector.username == ""


def test_htmx_add_answers_with_a_redirect_to_the_list(admin):
    response = admin.htmx("post", "/connectors/new", data=connector_form())
    assert response.status_code == 200 and response.headers["HX-Redirect"] == "/connectors/"
    assert Connector.select().count() == 1


def test_add_form_is_a_fragment_for_htmx_and_a_page_otherwise(admin):
    full = admin.get("/connectors/new")
    assert full.status_code == 200 and not is_fragment(full)
    fragment = admin.htmx("get", "/connectors/new")
    html = page(fragment)
    assert is_fragment(fragment) and html.lstrip().startswith('<form id="connector-form"')
    assert 'data-show-when="kind=socks5"' in html  # "Resolve names at the proxy" is for SOCKS5 only
    assert 'autocomplete="new-password"' in PASSWORD_INPUT.search(html).group(0)
    assert "Remove the stored password" not in html  # nothing stored yet
    assert 'id="is_default-field"' in html


INVALID_FIELDS = [
    ("name", ""),
    ("name", "two\nlines"),
    ("name", "x" * 101),
    ("kind", "socks6"),
    ("host", ""),
    ("host", "bad host"),
    ("host", "$(reboot)"),
    ("host", "proxy.example.com\r\nX-Evil: 1"),
    ("port", ""),
    ("port", " "),
    ("port", "0"),
    ("port", "70000"),
    ("port", "abc"),
    ("port", "-1"),
    ("port", "1080.5"),
    ("username", "hop\nRCPT"),
    ("username", "u" * 256),
    ("password", "nul\x00inside"),
]


@pytest.mark.parametrize("name,value", INVALID_FIELDS)
def test_invalid_fields_are_refused_next_to_the_field_and_nothing_is_saved(admin, name, value):
    data = connector_form(**{"username": "hop", name: value})
    full = admin.post("/connectors/new", data=data)
    assert full.status_code == 422 and not is_fragment(full)
    assert f'id="{name}-error"' in page(full)
    assert "Nothing was saved" in page(full)

    fragment = admin.htmx("post", "/connectors/new", data=data)
    assert fragment.status_code == 422 and is_fragment(fragment)
    assert page(fragment).lstrip().startswith('<form id="connector-form"')
    assert f'id="{name}-error"' in page(fragment)

    assert Connector.select().count() == 0
    assert audit_entries().count() == 0


@pytest.mark.parametrize("port", ["0", "70000", "abc", "-1"])
def test_a_wrong_port_says_which_numbers_are_allowed(admin, port):
    response = admin.post("/connectors/new", data=connector_form(port=port))
    assert "Enter a port number from 1 to 65535." in page(response)
    assert "This field is required." not in page(response)


@pytest.mark.parametrize("taken", ["Proxy", "proxy", " PROXY "])
def test_names_are_unique_whatever_their_case(admin, taken):
    make_connector(name="Proxy")
    response = admin.post("/connectors/new", data=connector_form(name=taken))
    assert response.status_code == 422
    assert "A connector with this name already exists." in page(response)
    assert Connector.select().count() == 1


def test_socks4_refuses_a_password_because_it_carries_only_a_user_id(admin):
    data = connector_form(kind="socks4", username="hop", password="Some-Pass")
    response = admin.post("/connectors/new", data=data)
    assert response.status_code == 422
    assert 'id="password-error"' in page(response)
    assert "SOCKS4 carries only a user id" in page(response)
    assert Connector.select().count() == 0
    # A user id alone is fine.
    assert admin.post("/connectors/new", data=connector_form(kind="socks4", username="hop")).status_code == 303
    assert Connector.get().username == "hop"


def test_a_password_needs_a_username(admin):
    response = admin.post("/connectors/new", data=connector_form(username="", password="Lonely-Pass"))
    assert response.status_code == 422
    assert "A password needs a username" in page(response)
    assert Connector.select().count() == 0


# --- edit ---------------------------------------------------------------------------------------

def test_edit_form_shows_the_password_state_but_never_the_password(admin):
    connector = make_connector(name="Proxy", username="hop", password="Stored-Pass-5")
    for response in (admin.get(f"/connectors/{connector.id}/edit"),
                     admin.htmx("get", f"/connectors/{connector.id}/edit")):
        html = page(response)
        assert "Password set — enter a new one to change it." in html
        assert "Remove the stored password" in html
        tag = PASSWORD_INPUT.search(html).group(0)
        assert 'type="password"' in tag and "value" not in tag
        assert "Stored-Pass-5" not in html
    assert is_fragment(admin.htmx("get", f"/connectors/{connector.id}/edit"))


def test_empty_password_on_edit_keeps_the_stored_one(admin):
    connector = make_connector(name="Proxy", username="hop", password="Keep-Pass-1")
    token = connector.password_encrypted
    response = admin.post(f"/connectors/{connector.id}/edit", data=edit_form(connector, name="Office proxy"))
    assert response.status_code == 303
    connector = Connector.get_by_id(connector.id)
    assert connector.reveal_secret() == "Keep-Pass-1" and connector.password_encrypted == token
    assert connector.name == "Office proxy"
    assert audit_entries().get().changes == {"name": ["Proxy", "Office proxy"]}


def test_a_new_password_replaces_the_stored_one_and_the_audit_says_only_changed(admin):
    connector = make_connector(name="Proxy", username="hop", password="Old-Pass-1")
    response = admin.htmx("post", f"/connectors/{connector.id}/edit",
                             data=edit_form(connector, password="New-Pass-2"))
    assert response.headers["HX-Redirect"] == "/connectors/"
    assert Connector.get_by_id(connector.id).reveal_secret() == "New-Pass-2"
    entry = audit_entries().get()
    assert entry.changes == {"password_encrypted": "changed"}


@pytest.mark.parametrize("mask", ["**********", "•••"])
def test_a_mask_is_stored_exactly_as_typed(admin, mask):
    connector = make_connector(name="Proxy", username="hop", password="Real-Pass-1")
    admin.post(f"/connectors/{connector.id}/edit", data=edit_form(connector, password=mask))
    assert Connector.get_by_id(connector.id).reveal_secret() == mask
    assert "value" not in PASSWORD_INPUT.search(page(admin.get(f"/connectors/{connector.id}/edit"))).group(0)


def test_the_stored_password_can_be_removed_to_go_back_to_no_authentication(admin):
    connector = make_connector(name="Proxy", username="hop", password="Old-Pass-1")
    response = admin.post(f"/connectors/{connector.id}/edit",
                             data=edit_form(connector, remove_password="yes", username=""))
    assert response.status_code == 303
    connector = Connector.get_by_id(connector.id)
    assert connector.has_secret is False and connector.username == ""
    assert audit_entries().get().changes["password_encrypted"] == "changed"
    assert "no password" in page(admin.get("/connectors/"))


def test_removing_and_replacing_the_password_at_once_is_refused(admin):
    connector = make_connector(name="Proxy", username="hop", password="Old-Pass-1")
    response = admin.post(f"/connectors/{connector.id}/edit",
                             data=edit_form(connector, remove_password="yes", password="New-Pass-2"))
    assert response.status_code == 422
    assert Connector.get_by_id(connector.id).reveal_secret() == "Old-Pass-1"


def test_switching_to_socks4_needs_the_stored_password_removed(admin):
    connector = make_connector(name="Proxy", username="hop", password="Old-Pass-1")
    response = admin.post(f"/connectors/{connector.id}/edit", data=edit_form(connector, kind="socks4"))
    assert response.status_code == 422
    assert "SOCKS4 carries only a user id" in page(response)
    assert Connector.get_by_id(connector.id).kind == "socks5"

    response = admin.post(f"/connectors/{connector.id}/edit",
                             data=edit_form(connector, kind="socks4", remove_password="yes"))
    assert response.status_code == 303
    connector = Connector.get_by_id(connector.id)
    assert (connector.kind, connector.has_secret, connector.username) == ("socks4", False, "hop")


def test_an_invalid_edit_does_not_echo_the_typed_password_and_saves_nothing(admin):
    connector = make_connector(name="Proxy", username="hop", password="Old-Pass-1")
    data = edit_form(connector, port="70000", password="Typed-But-Refused-3")
    full = admin.post(f"/connectors/{connector.id}/edit", data=data)
    fragment = admin.htmx("post", f"/connectors/{connector.id}/edit", data=data)
    assert not is_fragment(full) and is_fragment(fragment)
    assert page(fragment).lstrip().startswith('<form id="connector-form"')
    for response in (full, fragment):
        assert response.status_code == 422
        assert 'id="port-error"' in page(response)
        assert "Typed-But-Refused-3" not in page(response)
    connector = Connector.get_by_id(connector.id)
    assert (connector.port, connector.reveal_secret()) == (1080, "Old-Pass-1")
    assert audit_entries().count() == 0


def test_renaming_onto_another_connector_is_refused(admin):
    make_connector(name="Proxy")
    other = make_connector(name="Other")
    assert admin.post(f"/connectors/{other.id}/edit", data=edit_form(other, name="PROXY")).status_code == 422
    assert admin.post(f"/connectors/{other.id}/edit", data=edit_form(other, name="OTHER")).status_code == 303
    assert Connector.get_by_id(other.id).name == "OTHER"


def test_unknown_connectors_are_404(admin):
    for method, url in [("get", "/connectors/999/edit"), ("post", "/connectors/999/delete"),
                        ("post", "/connectors/999/make-default"), ("post", "/connectors/999/unset-default")]:
        assert admin.open(url, method=method.upper()).status_code == 404


# --- the system default -------------------------------------------------------------------------

def test_adding_a_default_connector_takes_the_default_from_the_previous_one(admin):
    make_connector(name="Old default", is_default=True)
    assert admin.post("/connectors/new", data=connector_form(name="New", is_default="yes")).status_code == 303
    assert the_default() == "New"
    entry = audit_entries().get()
    assert entry.changes["is_default"] == [None, True]
    assert entry.changes["default_connector"] == ["Old default", "New"]


def test_make_default_moves_the_default_and_answers_the_rows_to_htmx(admin):
    old = make_connector(name="Old", is_default=True)
    new = make_connector(name="New")
    html = page(admin.get("/connectors/"))
    assert f'hx-post="/connectors/{new.id}/make-default"' in html
    assert f'hx-post="/connectors/{old.id}/unset-default"' in html

    response = admin.htmx("post", f"/connectors/{new.id}/make-default")
    assert response.status_code == 200 and is_fragment(response)
    html = page(response)
    assert html.lstrip().startswith('<tbody id="connector-rows"')
    assert "badge-default" in row_of(html, new) and "badge-default" not in row_of(html, old)
    assert the_default() == "New"
    entry = audit_entries().get()
    assert (entry.action, entry.object_name) == ("make_default", "New")
    assert entry.changes == {"is_default": [False, True], "default_connector": ["Old", "New"]}

    # Making the default the default again changes nothing and writes nothing.
    admin.htmx("post", f"/connectors/{new.id}/make-default")
    assert audit_entries().count() == 1


def test_make_default_without_javascript_redirects_to_the_list(admin):
    connector = make_connector(name="Proxy")
    response = admin.post(f"/connectors/{connector.id}/make-default")
    assert response.status_code == 303 and response.headers["Location"] == "/connectors/"
    assert the_default() == "Proxy"
    assert "“Proxy” is now the system default connector." in page(admin.get("/connectors/"))


def test_unset_default_is_refused_while_accounts_rely_on_the_default(admin):
    connector = make_connector(name="Proxy", is_default=True)
    make_account(name="Alerts", use_connector=True)
    make_account(name="Billing", use_connector=True)

    response = admin.htmx("post", f"/connectors/{connector.id}/unset-default")
    assert response.status_code == 409 and is_fragment(response)
    assert response.headers["HX-Reswap"] == "none"
    assert "Alerts, Billing use a connector without choosing one" in page(response)

    response = admin.post(f"/connectors/{connector.id}/unset-default", follow_redirects=True)
    assert "Alerts, Billing use a connector without choosing one" in page(response)
    assert the_default() == "Proxy"
    assert audit_entries().count() == 0


def test_unset_default_without_javascript_redirects_to_the_list(admin):
    connector = make_connector(name="Proxy", is_default=True)
    response = admin.post(f"/connectors/{connector.id}/unset-default")
    assert response.status_code == 303 and response.headers["Location"] == "/connectors/"
    assert the_default() is None
    assert "There is no system default connector now." in page(admin.get("/connectors/"))


def test_unset_default_leaves_no_default_when_nobody_relies_on_it(admin):
    connector = make_connector(name="Proxy", is_default=True)
    make_account(name="Own choice", use_connector=True, connector=connector)
    response = admin.htmx("post", f"/connectors/{connector.id}/unset-default")
    assert response.status_code == 200 and page(response).lstrip().startswith('<tbody id="connector-rows"')
    assert the_default() is None
    entry = audit_entries().get()
    assert (entry.action, entry.changes["is_default"]) == ("unset_default", [True, False])


def test_the_form_cannot_unset_a_default_that_accounts_rely_on(admin):
    connector = make_connector(name="Proxy", is_default=True)
    make_account(name="Alerts", use_connector=True)
    response = admin.post(f"/connectors/{connector.id}/edit", data=edit_form(connector, is_default="no"))
    assert response.status_code == 422
    assert 'id="is_default-error"' in page(response) and "Alerts" in page(response)
    assert the_default() == "Proxy"


def test_the_form_makes_and_unsets_the_default(admin):
    old = make_connector(name="Old", is_default=True)
    new = make_connector(name="New")
    assert admin.post(f"/connectors/{new.id}/edit", data=edit_form(new, is_default="yes")).status_code == 303
    assert the_default() == "New"
    new = Connector.get_by_id(new.id)
    assert admin.post(f"/connectors/{new.id}/edit", data=edit_form(new, is_default="no")).status_code == 303
    assert the_default() is None
    assert Connector.get_by_id(old.id).is_default is False
    assert [e.changes["is_default"] for e in audit_entries()] == [[False, True], [True, False]]


# --- delete -------------------------------------------------------------------------------------

def test_delete_removes_an_unused_connector_and_audits_it(admin):
    connector = make_connector(name="Proxy", username="hop", password="Pass-1")
    response = admin.post(f"/connectors/{connector.id}/delete")
    assert response.status_code == 303
    assert Connector.select().count() == 0
    entry = audit_entries().get()
    assert entry.action == "delete" and entry.changes["password_encrypted"] == "changed"


def test_htmx_delete_answers_an_empty_body_that_removes_the_row(admin):
    connector = make_connector(name="Proxy")
    html = page(admin.get("/connectors/"))
    assert 'hx-confirm="Delete the connector' in html and 'data-confirm="Delete the connector' in html
    response = admin.htmx("post", f"/connectors/{connector.id}/delete")
    assert response.status_code == 200 and page(response) == ""
    assert Connector.select().count() == 0


def test_an_unused_default_connector_can_be_deleted(admin):
    connector = make_connector(name="Proxy", is_default=True)
    make_account(name="Direct", use_connector=False)
    assert admin.post(f"/connectors/{connector.id}/delete").status_code == 303
    assert the_default() is None


@pytest.mark.parametrize("setup,named", [
    ("chosen", "Billing"),
    ("through default", "Alerts (through the system default)"),
    ("chosen but switched off", "Dormant"),
])
def test_delete_is_refused_while_an_account_goes_through_the_connector(admin, setup, named):
    connector = make_connector(name="Proxy", is_default=setup == "through default")
    if setup == "chosen":
        make_account(name="Billing", use_connector=True, connector=connector)
    elif setup == "through default":
        make_account(name="Alerts", use_connector=True)
    else:  # still selected, so the foreign key keeps the connector
        make_account(name="Dormant", use_connector=False, connector=connector)

    response = admin.post(f"/connectors/{connector.id}/delete", follow_redirects=True)
    assert f"“Proxy” cannot be deleted: it is used by {named}." in page(response)
    response = admin.htmx("post", f"/connectors/{connector.id}/delete")
    assert response.status_code == 409 and is_fragment(response)
    assert named in page(response)
    assert Connector.select().count() == 1
    assert audit_entries().count() == 0


def test_a_connector_in_use_offers_no_delete_and_says_which_accounts_go_through_it(admin):
    chosen = make_connector(name="Proxy")
    default = make_connector(name="Fallback", is_default=True)
    free = make_connector(name="Spare")
    make_account(name="Billing", use_connector=True, connector=chosen)
    make_account(name="Alerts", use_connector=True)

    html = page(admin.get("/connectors/"))

    for connector, names in ((chosen, "Billing"), (default, "Alerts")):
        row = row_of(html, connector)
        assert f"/connectors/{connector.id}/delete" not in row and "Delete the connector" not in row
        assert re.search(rf'disabled aria-describedby="why-delete-{connector.id}">Delete</button>\s*'
                         rf'<small id="why-delete-{connector.id}" class="why">In use by {names}: choose another '
                         r"connector for these accounts, or make another connector the default, before deleting "
                         r"this one.</small>", row)
    assert f'hx-post="/connectors/{free.id}/delete"' in row_of(html, free)


# --- who may do what ----------------------------------------------------------------------------

def write_requests(connector):
    return [
        ("get", "/connectors/new", None),
        ("post", "/connectors/new", connector_form(name="Sneaky")),
        ("get", f"/connectors/{connector.id}/edit", None),
        ("post", f"/connectors/{connector.id}/edit", edit_form(connector, name="Sneaky", password="x")),
        ("post", f"/connectors/{connector.id}/delete", None),
        ("post", f"/connectors/{connector.id}/make-default", None),
        ("post", f"/connectors/{connector.id}/unset-default", None),
    ]


@pytest.mark.parametrize("role_client", ["operator", "auditor"])
def test_only_admins_may_change_connectors(request, role_client):
    client = request.getfixturevalue(role_client)
    connector = make_connector(name="Proxy", username="hop", password="Untouched-1")
    for method, url, data in write_requests(connector):
        assert client.open(url, method=method.upper(), data=data).status_code == 403, url
        assert client.htmx(method, url, data=data).status_code == 403, url
    connector = Connector.get_by_id(connector.id)
    assert (connector.name, connector.reveal_secret(), connector.is_default) == ("Proxy", "Untouched-1", False)
    assert Connector.select().count() == 1
    assert audit_entries().count() == 0


def test_anonymous_visitors_are_sent_to_sign_in(client):
    connector = make_connector(name="Proxy")
    for method, url, data in [("get", "/connectors/", None)] + write_requests(connector):
        response = client.open(url, method=method.upper(), data=data)
        assert response.status_code == 302 and "/auth/login" in response.headers["Location"], url
        response = client.htmx(method, url, data=data)
        assert response.status_code == 401 and "/auth/login" in response.headers["HX-Redirect"], url
    assert the_default() is None and Connector.get().name == "Proxy"


def test_a_post_without_csrf_token_changes_nothing(admin):
    connector = make_connector(name="Proxy")
    assert admin.post(f"/connectors/{connector.id}/make-default", csrf=False).status_code == 400
    assert admin.post(f"/connectors/{connector.id}/delete", csrf=False).status_code == 400
    assert the_default() is None and Connector.select().count() == 1


# --- SECURITY.md 4 and 24 (item 1 is in test_credentials.py, for both screens) -------------------

def test_the_proxy_password_is_not_in_the_database_file(app, admin):
    password = "Proxy-Pass-4mZ8-JX2v"
    assert admin.post("/connectors/new", data=connector_form(username="hop", password=password)).status_code == 303
    data = database_bytes(app)
    assert b"connector" in data
    for needle in encodings(password):
        assert needle not in data
    assert Connector.get().reveal_secret() == password


XSS = ['<script>alert(1)</script>', '"><img src=x onerror=alert(1)>']


@pytest.mark.parametrize("payload", XSS)
def test_markup_in_stored_fields_is_escaped_everywhere(admin, payload):
    data = connector_form(name=payload, username=payload, is_default="yes")
    assert admin.post("/connectors/new", data=data).status_code == 303
    connector = Connector.get()
    make_account(name=f"acct {payload}", use_connector=True)
    pages = [
        admin.get("/connectors/"),
        admin.htmx("get", "/connectors/"),
        admin.get(f"/connectors/{connector.id}/edit"),
        admin.htmx("post", f"/connectors/{connector.id}/edit", data={**data, "port": "0"}),
        admin.htmx("post", f"/connectors/{connector.id}/make-default"),
        admin.post(f"/connectors/{connector.id}/delete", follow_redirects=True),
        admin.htmx("post", f"/connectors/{connector.id}/delete"),
        admin.htmx("post", f"/connectors/{connector.id}/unset-default"),
        admin.get("/accounts/"),
        admin.get("/audit/"),
    ]
    for response in pages:
        assert payload not in page(response)
    assert "&lt;" in page(pages[0]) and "&lt;" in page(pages[5]) and "&lt;" in page(pages[7])
