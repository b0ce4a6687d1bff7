"""OAuth 2.0 credentials in a real browser, against the real OAuth test server and an aiosmtpd taking XOAUTH2 and
OAUTHBEARER after STARTTLS: each type made in the vault's form (client credentials with the Microsoft 365 fill-in,
refresh token with “Connect with the provider” through the server's /authorize and back, service account from an
uploaded JSON key), an account made with the provider preset, tested from its row, and a notification queued with
`smtpdesk send` delivered by the server's worker."""
import re
import time

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import keep_problems, serving, sign_in
from tests.e2e.test_account_presets import sign_in_english
from tests.e2e.test_test_dialog import open_dialog
from tests.fixtures.oauth import APP_MAILBOX, GMAIL_SCOPE, M365_SCOPE, USER_MAILBOX

pytestmark = pytest.mark.e2e

expect.set_options(timeout=15_000)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """smtpdesk with OAUTH_ALLOW_LOOPBACK on, as the test OAuth server's http://127.0.0.1 URLs need."""
    with serving(tmp_path_factory, SMTPDESK_OAUTH_ALLOW_LOOPBACK="true") as server:
        yield server


@pytest.fixture(scope="module")
def oauth_admin(live_server) -> str:
    return live_server.add_admin("oauthadmin")


@pytest.fixture
def admin_page(live_server, oauth_admin, page: Page) -> Page:
    """Signed in as an admin, browsing in English; the browser's complaints (CSP, script errors) are kept."""
    return sign_in_english(keep_problems(page), live_server.url, oauth_admin)


def new_credential(page: Page, base: str, name: str, kind: str, mailbox: str, scope: str) -> None:
    """Open the vault's form with the type chosen and the fields every OAuth type has filled."""
    page.goto(f"{base}/credentials/new")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Credential type").select_option(label=kind)
    page.get_by_label("User (mailbox)").fill(mailbox)
    page.get_by_label("Scope").fill(scope)


def submit_credential(page: Page, name: str):
    """Save the form; the credential's row in the list."""
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/credentials/$"))
    return page.locator("#credential-rows tr", has_text=name)


def add_account(page: Page, base: str, name: str, provider: str, credential: str, server, ca_pem: str) -> None:
    """An account made with the provider preset, then pointed at the test server (its CA under Advanced)."""
    page.goto(f"{base}/accounts/new")
    page.get_by_label("Account name").fill(name)
    page.get_by_label("Sender e-mail").fill("Alerts <alerts@example.com>")
    page.get_by_label("Reply-To e-mail").fill("reply@example.com")
    page.get_by_label("Return-Path e-mail").fill("bounces@example.com")
    page.get_by_label("Confirmation e-mail").fill("receipts@example.com")
    page.get_by_label("Provider").select_option(label=provider)
    expect(page.locator("#provider-help")).to_contain_text("Expected credential")
    page.get_by_label("SMTP host").fill(server.host)
    page.get_by_label("Port", exact=True).fill(str(server.port))
    page.get_by_label("Credential for authentication").select_option(label=f"{credential} (expected type)")
    page.get_by_text("Advanced", exact=True).click()
    page.get_by_label("Custom CA certificate (PEM)").fill(ca_pem)
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/accounts/$"))


def sent_from_the_row_and_the_worker(page: Page, base: str, live_server, account: str, server) -> None:
    """Test configuration from the account's row shows the token step and success; a notification queued with
    `smtpdesk send` reaches the server through the worker."""
    page.goto(f"{base}/accounts/")
    _row, dialog = open_dialog(page, account, "Actions", "Test configuration")
    dialog.get_by_label("Send to").fill("rita@example.org")
    dialog.get_by_role("button", name="Send", exact=True).click()
    result = page.locator("dialog#test-dialog .test-result")
    expect(result).to_contain_text("The server accepted the message")
    expect(result).to_contain_text(re.compile(r"Access token\s*obtained \(expires in (59|60) min\)"))
    page.locator("dialog#test-dialog footer").get_by_role("button", name="Close").click()

    live_server.cli("send", "--to", "ops@example.org", "--subject", f"Worker via {account}", "--body", "91%",
                    "--account", account)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(server.received) < 2:
        time.sleep(0.2)
    assert [received.message["Subject"] for received in server.received] == ["TEST MESSAGE!", f"Worker via {account}"]


def test_client_credentials_with_the_microsoft_365_fill_in(live_server, admin_page: Page, oauth, smtp_server,
                                                            certificates):
    page, base = admin_page, live_server.url
    server = smtp_server("starttls", oauth=oauth, oauth_scope=M365_SCOPE, oauth_failure="m365")
    new_credential(page, base, "M365 app", "OAuth 2.0 — client credentials", APP_MAILBOX, "")
    page.get_by_label("Microsoft 365 tenant ID").fill("contoso.onmicrosoft.com")
    page.get_by_role("button", name="Fill in for Microsoft 365").click()
    expect(page.get_by_label("Token URL")).to_have_value(
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token")
    expect(page.get_by_label("Scope")).to_have_value(M365_SCOPE)
    page.get_by_label("Token URL").fill(oauth.token_url)  # the test server stands in for Microsoft's
    page.get_by_label("Client ID").fill(oauth.app_client.client_id)
    page.get_by_label("Client secret").fill(oauth.app_client.client_secret)
    expect(submit_credential(page, "M365 app")).to_contain_text("secret set")

    add_account(page, base, "Microsoft app-only", "Microsoft 365", "M365 app", server, certificates.ca_pem)
    sent_from_the_row_and_the_worker(page, base, live_server, "Microsoft app-only", server)
    assert [mailbox for _, mailbox in server.handler.logins] == [APP_MAILBOX] * 2
    assert oauth.app_client.client_secret not in page.content()
    assert not page.problems, "\n".join(page.problems)


def test_refresh_token_by_connecting_with_the_provider(live_server, admin_page: Page, oauth, smtp_server,
                                                       certificates):
    page, base = admin_page, live_server.url
    server = smtp_server("starttls", oauth=oauth)
    new_credential(page, base, "Gmail user", "OAuth 2.0 — refresh token", USER_MAILBOX, GMAIL_SCOPE)
    page.get_by_label("Authorization URL").fill(oauth.authorize_url)
    page.get_by_label("Token URL").fill(oauth.token_url)
    page.get_by_label("Client ID").fill(oauth.web_client.client_id)
    page.get_by_label("Client secret").fill(oauth.web_client.client_secret)
    callback = f"{base}/credentials/oauth/callback"
    expect(page.get_by_label("Redirect URI to register at the provider")).to_have_value(callback)
    row = submit_credential(page, "Gmail user")
    expect(row).to_contain_text("no refresh token")

    # From the list: the browser goes to the server's /authorize, which consents at once and sends it back.
    row.get_by_text("Actions", exact=True).click()
    row.get_by_role("button", name="Connect with the provider").click()
    expect(page).to_have_url(re.compile(r"/credentials/\d+/edit$"))
    expect(page.locator("#flashes")).to_have_text("Connected: refresh token stored.")
    expect(page.locator("#provider-connection")).to_contain_text("Refresh token: stored")
    assert [asked["grant_type"] for asked in oauth.token_requests()] == ["authorization_code"]

    # The same button in Portuguese, with the design's label; pressed again it connects again.
    page.get_by_role("button", name="PT", exact=True).click()
    page.get_by_role("button", name="Conectar com o provedor").click()
    expect(page.locator("#flashes")).to_have_text("Conectado: refresh token armazenado.")
    page.get_by_role("button", name="EN", exact=True).click()

    add_account(page, base, "Gmail delegated", "Gmail / Google Workspace", "Gmail user", server, certificates.ca_pem)
    sent_from_the_row_and_the_worker(page, base, live_server, "Gmail delegated", server)
    assert [mailbox for _, mailbox in server.handler.logins] == [USER_MAILBOX] * 2
    assert not page.problems, "\n".join(page.problems)


def test_service_account_from_an_uploaded_json_key(live_server, admin_page: Page, oauth, smtp_server, certificates,
                                                   service_account, tmp_path):
    page, base = admin_page, live_server.url
    server = smtp_server("starttls", oauth=oauth)
    key_file = tmp_path / "smtpdesk-mailer.json"
    key_file.write_text(service_account.json)
    new_credential(page, base, "Workspace robot", "OAuth 2.0 — service account (JWT)", USER_MAILBOX, GMAIL_SCOPE)
    page.get_by_label("Service account JSON key").set_input_files(key_file)
    expect(submit_credential(page, "Workspace robot")).to_contain_text("secret set")
    page.locator("#credential-rows tr", has_text="Workspace robot").get_by_text("Actions", exact=True).click()
    page.locator("#credential-rows tr", has_text="Workspace robot").get_by_role("link", name="Edit").click()
    expect(page.get_by_text(f"Key stored: {service_account.client_email}")).to_be_visible()

    add_account(page, base, "Workspace robot mail", "Gmail / Google Workspace", "Workspace robot", server,
                certificates.ca_pem)
    sent_from_the_row_and_the_worker(page, base, live_server, "Workspace robot mail", server)
    assert [asked["grant_type"] for asked in oauth.token_requests()] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    private_key_line = service_account.info["private_key"].splitlines()[1]
    assert private_key_line not in page.content()
    assert not page.problems, "\n".join(page.problems)


def test_connect_without_javascript(live_server, oauth_admin, browser, oauth):
    """Without htmx the button is a plain form: the POST's 303 takes the browser to the provider and back."""
    context = browser.new_context(java_script_enabled=False, locale="en")
    page = context.new_page()
    base = live_server.url
    sign_in(page, base, oauth_admin)
    page.get_by_role("button", name="EN", exact=True).click()
    page.goto(f"{base}/credentials/new")
    page.get_by_label("Name", exact=True).fill("No-script user")
    page.get_by_label("Credential type").select_option(label="OAuth 2.0 — refresh token")
    page.get_by_role("button", name="Show the fields of this type").click()
    page.get_by_label("User (mailbox)").fill(USER_MAILBOX)
    page.get_by_label("Scope").fill(GMAIL_SCOPE)
    page.get_by_label("Authorization URL").fill(oauth.authorize_url)
    page.get_by_label("Token URL").fill(oauth.token_url)
    page.get_by_label("Client ID").fill(oauth.web_client.client_id)
    page.get_by_label("Client secret").fill(oauth.web_client.client_secret)
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/credentials/$"))
    row = page.locator("#credential-rows tr", has_text="No-script user")
    row.get_by_text("Actions", exact=True).click()
    row.get_by_role("link", name="Edit").click()
    page.get_by_role("button", name="Connect with the provider").click()
    expect(page.locator("#flashes")).to_have_text("Connected: refresh token stored.")
    context.close()
