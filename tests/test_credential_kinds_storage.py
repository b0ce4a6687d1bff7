"""OAuth 2.0 credentials at rest and on their way out: secrets encrypted and shown nowhere, the migration from release
6, key rotation, and the plain description the transport gets (webapp.mail.oauth.OAuthGrant)."""
import base64
import json
import re

import pytest
from cryptography.fernet import Fernet

from tests.support.apps import elsewhere
from tests.support.factories import make_account
from tests.support.oauth import oauth_form, rsa_private_key_pem, service_account_json
from tests.test_credentials import database_bytes, encodings, leaks
from webapp import create_app, db
from webapp.accounts.testing import typed_credential
from webapp.db import database
from webapp.mail import oauth
from webapp.mail.errors import MailError, Step
from webapp.models import Credential
from webapp.vault import SECRET_COLUMNS, vault

CLIENT_SECRET = "Cs-7QxZ-k2Vw-9fJp"
REFRESH_TOKEN = "1//Rt-4Hn8-Lq3T-w6Yd"
OAUTH_COLUMNS = ("client_secret_encrypted", "refresh_token_encrypted", "service_account_key_encrypted")


def page(response) -> str:
    return response.get_data(as_text=True)


def private_key_lines() -> list[str]:
    """The base64 lines of the test key's PEM body: any of them on a page would be part of the private key."""
    return [line for line in rsa_private_key_pem().splitlines() if line and not line.startswith("-----")]


def add_each_type(admin) -> dict[str, Credential]:
    forms = {"oauth_client": oauth_form("oauth_client", name="M365", client_secret=CLIENT_SECRET),
             "oauth_refresh": oauth_form("oauth_refresh", name="Gmail", client_secret=CLIENT_SECRET,
                                         refresh_token=REFRESH_TOKEN),
             "oauth_jwt": oauth_form("oauth_jwt", name="Workspace")}
    for data in forms.values():
        assert admin.post("/credentials/new", data=data).status_code == 303
    return {kind: Credential.get(Credential.name == data["name"]) for kind, data in forms.items()}


def test_security_1_no_page_shows_an_oauth_secret_or_the_private_key(app, admin):
    credentials = add_each_type(admin)
    make_account(name="Billing", credential=credentials["oauth_client"], use_auth=True)
    responses = {"list": admin.get("/credentials/"), "rows": admin.htmx("get", "/credentials/"),
                 "audit": admin.get("/audit/"), "accounts": admin.get("/accounts/")}
    for kind, credential in credentials.items():
        url = f"/credentials/{credential.id}/edit"
        # Refused edits with every secret typed again: nothing typed comes back either.
        typed = oauth_form(kind, name="", client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN)
        responses.update({f"{kind} edit": admin.get(url), f"{kind} fragment": admin.htmx("get", url),
                          f"{kind} 422": admin.post(url, data=typed), f"{kind} 422 fragment": admin.htmx(
                              "post", url, data=typed)})
    if "audit.export_csv" in app.view_functions:
        responses["audit csv"] = admin.get("/audit/export.csv")
    assert responses["oauth_jwt 422"].status_code == 422
    needles = leaks(CLIENT_SECRET) + leaks(REFRESH_TOKEN) + private_key_lines() + ["PRIVATE KEY"]
    tokens = [getattr(c, column) for c in credentials.values() for column in OAUTH_COLUMNS if getattr(c, column)]
    for what, response in responses.items():
        for needle in needles + tokens:
            assert needle not in page(response), f"{needle!r} shown in the {what}"
        for textarea in re.findall(r'<textarea[^>]*id="service_account_key"[^>]*>(.*?)</textarea>', page(response),
                                   re.S):
            assert not textarea.strip(), f"the pasted key comes back in the {what}"


def test_security_4_oauth_secrets_are_not_in_the_database_file(app, admin):
    add_each_type(admin)
    data = database_bytes(app)
    assert b"oauth_refresh" in data  # the search does read the real file
    for secret in (CLIENT_SECRET, REFRESH_TOKEN, *private_key_lines()[:3]):
        for needle in encodings(secret):
            assert needle not in data
    assert b"PRIVATE KEY" not in data


def test_m0007_makes_every_stored_credential_a_password_one_that_still_logs_in(tmp_path, monkeypatch,
                                                                              empty_database_config):
    every = db.migrations()
    key = Fernet.generate_key()
    monkeypatch.setenv("SMTPDESK_INSTANCE_PATH", str(tmp_path))
    app = create_app({"TESTING": True, "SECRET_KEY": "test-secret-key", "VAULT_KEYS": key.decode(),
                      "DATABASE": str(tmp_path / "release6.db"), **empty_database_config})
    monkeypatch.setattr(db, "migrations", lambda: every[:6])
    assert db.upgrade()[-1] == "m0006_user_session_generation"
    token = Fernet(key).encrypt(b"Release-6-Password").decode()
    with database.connection_context():
        db.execute(
            'INSERT INTO "credential" ("id", "name", "username", "secret_encrypted", "description", "allowed_hosts", '
            "\"created_at\", \"updated_at\") VALUES (1, 'Relay', 'relay@example.com', ?, '', 'smtp.example.com', "
            "'2025-01-01', '2025-01-01')", (token,))
        db.execute(
            'INSERT INTO "smtp_account" ("name", "enabled", "sender", "reply_to", "return_path", '
            '"confirmation_email", "is_default", "read_confirmation", "force_settings", "footer_enabled", "host", '
            '"secure", "use_auth", "credential_id", "ignore_cert_errors", "use_connector", "created_at", '
            "\"updated_at\") VALUES ('Main', TRUE, 'ops@example.com', 'ops@example.com', 'ops@example.com', "
            "'ops@example.com', TRUE, FALSE, FALSE, FALSE, 'smtp.example.com', FALSE, TRUE, 1, FALSE, FALSE, "
            "'2025-01-01', '2025-01-01')")
    monkeypatch.setattr(db, "migrations", lambda: every)
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0 and "applied m0007_credential_kinds" in result.output
    with database.connection_context():
        credential = Credential.get_by_id(1)
        assert (credential.kind, credential.secret_encrypted, credential.token_url, credential.scope) == (
            "password", token, "", "")
        assert all(getattr(credential, column) is None for column in OAUTH_COLUMNS)
        settings = credential.accounts.get().smtp_settings(timeout=5, deadline=10)
        assert (settings.username, settings.password) == ("relay@example.com", "Release-6-Password")


def test_key_rotation_reencrypts_the_oauth_secrets_too(admin, runner):
    credentials = add_each_type(admin)
    assert {("credential", column) for column in OAUTH_COLUMNS} <= set(SECRET_COLUMNS)
    new_key = Fernet.generate_key().decode()
    vault.init([new_key, *vault.keys])  # what `vault rotate-key` does to a key file, for SMTPDESK_VAULT_KEYS
    result = runner.invoke(args=["vault", "reencrypt", "--retire-old"])
    assert result.exit_code == 0, result.output
    assert "Re-encrypted 4 secrets under the newest key." in result.output  # 1 + 2 + 1
    for kind, credential in credentials.items():
        after = Credential.get_by_id(credential.id)
        for column in OAUTH_COLUMNS:
            stored = getattr(after, column)
            if getattr(credential, column) is None:
                assert stored is None
            else:
                assert stored != getattr(credential, column)
                assert Fernet(new_key).decrypt(stored.encode()).decode() == after.reveal_secret(column)
    assert credentials["oauth_refresh"].reveal_secret("refresh_token_encrypted") == REFRESH_TOKEN


def test_a_grant_describes_each_type_without_flask(admin):
    credentials = add_each_type(admin)
    client = credentials["oauth_client"].oauth_grant()
    assert client == oauth.OAuthGrant(
        kind="oauth_client", token_url="https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
        scope="https://outlook.office365.com/.default", mailbox="notify@example.com",
        client_id="8f0c6a0e-1111-2222-3333-444455556666", client_secret=CLIENT_SECRET,
        cache_key=f"credential:{credentials['oauth_client'].id}")
    refresh = credentials["oauth_refresh"].oauth_grant()
    assert (refresh.kind, refresh.grant_type, refresh.refresh_token, refresh.client_secret) == (
        "oauth_refresh", "refresh_token", REFRESH_TOKEN, CLIENT_SECRET)
    jwt = credentials["oauth_jwt"].oauth_grant()
    assert (jwt.kind, jwt.mailbox, jwt.token_url, jwt.client_secret, jwt.client_id) == (
        "oauth_jwt", "notify@example.com", "https://oauth2.googleapis.com/token", None, None)
    assert jwt.service_account == oauth.ServiceAccountKey(
        client_email="mailer@smtpdesk-test.iam.gserviceaccount.com",
        private_key_id="3f1b2c4d5e6f708192a3b4c5d6e7f8091a2b3c4d", token_uri="https://oauth2.googleapis.com/token",
        private_key=rsa_private_key_pem())
    # Frozen, so it can key a token cache; and no secret in its repr, so none in a log line that prints it.
    assert len({client, refresh, jwt, credentials["oauth_client"].oauth_grant()}) == 3
    for grant in (client, refresh, jwt):
        for needle in (CLIENT_SECRET, REFRESH_TOKEN, "PRIVATE KEY"):
            assert needle not in repr(grant)
    with pytest.raises(ValueError):
        Credential(name="Password", kind="password", username="u").oauth_grant()


def test_an_oauth_credential_logs_in_with_its_grant_after_its_host_binding(admin):
    credential = add_each_type(admin)["oauth_client"]
    Credential.update(allowed_hosts="smtp.office365.com").where(Credential.id == credential.id).execute()
    credential = Credential.get_by_id(credential.id)
    elsewhere = make_account(host="smtp.example.com", use_auth=True, credential=credential)
    with pytest.raises(MailError, match="may not be sent to smtp.example.com") as refusal:
        elsewhere.smtp_settings(timeout=5, deadline=10)
    assert refusal.value.step == Step.POLICY
    office = make_account(host="smtp.office365.com", use_auth=True, credential=credential)
    settings = office.smtp_settings(timeout=5, deadline=10, oauth_allow_loopback=True)
    assert (settings.oauth, settings.oauth_allow_loopback) == (credential.oauth_grant(), True)
    assert (settings.username, settings.password) == ("notify@example.com", None)
    # A secret typed under "Test these settings" is the client's secret, for that test only.
    typed = office.smtp_settings(timeout=5, deadline=10, credential=typed_credential(credential, "Typed-Secret-1"))
    assert (typed.oauth.client_secret, typed.oauth.cache_key, typed.oauth.client_id) == (
        "Typed-Secret-1", "", credential.client_id)
    assert not typed.oauth_allow_loopback


# --- webapp.mail.oauth, plain Python ---------------------------------------------------------------------------


@pytest.mark.parametrize("host,loopback", [
    ("localhost", True), ("LOCALHOST.", True), ("127.0.0.1", True), ("127.9.9.9", True), ("::1", True),
    ("2130706433", True), ("0x7f000001", True), ("127.1", True), ("::ffff:127.0.0.1", False),
    ("10.0.0.1", False), ("localhost.example.com", False), ("example.com", False), ("1.2.3.4.5", False),
])
def test_loopback_is_this_machine_in_any_spelling(host, loopback):
    assert oauth.is_loopback(host) is loopback


def test_check_endpoint_gives_host_and_port_and_explains_a_refusal_in_a_msgid():
    assert oauth.check_endpoint("https://Login.Example.com:8443/t?x=1", allow_loopback=False) == (
        "login.example.com", 8443)
    assert oauth.check_endpoint("https://login.example.com/token", allow_loopback=False) == ("login.example.com", 443)
    assert oauth.check_endpoint("http://[::1]/token", allow_loopback=True) == ("::1", 80)
    with pytest.raises(oauth.OAuthSettingError) as refusal:
        oauth.check_endpoint("http://127.0.0.1/token", allow_loopback=False)
    assert "SMTPDESK_OAUTH_ALLOW_LOOPBACK" in refusal.value.message and not refusal.value.params


def test_a_parsed_key_keeps_the_json_to_store_and_hides_the_private_key():
    key, stored = oauth.parse_service_account_key(service_account_json())
    assert json.loads(stored)["client_id"] == "104857600000000000001"
    assert "PRIVATE" not in repr(key)
    with pytest.raises(oauth.OAuthSettingError, match="lacks private_key"):
        oauth.parse_service_account_key(service_account_json(private_key=""))


def test_the_credential_columns_hold_only_vault_tokens(admin, app):
    add_each_type(admin)
    for column in OAUTH_COLUMNS:
        for (token,) in elsewhere(app, f'SELECT "{column}" FROM "credential" WHERE "{column}" IS NOT NULL'):
            assert base64.urlsafe_b64decode(token)[0] == 0x80  # a Fernet token's version byte
