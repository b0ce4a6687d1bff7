"""Credential types on the vault screen: a login and password, or an OAuth 2.0 grant (client credentials, refresh
token, service-account JWT), each with its own fields, rules and write-only secrets."""
import io
import json
import re

import pytest

from tests.support.apps import running_app
from tests.support.factories import credential_form, make_account, make_client
from tests.support.oauth import ec_private_key_pem, oauth_form, rsa_private_key_pem, service_account_json
from webapp.models import AuditEntry, Credential

OAUTH_KINDS = ["oauth_client", "oauth_refresh", "oauth_jwt"]
# The form's fields of each type, as the page marks them (data-show-when).
SHOWN = {
    "password": {"username", "secret"},
    "oauth_client": {"mailbox", "tenant_id", "token_url", "client_id", "client_secret", "scope"},
    "oauth_refresh": {"mailbox", "authorization_url", "token_url", "client_id", "client_secret", "scope",
                      "refresh_token"},
    "oauth_jwt": {"mailbox", "service_account_file", "service_account_key", "scope"},
}
SECRETS = ["Client-Secret-0451", "1//Refresh-Token-8812"]


def page(response) -> str:
    return response.get_data(as_text=True)


def visible_fields(html: str) -> set[str]:
    """The ids of the fields a page shows (those of another type carry `hidden`)."""
    return {match.group(1) for match in re.finditer(r'<div class="field" id="(\w+)-field"([^>]*)>', html)
            if "hidden" not in match.group(2)}


def saved(name: str) -> Credential:
    return Credential.get(Credential.name == name)


def edit_form(credential: Credential, **overrides) -> dict:
    """The edit form as the page fills it in: stored settings shown, secrets left empty."""
    data = {"name": credential.name, "kind": credential.kind, "username": credential.username,
            "mailbox": credential.username, "token_url": credential.token_url,
            "authorization_url": credential.authorization_url, "client_id": credential.client_id,
            "scope": credential.scope, "description": credential.description,
            "allowed_hosts": credential.allowed_hosts}
    data.update(overrides)
    return data


def create(admin, kind, **overrides) -> Credential:
    data = oauth_form(kind, **overrides) if kind != "password" else credential_form(**overrides)
    response = admin.post("/credentials/new", data=data)
    assert response.status_code == 303, page(response)
    return saved(data["name"])


# --- The form ------------------------------------------------------------------------------------------------


def test_the_add_form_offers_the_four_types_and_shows_the_password_fields_first(admin):
    html = page(admin.get("/credentials/new"))
    assert '<label for="kind">Credential type</label>' in html
    for value, label in [("password", "Username and password"), ("oauth_client", "OAuth 2.0 — client credentials"),
                         ("oauth_refresh", "OAuth 2.0 — refresh token"),
                         ("oauth_jwt", "OAuth 2.0 — service account (JWT)")]:
        assert re.search(rf'<option (selected )?value="{value}">{re.escape(label)}</option>', html)
    assert visible_fields(html) == {"name", "kind", "description", "allowed_hosts"} | SHOWN["password"]
    for label in ("User (mailbox)", "Token URL", "Authorization URL", "Client ID", "Client secret", "Scope",
                  "Refresh token", "Service account JSON key"):
        assert f">{label}</label>" in html
    # Without JavaScript a button redraws the form for the chosen type; the key file needs a multipart form.
    assert re.search(r'<noscript>\s*<p><button type="submit" name="show_fields"', html)
    assert 'enctype="multipart/form-data"' in html
    assert 'data-show-when="kind=oauth_client|oauth_refresh|oauth_jwt"' in html


@pytest.mark.parametrize("kind", OAUTH_KINDS)
def test_without_javascript_the_form_is_redrawn_with_the_chosen_types_fields(admin, kind):
    data = {"name": "Mailer", "kind": kind, "mailbox": "notify@example.com", "show_fields": "y"}
    for response in (admin.post("/credentials/new", data=data), admin.htmx("post", "/credentials/new", data=data)):
        assert response.status_code == 200
        html = page(response)
        assert visible_fields(html) == {"name", "kind", "description", "allowed_hosts"} | SHOWN[kind]
        assert 'value="notify@example.com"' in html and "field-error" not in html
    assert Credential.select().count() == 0


# --- Adding each type ----------------------------------------------------------------------------------------


def test_a_client_credentials_credential_keeps_its_settings_and_encrypts_its_secret(admin):
    credential = create(admin, "oauth_client", name="M365", allowed_hosts="smtp.office365.com")
    assert (credential.kind, credential.username, credential.client_id, credential.scope) == (
        "oauth_client", "notify@example.com", "8f0c6a0e-1111-2222-3333-444455556666",
        "https://outlook.office365.com/.default")
    assert credential.token_url == "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    assert credential.reveal_secret("client_secret_encrypted") == "Client-Secret-0451"
    assert "Client-Secret-0451" not in credential.client_secret_encrypted
    assert credential.secret_encrypted is None and credential.refresh_token_encrypted is None
    assert credential.authorization_url == "" and credential.host_list == ["smtp.office365.com"]
    entry = AuditEntry.get(AuditEntry.object_type == "credential")
    assert entry.changes["client_secret_encrypted"] == "changed"
    assert entry.changes["kind"] == [None, "oauth_client"]
    assert "Client-Secret-0451" not in entry.changes_json


def test_a_refresh_token_credential_keeps_both_of_its_secrets(admin):
    credential = create(admin, "oauth_refresh", name="Gmail")
    assert credential.authorization_url == "https://accounts.google.com/o/oauth2/v2/auth"
    assert credential.scope == "https://mail.google.com/"
    assert credential.reveal_secret("client_secret_encrypted") == "Client-Secret-0451"
    assert credential.reveal_secret("refresh_token_encrypted") == "1//Refresh-Token-8812"
    entry = AuditEntry.get(AuditEntry.object_type == "credential")
    assert entry.changes["refresh_token_encrypted"] == entry.changes["client_secret_encrypted"] == "changed"


def test_a_refresh_token_credential_may_wait_for_its_token_and_for_a_public_client_has_no_secret(admin):
    credential = create(admin, "oauth_refresh", name="Later", refresh_token="", client_secret="")
    assert credential.refresh_token_encrypted is None and credential.client_secret_encrypted is None
    row = page(admin.get("/credentials/")).split(f'id="credential-{credential.id}"')[1].split("</tr>")[0]
    assert "OAuth 2.0 — refresh token" in row and "no refresh token" in row


def test_a_service_account_key_is_stored_encrypted_and_only_its_email_and_key_id_are_shown(admin):
    credential = create(admin, "oauth_jwt", name="Workspace", mailbox="ops@example.com")
    stored = json.loads(credential.reveal_secret("service_account_key_encrypted"))
    assert stored["private_key"] == rsa_private_key_pem() and stored["project_id"] == "smtpdesk-test"
    assert credential.service_account_email == "mailer@smtpdesk-test.iam.gserviceaccount.com"
    assert credential.service_account_key_id == "3f1b2c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"
    assert credential.token_url == "https://oauth2.googleapis.com/token"
    assert (credential.username, credential.client_id) == ("ops@example.com", "")
    html = page(admin.get(f"/credentials/{credential.id}/edit"))
    assert ("Key stored: mailer@smtpdesk-test.iam.gserviceaccount.com, key ID "
            "3f1b2c4d5e6f708192a3b4c5d6e7f8091a2b3c4d. Upload a new key file to replace it.") in html
    assert "PRIVATE KEY" not in html and "smtpdesk-test\"" not in html


def test_a_service_account_key_can_be_uploaded_as_a_file(admin):
    data = oauth_form("oauth_jwt", name="Uploaded", service_account_key="")
    data["service_account_file"] = (io.BytesIO(b"\xef\xbb\xbf" + service_account_json().encode()), "key.json")
    response = admin.post("/credentials/new", data=data, content_type="multipart/form-data")
    assert response.status_code == 303, page(response)
    assert saved("Uploaded").service_account_email == "mailer@smtpdesk-test.iam.gserviceaccount.com"


def test_a_key_both_uploaded_and_pasted_is_refused(admin):
    data = oauth_form("oauth_jwt")
    data["service_account_file"] = (io.BytesIO(service_account_json().encode()), "key.json")
    response = admin.post("/credentials/new", data=data, content_type="multipart/form-data")
    assert response.status_code == 422
    assert "Upload the key file or paste it, not both." in page(response)


# --- Validation ------------------------------------------------------------------------------------------------

REQUIRED = [
    ("oauth_client", "mailbox"), ("oauth_client", "token_url"), ("oauth_client", "client_id"),
    ("oauth_client", "client_secret"), ("oauth_client", "scope"),
    ("oauth_refresh", "mailbox"), ("oauth_refresh", "authorization_url"), ("oauth_refresh", "token_url"),
    ("oauth_refresh", "client_id"), ("oauth_refresh", "scope"),
    ("oauth_jwt", "mailbox"), ("oauth_jwt", "scope"),
]


@pytest.mark.parametrize("kind,name", REQUIRED)
def test_each_type_requires_its_own_fields(admin, kind, name):
    for response in (admin.post("/credentials/new", data=oauth_form(kind, **{name: ""})),
                     admin.htmx("post", "/credentials/new", data=oauth_form(kind, **{name: ""}))):
        assert response.status_code == 422
        assert re.search(rf'<small class="field-error" id="{name}-error">', page(response))
    assert Credential.select().count() == 0


def test_a_service_account_credential_requires_its_key(admin):
    response = admin.post("/credentials/new", data=oauth_form("oauth_jwt", service_account_key=""))
    assert response.status_code == 422
    assert 'id="service_account_file-error">Upload the service account&#39;s JSON key file.' in page(response)


def test_the_fields_of_other_types_are_neither_checked_nor_kept(admin):
    credential = create(admin, "oauth_client", name="Only mine", username="bad\nlogin", secret="Password-Not-Kept",
                        authorization_url="not a url", refresh_token="Not-Kept-Either", service_account_key="{")
    assert credential.secret_encrypted is None and credential.refresh_token_encrypted is None
    assert credential.authorization_url == "" and credential.service_account_key_encrypted is None


@pytest.mark.parametrize("field,value,message", [
    ("mailbox", "not an address", "address"),
    ("mailbox", "Ops <ops@example.com>", "address"),
    ("mailbox", "ops@example.com\r\nRCPT TO:<x@evil.example>", "control characters"),
    ("client_id", "id\nbreak", "control characters"),
    ("client_secret", "nul\x00inside", "control characters"),
    ("scope", 'https://mail.google.com/ "quoted"', "A scope is one or more words"),
    ("scope", "https://outlook.office365.com/.default\u2028openid", "control characters"),
])
def test_bad_oauth_values_are_refused_next_to_their_field(admin, field, value, message):
    response = admin.post("/credentials/new", data=oauth_form("oauth_client", **{field: value}))
    assert response.status_code == 422
    error = re.search(rf'<small class="field-error" id="{field}-error">([^<]*)</small>', page(response))
    assert error and message in error.group(1)


def test_scope_words_are_kept_with_single_spaces(admin):
    credential = create(admin, "oauth_refresh", scope="  https://mail.google.com/   openid  ")
    assert credential.scope == "https://mail.google.com/ openid"


HTTPS_REFUSED = [
    "http://login.example.com/token",
    "login.example.com/token",
    "ftp://login.example.com/token",
    "https://user:pass@login.example.com/token",
    "https://login.example.com/token#part",
    "https://login.example.com:99999/token",
    "https://bad host/token",
    "https://login.example.com/to\nken",
    "http://127.0.0.1:8080/token",
    "http://localhost/token",
    "http://[::1]/token",
    "https://" + "a" * 2050 + ".example.com/",
]


@pytest.mark.parametrize("url", HTTPS_REFUSED)
@pytest.mark.parametrize("field", ["token_url", "authorization_url"])
def test_endpoint_urls_must_be_https(admin, field, url):
    response = admin.post("/credentials/new", data=oauth_form("oauth_refresh", **{field: url}))
    assert response.status_code == 422
    assert f'id="{field}-error"' in page(response)


def test_the_loopback_setting_allows_plain_http_to_this_machine_only(tmp_path, database_config):
    with running_app(tmp_path, OAUTH_ALLOW_LOOPBACK=True, **database_config) as app:
        admin = make_client(app)
        for url in ("http://127.0.0.1:8080/token", "http://127.0.0.2/token", "http://[::1]:9000/token",
                    "http://localhost:9000/token", "http://2130706433/token"):
            data = oauth_form("oauth_refresh", token_url=url, authorization_url=url.replace("token", "authorize"))
            assert admin.post("/credentials/new", data=data).status_code == 303, url
        for url in ("http://10.0.0.1/token", "http://login.example.com/token", "http://localhost.example.com/"):
            response = admin.post("/credentials/new", data=oauth_form("oauth_client", token_url=url))
            assert response.status_code == 422 and 'id="token_url-error"' in page(response), url
        key = service_account_json(token_uri="http://127.0.0.1:8443/token")
        assert admin.post("/credentials/new", data=oauth_form("oauth_jwt", service_account_key=key)).status_code == 303


BAD_KEYS = [
    ("not json", "does not read as JSON"),
    ("[1, 2]", "does not read as JSON"),
    ("[" * 20000, "too long"),
    ("[" * 10000, "does not read as JSON"),
    (service_account_json(type=None), "lacks type"),
    (service_account_json(type="authorized_user"), "not “service_account”"),
    (service_account_json(client_email=None, token_uri=None), "lacks client_email, token_uri"),
    (service_account_json(client_email="not-an-address"), "client_email is not an e-mail address"),
    (service_account_json(private_key="-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
     "not an unencrypted RSA private key"),
    (service_account_json(private_key=ec_private_key_pem()), "not an unencrypted RSA private key"),
    (service_account_json(private_key_id=["x"]), "private_key_id"),
    (service_account_json(token_uri="http://oauth2.googleapis.com/token"), "token_uri is refused: Use an https"),
    (service_account_json(project_id="\ud800"), "does not read as JSON"),
]


@pytest.mark.parametrize("text,message", BAD_KEYS, ids=range(len(BAD_KEYS)))
def test_a_json_key_must_be_a_service_accounts_key(admin, text, message):
    response = admin.post("/credentials/new", data=oauth_form("oauth_jwt", service_account_key=text))
    assert response.status_code == 422
    error = re.search(r'<small class="field-error" id="service_account_key-error">([^<]*)</small>', page(response))
    assert error and message in error.group(1).replace("&#39;", "'")
    assert "PRIVATE KEY" not in page(response)


# --- The Microsoft 365 helper --------------------------------------------------------------------------------


def test_the_microsoft_365_helper_fills_the_token_url_and_scope_without_saving(admin):
    data = oauth_form("oauth_client", token_url="", scope="", tenant_id="contoso.onmicrosoft.com",
                      fill_microsoft_365="y")
    for response in (admin.post("/credentials/new", data=data), admin.htmx("post", "/credentials/new", data=data)):
        assert response.status_code == 200
        html = page(response)
        assert ('value="https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"' in html)
        assert 'value="https://outlook.office365.com/.default"' in html
        assert "Client-Secret-0451" not in html
    assert Credential.select().count() == 0
    # With JavaScript, app.js fills them in from these attributes and the tenant input's pattern.
    assert 'data-token-url="https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"' in html
    assert 'pattern="[A-Za-z0-9][A-Za-z0-9.\\-]{0,252}"' in html


@pytest.mark.parametrize("tenant", ["", "../common", "contoso.com/evil", "tenant id"])
def test_the_microsoft_365_helper_asks_for_a_tenant_it_can_use(admin, tenant):
    data = oauth_form("oauth_client", tenant_id=tenant, fill_microsoft_365="y")
    response = admin.post("/credentials/new", data=data)
    assert response.status_code == 422
    assert 'id="tenant_id-error">Enter the tenant ID' in page(response)
    assert Credential.select().count() == 0


# --- Editing ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", OAUTH_KINDS)
def test_editing_without_retyping_the_secrets_keeps_them(admin, kind):
    credential = create(admin, kind)
    tokens = {column: getattr(credential, column) for column in (
        "client_secret_encrypted", "refresh_token_encrypted", "service_account_key_encrypted")}
    response = admin.post(f"/credentials/{credential.id}/edit", data=edit_form(credential, scope="a b"))
    assert response.status_code == 303, page(response)
    after = Credential.get_by_id(credential.id)
    assert {column: getattr(after, column) for column in tokens} == tokens
    assert after.token_url == credential.token_url and after.service_account_email == credential.service_account_email
    entry = AuditEntry.select().where(AuditEntry.action == "update").get()
    assert entry.changes == {"scope": [credential.scope, "a b"]}


def test_new_secrets_replace_the_stored_ones_and_the_audit_says_only_changed(admin):
    credential = create(admin, "oauth_refresh")
    response = admin.htmx("post", f"/credentials/{credential.id}/edit", data=edit_form(
        credential, client_secret="Client-Secret-2", refresh_token="Refresh-Token-2"))
    assert response.headers["HX-Redirect"] == "/credentials/"
    after = Credential.get_by_id(credential.id)
    assert after.reveal_secret("client_secret_encrypted") == "Client-Secret-2"
    assert after.reveal_secret("refresh_token_encrypted") == "Refresh-Token-2"
    entry = AuditEntry.select().where(AuditEntry.action == "update").get()
    assert entry.changes == {"client_secret_encrypted": "changed", "refresh_token_encrypted": "changed"}
    audit = page(admin.get("/audit/"))
    assert "Client secret: changed" in audit and "Refresh token: changed" in audit
    for secret in ("Client-Secret-2", "Refresh-Token-2", *SECRETS):
        assert secret not in audit and secret not in entry.changes_json


def test_the_edit_form_says_which_secrets_are_set_and_shows_none(admin):
    credential = create(admin, "oauth_refresh")
    html = page(admin.get(f"/credentials/{credential.id}/edit"))
    assert visible_fields(html) == {"name", "kind", "description", "allowed_hosts"} | SHOWN["oauth_refresh"]
    assert "Client secret set — enter a new one to change it." in html
    assert "Refresh token set — paste a new one to replace it." in html
    for tag in re.findall(r'<input[^>]*type="password"[^>]*>', html):
        assert "value" not in tag


def test_changing_the_type_drops_the_secrets_of_the_old_one(admin):
    credential = create(admin, "oauth_refresh")
    response = admin.post(f"/credentials/{credential.id}/edit", data=edit_form(credential, kind="password"))
    assert response.status_code == 422
    assert 'id="secret-error">Enter the password or token.' in page(response)
    response = admin.post(f"/credentials/{credential.id}/edit", data=edit_form(
        credential, kind="password", username="login@example.com", secret="New-Password-1"))
    assert response.status_code == 303
    after = Credential.get_by_id(credential.id)
    assert (after.kind, after.username, after.reveal_secret()) == ("password", "login@example.com", "New-Password-1")
    assert after.client_secret_encrypted is None and after.refresh_token_encrypted is None
    assert (after.token_url, after.authorization_url, after.client_id, after.scope) == ("", "", "", "")
    entry = AuditEntry.select().where(AuditEntry.action == "update").get()
    assert entry.changes["kind"] == ["oauth_refresh", "password"]
    assert entry.changes["refresh_token_encrypted"] == "changed"


def test_a_password_credential_becomes_a_client_credentials_one_only_with_a_client_secret(admin):
    credential = create(admin, "password", name="Moving", secret="Old-Password-1")
    data = oauth_form("oauth_client", name="Moving", client_secret="")
    response = admin.post(f"/credentials/{credential.id}/edit", data=data)
    assert response.status_code == 422 and 'id="client_secret-error">Enter the client secret.' in page(response)
    data["client_secret"] = "Client-Secret-9"
    assert admin.post(f"/credentials/{credential.id}/edit", data=data).status_code == 303
    after = Credential.get_by_id(credential.id)
    assert after.secret_encrypted is None and after.reveal_secret("client_secret_encrypted") == "Client-Secret-9"


def test_binding_to_hosts_applies_to_every_type(admin):
    credential = create(admin, "oauth_client", allowed_hosts="smtp.office365.com")
    make_account(name="Elsewhere", host="smtp.example.com", credential=credential, use_auth=True)
    response = admin.post(f"/credentials/{credential.id}/edit", data=edit_form(credential))
    assert response.status_code == 422
    assert "Elsewhere (smtp.example.com)" in page(response)


# --- The list --------------------------------------------------------------------------------------------------


def test_the_list_shows_each_credentials_type(admin):
    ids = {kind: create(admin, kind).id for kind in ["password", *OAUTH_KINDS]}
    html = page(admin.get("/credentials/"))
    assert "<th scope=\"col\">Type</th>" in html
    for kind, label in [("password", "Username and password"), ("oauth_client", "OAuth 2.0 — client credentials"),
                        ("oauth_refresh", "OAuth 2.0 — refresh token"),
                        ("oauth_jwt", "OAuth 2.0 — service account (JWT)")]:
        row = html.split(f'id="credential-{ids[kind]}"')[1].split("</tr>")[0]
        assert label in row and "secret set" in row


def test_security_24_account_names_in_the_stranded_hosts_error_are_escaped(admin):
    """The error naming the accounts a narrowed host list would strand shows their names as text."""
    credential = create(admin, "oauth_client")
    make_account(name='<script>alert(1)</script>', host="mx.example.org", credential=credential)
    response = admin.post(f"/credentials/{credential.id}/edit", data=edit_form(credential,
                                                                               allowed_hosts="smtp.example.com"))
    assert response.status_code == 422
    assert "<script>alert(1)" not in page(response) and "&lt;script&gt;alert(1)" in page(response)


def test_security_24_values_from_the_key_file_are_shown_as_text(admin):
    key = service_account_json(private_key_id='"><img src=x onerror=alert(1)>')
    credential = create(admin, "oauth_jwt", service_account_key=key)
    html = page(admin.get(f"/credentials/{credential.id}/edit"))
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_a_malformed_tenant_id_is_refused_on_saving_too(admin):
    response = admin.post("/credentials/new", data=oauth_form("oauth_client", tenant_id="contoso\u2028com"))
    assert response.status_code == 422 and 'id="tenant_id-error">Enter the tenant ID' in page(response)
    assert create(admin, "oauth_client", tenant_id="").kind == "oauth_client"
