"""The credential vault screen: list, add, edit, delete, roles, and secrets that never leave the vault."""
import base64
import re
from pathlib import Path

import pytest

from tests.support.factories import QueryCounter, credential_form, make_account, make_client, make_credential
from webapp.db import database
from webapp.models import AuditEntry, Connector, Credential

SECRET_INPUT = re.compile(r'<input[^>]*name="secret"[^>]*>')


def audit_entries():
    """The audit lines this screen writes (signing in writes its own)."""
    return AuditEntry.select().where(AuditEntry.object_type == "credential").order_by(AuditEntry.id)


def page(response) -> str:
    return response.get_data(as_text=True)


def is_fragment(response) -> bool:
    return "<html" not in page(response)


# --- list ---------------------------------------------------------------------------------------

def test_list_shows_each_credential_with_its_secret_state_hosts_and_accounts(admin):
    used = make_credential(name="Mailer", username="mailer@example.com", description="Main relay login",
                           allowed_hosts="smtp.example.com\n*.example.net")
    make_credential(name="Spare", secret=None)
    make_account(name="Billing", credential=used)
    make_account(name="Alerts", credential=used)

    response = admin.get("/credentials/")
    assert response.status_code == 200
    html = page(response)
    row = html[html.index(f'id="credential-{used.id}"'):]
    row = row[:row.index("</tr>")]
    for text in ("Mailer", "mailer@example.com", "Main relay login", "smtp.example.com", "*.example.net",
                 "secret set", "Alerts, Billing"):
        assert text in row
    assert "no secret" in html and "any host" in html
    assert 'href="/credentials/new"' in html


def test_the_list_asks_the_database_as_often_for_many_credentials_as_for_one(admin):
    make_account(credential=make_credential())
    with QueryCounter() as one:
        admin.get("/credentials/")
    for _ in range(5):
        make_account(credential=make_credential())
    with QueryCounter() as six:
        html = page(admin.get("/credentials/"))
    assert html.count('<tr id="credential-') == 6
    assert six.count == one.count


@pytest.mark.parametrize("role_client", ["operator", "auditor"])
def test_operators_and_auditors_see_the_list_without_write_buttons(request, role_client):
    client = request.getfixturevalue(role_client).use_language("en")
    credential = make_credential(name="Mailer")
    html = page(client.get("/credentials/"))
    assert "Mailer" in html
    assert "/credentials/new" not in html
    assert f"/credentials/{credential.id}/edit" not in html
    assert f"/credentials/{credential.id}/delete" not in html


def test_list_answers_its_rows_to_htmx_and_the_page_otherwise(admin):
    make_credential(name="Mailer")
    fragment = admin.htmx("get", "/credentials/")
    assert fragment.status_code == 200 and is_fragment(fragment)
    assert page(fragment).lstrip().startswith('<tbody id="credential-rows"')
    full = admin.get("/credentials/")
    assert not is_fragment(full) and 'id="credential-rows"' in page(full)


# --- add ----------------------------------------------------------------------------------------

def test_admin_adds_a_credential_encrypted_and_audited(admin):
    form = credential_form(name="Mailer", username="mailer@example.com", secret="Add-Secret-42",
                           description="Relay login",
                           allowed_hosts=" SMTP.Example.com \n\n*.Example.NET\nsmtp.example.com\n[::1]")
    response = admin.post("/credentials/new", data=form)
    assert response.status_code == 303
    assert response.headers["Location"] == "/credentials/"

    credential = Credential.get(Credential.name == "Mailer")
    assert credential.reveal_secret() == "Add-Secret-42"
    assert "Add-Secret-42" not in credential.secret_encrypted
    assert credential.allowed_hosts == "smtp.example.com\n*.example.net\n::1"
    assert credential.description == "Relay login"

    entry = audit_entries().get()
    assert (entry.action, entry.object_type, entry.object_name) == ("create", "credential", "Mailer")
    assert entry.changes["secret_encrypted"] == "changed"
    assert entry.changes["name"] == [None, "Mailer"]
    assert "Add-Secret-42" not in entry.changes_json
    assert "Credential “Mailer” added." in page(admin.get("/credentials/"))


def test_htmx_add_answers_with_a_redirect_to_the_list(admin):
    response = admin.htmx("post", "/credentials/new", data=credential_form(name="Mailer"))
    assert response.status_code == 200
    assert response.headers["HX-Redirect"] == "/credentials/"
    assert Credential.select().count() == 1


def test_add_form_is_a_fragment_for_htmx_and_a_page_otherwise(admin):
    full = admin.get("/credentials/new")
    assert full.status_code == 200 and not is_fragment(full)
    fragment = admin.htmx("get", "/credentials/new")
    assert is_fragment(fragment)
    assert page(fragment).lstrip().startswith('<form id="credential-form"')
    assert 'autocomplete="new-password"' in page(fragment)


def test_a_new_credential_needs_its_secret(admin):
    response = admin.post("/credentials/new", data=credential_form(secret=""))
    assert response.status_code == 422
    assert 'id="secret-error"' in page(response)
    assert "Enter the password or token." in page(response)
    assert Credential.select().count() == 0


INVALID_FIELDS = [
    ("name", ""),
    ("name", "two\nlines"),
    ("name", "tab\there"),
    ("name", "x" * 101),
    ("username", ""),
    ("username", "mailer@example.com\r\nRCPT TO:<x@evil.example>"),
    ("username", "u" * 255),
    ("secret", "nul\x00inside"),
    ("secret", "line\nbreak"),
    ("description", "bell\x07"),
    ("allowed_hosts", "smtp.example.com\nbad host"),
    ("allowed_hosts", "$(reboot)"),
    ("allowed_hosts", "*.10.0.0.1"),
    ("allowed_hosts", "*.*.example.com"),
    ("allowed_hosts", "smtp.example.com;rm -rf"),
]


@pytest.mark.parametrize("name,value", INVALID_FIELDS)
def test_invalid_fields_are_refused_next_to_the_field_and_nothing_is_saved(admin, name, value):
    data = credential_form(**{name: value})
    full = admin.post("/credentials/new", data=data)
    assert full.status_code == 422 and not is_fragment(full)
    assert f'id="{name}-error"' in page(full)
    assert "Nothing was saved" in page(full)

    fragment = admin.htmx("post", "/credentials/new", data=data)
    assert fragment.status_code == 422 and is_fragment(fragment)
    assert page(fragment).lstrip().startswith('<form id="credential-form"')
    assert f'id="{name}-error"' in page(fragment)

    assert Credential.select().count() == 0
    assert audit_entries().count() == 0


def test_the_wrong_allowed_host_lines_are_named(admin):
    data = credential_form(allowed_hosts="smtp.example.com\nbad host\n\nalso bad")
    response = admin.post("/credentials/new", data=data)
    assert response.status_code == 422
    assert "Line 2, 4 is not a host name" in page(response)


@pytest.mark.parametrize("taken", ["Mailer", "mailer", "MAILER", "  Mailer  "])
def test_names_are_unique_whatever_their_case(admin, taken):
    make_credential(name="Mailer")
    response = admin.post("/credentials/new", data=credential_form(name=taken))
    assert response.status_code == 422
    assert "A credential with this name already exists." in page(response)
    assert Credential.select().count() == 1


def test_renaming_onto_another_credential_is_refused_but_changing_the_own_case_is_not(admin):
    make_credential(name="Mailer")
    other = make_credential(name="Other")
    data = credential_form(name="MAILER", secret="")
    assert admin.post(f"/credentials/{other.id}/edit", data=data).status_code == 422
    assert Credential.get_by_id(other.id).name == "Other"
    data = credential_form(name="OTHER", secret="")
    assert admin.post(f"/credentials/{other.id}/edit", data=data).status_code == 303
    assert Credential.get_by_id(other.id).name == "OTHER"


# --- edit ---------------------------------------------------------------------------------------

def edit_form(credential, **overrides) -> dict:
    """The edit form as the browser would submit it untouched (the secret field comes empty)."""
    data = {"name": credential.name, "username": credential.username, "secret": "",
            "description": credential.description, "allowed_hosts": credential.allowed_hosts}
    data.update(overrides)
    return data


def test_edit_form_shows_the_secret_state_but_never_the_secret(admin):
    credential = make_credential(name="Mailer", secret="Stored-Secret-77")
    for response in (admin.get(f"/credentials/{credential.id}/edit"),
                     admin.htmx("get", f"/credentials/{credential.id}/edit")):
        html = page(response)
        assert response.status_code == 200
        assert "Secret set — enter a new one to change it." in html
        tag = SECRET_INPUT.search(html).group(0)
        assert 'type="password"' in tag and 'autocomplete="new-password"' in tag
        assert "value" not in tag
        assert "Stored-Secret-77" not in html
    assert is_fragment(admin.htmx("get", f"/credentials/{credential.id}/edit"))


def test_security_2_empty_secret_on_edit_keeps_the_stored_one(admin):
    credential = make_credential(name="Mailer", secret="Keep-Me-Secret")
    token = credential.secret_encrypted
    response = admin.post(f"/credentials/{credential.id}/edit",
                             data=edit_form(credential, username="new-login@example.com"))
    assert response.status_code == 303
    credential = Credential.get_by_id(credential.id)
    assert credential.reveal_secret() == "Keep-Me-Secret"
    assert credential.secret_encrypted == token
    assert credential.username == "new-login@example.com"
    entry = audit_entries().get()
    assert entry.action == "update"
    assert entry.changes == {"username": ["mailer@example.com", "new-login@example.com"]}


def test_a_new_secret_replaces_the_stored_one_and_the_audit_says_only_changed(admin):
    credential = make_credential(name="Mailer", secret="Old-Secret-1")
    response = admin.htmx("post", f"/credentials/{credential.id}/edit",
                             data=edit_form(credential, secret="New-Secret-2"))
    assert response.headers["HX-Redirect"] == "/credentials/"
    assert Credential.get_by_id(credential.id).reveal_secret() == "New-Secret-2"
    entry = audit_entries().get()
    assert entry.changes == {"secret_encrypted": "changed"}
    assert "Old-Secret-1" not in entry.changes_json and "New-Secret-2" not in entry.changes_json


def test_saving_without_changes_writes_no_audit_entry(admin):
    credential = make_credential(name="Mailer")
    response = admin.post(f"/credentials/{credential.id}/edit", data=edit_form(credential))
    assert response.status_code == 303
    assert audit_entries().count() == 0
    assert "Nothing changed" in page(admin.get("/credentials/"))


@pytest.mark.parametrize("mask", ["**********", "•••", "••••••••"])
def test_security_3_a_mask_is_stored_exactly_as_typed_and_never_rendered_back(admin, mask):
    credential = make_credential(name="Mailer", secret="Real-Secret-1")
    assert admin.post(f"/credentials/{credential.id}/edit",
                         data=edit_form(credential, secret=mask)).status_code == 303
    assert Credential.get_by_id(credential.id).reveal_secret() == mask
    # The app never puts anything in the field, so a mask can never round-trip unnoticed.
    html = page(admin.get(f"/credentials/{credential.id}/edit"))
    assert "value" not in SECRET_INPUT.search(html).group(0)
    assert mask not in html


def test_an_invalid_edit_does_not_echo_the_typed_secret_and_saves_nothing(admin):
    credential = make_credential(name="Mailer", secret="Old-Secret-1")
    data = edit_form(credential, name="", secret="Typed-But-Refused-9")
    full = admin.post(f"/credentials/{credential.id}/edit", data=data)
    fragment = admin.htmx("post", f"/credentials/{credential.id}/edit", data=data)
    assert not is_fragment(full) and is_fragment(fragment)
    for response in (full, fragment):
        assert response.status_code == 422
        assert 'id="name-error"' in page(response)
        assert "Typed-But-Refused-9" not in page(response)
        assert "value" not in SECRET_INPUT.search(page(response)).group(0)
    assert Credential.get_by_id(credential.id).reveal_secret() == "Old-Secret-1"
    assert audit_entries().count() == 0


def test_narrowing_allowed_hosts_cannot_strand_an_account_using_the_credential(admin):
    credential = make_credential(name="Mailer", allowed_hosts="")
    make_account(name="Billing", host="smtp.example.com", credential=credential)
    make_account(name="Alerts", host="mx.example.org", credential=credential)

    response = admin.post(f"/credentials/{credential.id}/edit",
                             data=edit_form(credential, allowed_hosts="*.example.com"))
    assert response.status_code == 422
    html = page(response)
    assert 'id="allowed_hosts-error"' in html
    assert "Alerts (mx.example.org)" in html and "Billing" not in html.split('id="allowed_hosts-error"')[1][:400]
    assert Credential.get_by_id(credential.id).allowed_hosts == ""

    response = admin.post(f"/credentials/{credential.id}/edit",
                             data=edit_form(credential, allowed_hosts="*.example.com\nmx.example.org"))
    assert response.status_code == 303
    assert Credential.get_by_id(credential.id).host_list == ["*.example.com", "mx.example.org"]


def test_editing_an_unknown_credential_is_404(admin):
    assert admin.get("/credentials/999/edit").status_code == 404
    assert admin.post("/credentials/999/delete").status_code == 404


# --- delete -------------------------------------------------------------------------------------

def test_delete_removes_an_unused_credential_and_audits_it(admin):
    credential = make_credential(name="Mailer")
    response = admin.post(f"/credentials/{credential.id}/delete")
    assert response.status_code == 303
    assert Credential.get_or_none(Credential.id == credential.id) is None
    entry = audit_entries().get()
    assert (entry.action, entry.object_name) == ("delete", "Mailer")
    assert entry.changes["secret_encrypted"] == "changed"
    assert entry.changes["name"] == ["Mailer", None]
    assert "Credential “Mailer” deleted." in page(admin.get("/credentials/"))


def test_htmx_delete_answers_an_empty_body_that_removes_the_row(admin):
    credential = make_credential(name="Mailer")
    html = page(admin.get("/credentials/"))
    assert f'hx-post="/credentials/{credential.id}/delete"' in html
    assert 'hx-confirm="Delete the credential' in html and 'data-confirm="Delete the credential' in html
    response = admin.htmx("post", f"/credentials/{credential.id}/delete")
    assert response.status_code == 200 and page(response) == ""
    assert Credential.select().count() == 0


def test_delete_is_refused_while_an_account_uses_the_credential(admin):
    credential = make_credential(name="Mailer")
    make_account(name="Billing", credential=credential)
    make_account(name="Alerts", credential=credential)

    response = admin.post(f"/credentials/{credential.id}/delete", follow_redirects=True)
    assert "“Mailer” cannot be deleted: it is used by Alerts, Billing." in page(response)

    response = admin.htmx("post", f"/credentials/{credential.id}/delete")
    assert response.status_code == 409 and is_fragment(response)
    assert response.headers["HX-Reswap"] == "none"
    assert "it is used by Alerts, Billing" in page(response)

    assert Credential.get_or_none(Credential.id == credential.id) is not None
    assert audit_entries().count() == 0


def test_a_credential_in_use_offers_no_delete_and_says_which_accounts_hold_it(admin):
    used = make_credential(name="Mailer")
    make_account(name="Billing", credential=used)
    make_account(name="Alerts", credential=used)
    free = make_credential(name="Spare")

    html = page(admin.get("/credentials/"))

    used_row = re.search(rf'<tr id="credential-{used.id}".*?</tr>', html, re.S).group(0)
    assert f"/credentials/{used.id}/delete" not in used_row and "Delete the credential" not in used_row
    assert re.search(rf'<button type="button" class="secondary" disabled aria-describedby="why-delete-{used.id}">'
                     rf'Delete</button>\s*<small id="why-delete-{used.id}" class="why">In use by Alerts, Billing: '
                     r"choose another credential for these accounts before deleting this one.</small>", used_row)
    free_row = re.search(rf'<tr id="credential-{free.id}".*?</tr>', html, re.S).group(0)
    assert f'hx-post="/credentials/{free.id}/delete"' in free_row and "disabled" not in free_row


def test_an_empty_vault_says_so_and_how_to_start(app, admin):
    html = page(admin.get("/credentials/"))
    assert "No credentials yet." in html and '<a href="/credentials/new">Add the first one</a>.' in html
    html = page(make_client(app, "operator").get("/credentials/"))
    assert "No credentials yet." in html and "An administrator adds them." in html


# --- who may do what ----------------------------------------------------------------------------

def write_requests(credential):
    return [
        ("get", "/credentials/new", None),
        ("post", "/credentials/new", credential_form(name="Sneaky")),
        ("get", f"/credentials/{credential.id}/edit", None),
        ("post", f"/credentials/{credential.id}/edit", edit_form(credential, name="Sneaky", secret="x")),
        ("post", f"/credentials/{credential.id}/delete", None),
    ]


@pytest.mark.parametrize("role_client", ["operator", "auditor"])
def test_only_admins_may_change_the_vault(request, role_client):
    client = request.getfixturevalue(role_client)
    credential = make_credential(name="Mailer", secret="Untouched-1")
    for method, url, data in write_requests(credential):
        assert client.open(url, method=method.upper(), data=data).status_code == 403, url
        assert client.htmx(method, url, data=data).status_code == 403, url
    credential = Credential.get_by_id(credential.id)
    assert (credential.name, credential.reveal_secret()) == ("Mailer", "Untouched-1")
    assert Credential.select().count() == 1
    assert audit_entries().count() == 0


def test_anonymous_visitors_are_sent_to_sign_in(client):
    credential = make_credential(name="Mailer")
    for method, url, data in [("get", "/credentials/", None)] + write_requests(credential):
        response = client.open(url, method=method.upper(), data=data)
        assert response.status_code == 302 and "/auth/login" in response.headers["Location"], url
        response = client.htmx(method, url, data=data)
        assert response.status_code == 401 and "/auth/login" in response.headers["HX-Redirect"], url
    assert Credential.get_by_id(credential.id).name == "Mailer"


def test_a_post_without_csrf_token_changes_nothing(admin):
    response = admin.post("/credentials/new", data=credential_form(name="Mailer"), csrf=False)
    assert response.status_code == 400
    assert Credential.select().count() == 0


# --- SECURITY.md 1, 4 and 24 --------------------------------------------------------------------

CREDENTIAL_SECRET = "Vault-Secret-9f3K-ZQ7w"
PROXY_PASSWORD = "Proxy-Pass-4mZ8-JX2v"


def leaks(secret: str, username: str = "mailer@example.com") -> list[str]:
    """Forms a secret could leak in: itself, its base64, an AUTH PLAIN blob, its tail, a mask as long as it."""
    plain = base64.b64encode(f"\0{username}\0{secret}".encode()).decode()
    return [secret, base64.b64encode(secret.encode()).decode(), plain, secret[-4:],
            "*" * len(secret), "•" * len(secret)]


def test_security_1_secrets_appear_nowhere_after_saving(app, admin):
    """SECURITY 1: after saving a credential secret and a proxy password, no page or fragment shows them."""
    assert admin.post("/credentials/new", data=credential_form(
        name="Mailer", username="mailer@example.com", secret=CREDENTIAL_SECRET)).status_code == 303
    assert admin.post("/connectors/new", data={
        "name": "Proxy", "kind": "socks5", "host": "proxy.example.com", "port": "1080", "username": "hop",
        "password": PROXY_PASSWORD, "remote_dns": "yes", "is_default": "yes"}).status_code == 303
    credential = Credential.get(Credential.name == "Mailer")
    connector = Connector.get(Connector.name == "Proxy")
    make_account(name="Billing", credential=credential, use_auth=True, use_connector=True)

    bad_credential = {"name": "", "username": "mailer@example.com", "secret": CREDENTIAL_SECRET,
                      "description": "", "allowed_hosts": ""}
    bad_connector = {"name": "", "kind": "socks5", "host": "proxy.example.com", "port": "1080",
                     "username": "hop", "password": PROXY_PASSWORD, "remote_dns": "yes", "is_default": "yes"}
    responses = {
        "credential list": admin.get("/credentials/"),
        "credential rows": admin.htmx("get", "/credentials/"),
        "credential add form": admin.get("/credentials/new"),
        "credential add fragment": admin.htmx("get", "/credentials/new"),
        "credential edit form": admin.get(f"/credentials/{credential.id}/edit"),
        "credential edit fragment": admin.htmx("get", f"/credentials/{credential.id}/edit"),
        "credential 422 page": admin.post(f"/credentials/{credential.id}/edit", data=bad_credential),
        "credential 422 fragment": admin.htmx("post", f"/credentials/{credential.id}/edit",
                                                 data=bad_credential),
        "credential delete refused": admin.htmx("post", f"/credentials/{credential.id}/delete"),
        "credential delete refused page": admin.post(f"/credentials/{credential.id}/delete",
                                                        follow_redirects=True),
        "connector list": admin.get("/connectors/"),
        "connector rows": admin.htmx("get", "/connectors/"),
        "connector add form": admin.get("/connectors/new"),
        "connector edit form": admin.get(f"/connectors/{connector.id}/edit"),
        "connector edit fragment": admin.htmx("get", f"/connectors/{connector.id}/edit"),
        "connector 422 page": admin.post(f"/connectors/{connector.id}/edit", data=bad_connector),
        "connector 422 fragment": admin.htmx("post", f"/connectors/{connector.id}/edit", data=bad_connector),
        "connector make default": admin.htmx("post", f"/connectors/{connector.id}/make-default"),
        "connector unset refused": admin.htmx("post", f"/connectors/{connector.id}/unset-default"),
        "connector delete refused page": admin.post(f"/connectors/{connector.id}/delete",
                                                       follow_redirects=True),
        "accounts report": admin.get("/accounts/"),
        "audit log": admin.get("/audit/"),
    }
    if "audit.export_csv" in app.view_functions:
        responses["audit csv"] = admin.get("/audit/export.csv")
    assert responses["credential 422 page"].status_code == 422
    assert responses["connector 422 fragment"].status_code == 422
    assert responses["audit log"].status_code == 200

    needles = leaks(CREDENTIAL_SECRET) + leaks(PROXY_PASSWORD, "hop")
    for what, response in responses.items():
        body = page(response)
        for needle in needles:
            assert needle not in body, f"{needle!r} shown in the {what}"
        for tag in re.findall(r'<input[^>]*type="password"[^>]*>', body):
            assert "value" not in tag, f"a password input of the {what} carries a value"
    for entry in AuditEntry.select():
        for needle in needles:
            assert needle not in entry.changes_json


def database_bytes(app) -> bytes:
    """The SQLite file as bytes, with the WAL folded in first (and read too, in case it is not empty); on PostgreSQL,
    every row of every table as text, as pg_dump would write it."""
    database.connect(reuse_if_open=True)
    if app.config.get("DATABASE_URL"):
        return "\n".join(row for table in database.get_tables()
                         for row, in database.execute_sql(f'SELECT "t"::text FROM "{table}" AS "t"')).encode()
    database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    database.close()
    path = app.config["DATABASE"]
    data = Path(path).read_bytes()
    wal = Path(path + "-wal")
    return data + (wal.read_bytes() if wal.exists() else b"")


def encodings(secret: str) -> list[bytes]:
    return [secret.encode("utf-8"), secret.encode("utf-16-le"), secret.encode("utf-16-be"),
            base64.b64encode(secret.encode())]


def test_security_4_the_secret_is_not_in_the_database_file(app, admin):
    """SECURITY 4: encrypted at rest, whichever way the file is searched."""
    assert admin.post("/credentials/new", data=credential_form(secret=CREDENTIAL_SECRET)).status_code == 303
    credential = Credential.get()
    assert admin.post(f"/credentials/{credential.id}/edit",
                         data=edit_form(credential, secret=CREDENTIAL_SECRET + "-2")).status_code == 303
    data = database_bytes(app)
    assert b"credential" in data  # the search does read the real file
    for secret in (CREDENTIAL_SECRET, CREDENTIAL_SECRET + "-2"):
        for needle in encodings(secret):
            assert needle not in data
    assert Credential.get().reveal_secret() == CREDENTIAL_SECRET + "-2"


XSS = ['<script>alert(1)</script>', '"><img src=x onerror=alert(1)>']


@pytest.mark.parametrize("payload", XSS)
def test_security_24_markup_in_stored_fields_is_escaped_everywhere(admin, payload):
    """SECURITY 24: name, username and description are text, wherever they are shown."""
    data = credential_form(name=payload, username=payload, description=payload)
    assert admin.post("/credentials/new", data=data).status_code == 303
    credential = Credential.get()
    make_account(name=f"acct {payload}", credential=credential)
    pages = [
        admin.get("/credentials/"),
        admin.htmx("get", "/credentials/"),
        admin.get(f"/credentials/{credential.id}/edit"),
        admin.htmx("post", f"/credentials/{credential.id}/edit", data={**data, "name": ""}),
        admin.post(f"/credentials/{credential.id}/delete", follow_redirects=True),
        admin.htmx("post", f"/credentials/{credential.id}/delete"),
        admin.get("/accounts/"),
        admin.get("/audit/"),
    ]
    for response in pages:
        assert payload not in page(response)
    assert "&lt;" in page(pages[0]) and "&lt;" in page(pages[4])
