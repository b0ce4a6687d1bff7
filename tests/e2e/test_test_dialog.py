"""The issue's proof for the Test Email dialog, in a real browser against a fresh server and real servers.

An admin sets up a credential, a SOCKS5 connector (microsocks) and a STARTTLS + AUTH account whose private CA is
pasted under Advanced; from the report row the dialog opens in place with the defaults of both languages, sends
for real through the proxy and says so; with a wrong secret it explains the authentication failure. The page
never reloads while the dialog works. With SMTPDESK_SCREENSHOTS set it saves test-dialog-success.png and
test-dialog-failure.png for the README.
"""
import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import sign_in
from tests.e2e.test_configuration_flow import expect_same_page, mark_page, screenshot, yes_no

pytestmark = pytest.mark.e2e

LOGIN = "relay@example.com"
SECRET = "Dialog-Secret-5gT2"
WRONG_SECRET = "Wrong-Secret-8kP4"


@pytest.fixture(scope="module")
def dialog_admin(live_server) -> str:
    return live_server.add_admin("dialogadmin")


def set_up_through_the_ui(page: Page, base: str, proxy, server, ca_pem: str) -> None:
    """A credential, a connector to the SOCKS5 proxy, and the STARTTLS + AUTH account using both."""
    page.goto(f"{base}/credentials/new")
    page.get_by_label("Name", exact=True).fill("Relay login")
    page.get_by_label("Username", exact=True).fill(LOGIN)
    page.get_by_label("Secret", exact=True).fill(SECRET)
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/credentials/$"))

    page.goto(f"{base}/connectors/new")
    page.get_by_label("Name", exact=True).fill("Office SOCKS")
    page.get_by_label("Type").select_option("socks5")
    page.get_by_label("Host").fill(proxy.host)
    page.get_by_label("Port").fill(str(proxy.port))
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/connectors/$"))

    page.goto(f"{base}/accounts/new")
    page.get_by_label("Account name").fill("Relay via proxy")
    page.get_by_label("Sender e-mail").fill("Billing <billing@example.com>")
    page.get_by_label("Reply-To e-mail").fill("reply@example.com")
    page.get_by_label("Return-Path e-mail").fill("bounces@example.com")
    page.get_by_label("Confirmation e-mail").fill("receipts@example.com")
    page.get_by_label("SMTP host").fill(server.host)
    page.get_by_label("Port", exact=True).fill(str(server.port))
    yes_no(page, "Use secure connection?", "Yes")
    yes_no(page, "Secure connection type (SSL / TLS)", "TLS")
    yes_no(page, "Use authentication?", "Yes")
    page.get_by_label("Credential for authentication").select_option(label="Relay login")
    yes_no(page, "Use network connector?", "Yes")
    page.get_by_label("Network connector", exact=True).select_option(label="Office SOCKS")
    ca_field = page.get_by_label("Custom CA certificate (PEM)")
    expect(ca_field).to_be_hidden()  # Advanced starts collapsed
    page.get_by_text("Advanced", exact=True).click()
    ca_field.fill(ca_pem)
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/accounts/$"))
    expect(page.get_by_text("Account “Relay via proxy” created.")).to_be_visible()


def open_dialog(page: Page, row_name: str, menu: str, action: str):
    row = page.locator("#account-rows tbody tr", has_text=row_name)
    row.get_by_text(menu, exact=True).click()
    row.get_by_role("button", name=action).click()
    dialog = page.locator("dialog#test-dialog[open]")
    expect(dialog).to_be_visible()
    return row, dialog


def test_the_test_dialog_sends_through_the_proxy_then_explains_a_wrong_secret(
        live_server, dialog_admin, page: Page, smtp_server, socks5_proxy, certificates):
    page.set_default_timeout(15_000)
    base = live_server.url
    server = smtp_server("starttls", users={LOGIN: SECRET})
    sign_in(page, base, dialog_admin)
    page.get_by_role("button", name="EN", exact=True).click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    set_up_through_the_ui(page, base, socks5_proxy, server, certificates.ca_pem)

    # 1. Brazilian Portuguese: the dialog opens in place with the Portuguese defaults, and closes in place.
    page.get_by_role("button", name="PT", exact=True).click()
    expect(page.locator("html")).to_have_attribute("lang", "pt-BR")
    mark_page(page, "report pt")
    row, dialog = open_dialog(page, "Relay via proxy", "Ações", "Testar configuração")
    expect(dialog.get_by_role("heading")).to_have_text("Teste de E-mail - Conta Relay via proxy")
    expect(dialog.get_by_label("Enviar para")).to_have_value("")
    expect(dialog.get_by_label("Assunto")).to_have_value("MENSAGEM DE TESTE!")
    expect(dialog.get_by_label("Mensagem")).to_have_value("ATENÇÃO: ESTA É UMA MENSAGEM DE TESTE!")
    expect(dialog.get_by_role("button", name="Enviar", exact=True)).to_be_visible()
    dialog.locator("footer").get_by_role("button", name="Fechar", exact=True).click()
    expect(page.locator("dialog#test-dialog[open]")).to_have_count(0)
    expect_same_page(page, "report pt")

    # 2. English: the English defaults; a real send through microsocks and STARTTLS + AUTH succeeds, in place.
    page.get_by_role("button", name="EN", exact=True).click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    mark_page(page, "report en")
    row, dialog = open_dialog(page, "Relay via proxy", "Actions", "Test configuration")
    expect(dialog.get_by_role("heading")).to_have_text("Test Email - Account Relay via proxy")
    expect(dialog.get_by_label("Subject")).to_have_value("TEST MESSAGE!")
    expect(dialog.get_by_label("Message")).to_have_value("ATTENTION: THIS IS A TEST MESSAGE!")
    expect(row.locator("td.health")).to_contain_text("Never tested")
    send = dialog.get_by_role("button", name="Send", exact=True)
    expect(send).to_have_attribute("type", "submit")
    dialog.get_by_label("Send to").fill("rita@example.org")
    send.click()
    result = page.locator("dialog#test-dialog .test-result")
    expect(result).to_contain_text("Sent")
    expect(result).to_contain_text("The server accepted the message in")
    expect(result).to_contain_text("250")
    expect(result).to_contain_text("verified")
    expect(result).to_contain_text("network connector Office SOCKS")
    expect(page.locator("dialog#test-dialog").get_by_label("Send to")).to_have_value("rita@example.org")
    # The row says so too, swapped out of band.
    expect(row.locator("td.health")).to_contain_text("OK")
    expect(row.locator("td.health")).to_contain_text("TLS verified")
    expect_same_page(page, "report en")
    [received] = server.received
    assert received.mail_from == "bounces@example.com" and received.rcpt_tos == ["rita@example.org"]
    assert received.message["Subject"] == "TEST MESSAGE!"
    assert received.message["From"] == "Billing <billing@example.com>"
    assert server.handler.logins[0][1] == LOGIN
    page.get_by_text("Details", exact=True).click()
    expect(page.locator("dialog#test-dialog .transcript pre")).to_contain_text("through the connector socks5")
    screenshot(page, "test-dialog-success.png")
    page.locator("dialog#test-dialog footer").get_by_role("button", name="Close").click()
    expect(page.locator("dialog#test-dialog[open]")).to_have_count(0)

    # 3. "Test these settings" on the edit form tries the (here unchanged) values in place, saving nothing.
    row.get_by_text("Actions", exact=True).click()
    row.get_by_role("link", name="Edit").click()
    expect(page.get_by_role("heading", name="Edit SMTP account")).to_be_visible()
    mark_page(page, "edit form")
    page.get_by_label("Account name").fill("Renamed but not saved")
    page.locator("#test_to").fill("form-test@example.org")
    page.get_by_role("button", name="Test these settings").click()
    result = page.locator("dialog#test-dialog .test-result")
    expect(result).to_contain_text("Sent")
    expect(page.locator("dialog#test-dialog")).to_contain_text("Unsaved settings from the form: nothing was saved.")
    page.locator("dialog#test-dialog footer").get_by_role("button", name="Close").click()
    expect(page.locator("dialog#test-dialog[open]")).to_have_count(0)
    expect(page.get_by_label("Account name")).to_have_value("Renamed but not saved")
    expect_same_page(page, "edit form")
    assert server.received[-1].rcpt_tos == ["form-test@example.org"]

    # Another port in clear: refused before anything is sent, with the field error beside "Secret for this test"
    # and the refusal in the dialog, in place. Typed again, the secret is used for that one test.
    other = smtp_server("plain", users={LOGIN: SECRET})
    yes_no(page, "Use secure connection?", "No")
    page.get_by_label("Port", exact=True).fill(str(other.port))
    page.get_by_role("button", name="Test these settings").click()
    expect(page.locator("dialog#test-dialog")).to_contain_text("Step: refused by policy")
    expect(page.locator("#test_secret-field .field-error")).to_contain_text("Type the secret here")
    page.locator("dialog#test-dialog footer").get_by_role("button", name="Close").click()
    expect(page.get_by_label("Account name")).to_have_value("Renamed but not saved")
    assert other.connections == 0
    page.get_by_label("Secret for this test").fill(SECRET)
    page.get_by_role("button", name="Test these settings").click()
    expect(page.locator("dialog#test-dialog .test-result")).to_contain_text("Sent")
    assert [login for _, login in other.handler.logins] == [LOGIN]
    page.locator("dialog#test-dialog footer").get_by_role("button", name="Close").click()
    expect_same_page(page, "edit form")
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#account-rows tbody tr", has_text="Relay via proxy")).to_have_count(1)

    # 4. The credential's secret goes wrong: the dialog explains the authentication failure, without the secret.
    page.goto(f"{base}/credentials/")
    credential_row = page.locator("#credential-rows tr", has_text="Relay login")
    credential_row.get_by_text("Actions").click()
    credential_row.get_by_role("link", name="Edit").click()
    page.get_by_label("Secret", exact=True).fill(WRONG_SECRET)
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/credentials/$"))

    page.goto(f"{base}/accounts/")
    mark_page(page, "report again")
    row, dialog = open_dialog(page, "Relay via proxy", "Actions", "Test configuration")
    dialog.get_by_label("Send to").fill("rita@example.org")
    dialog.get_by_role("button", name="Send", exact=True).click()
    result = page.locator("dialog#test-dialog .test-result")
    expect(result).to_contain_text("Failed")
    expect(result).to_contain_text("Step: authentication")
    expect(result).to_contain_text("rejected the username or secret")
    expect(result).to_contain_text("535")
    expect(result).to_contain_text("permanent — fix the settings")
    expect(row.locator("td.health")).to_contain_text("Failed")
    expect(row.locator("td.health")).to_contain_text("authentication: 535")
    expect_same_page(page, "report again")
    assert len(server.received) == 2  # the dialog and the form test; nothing after the 535
    page.get_by_text("Details", exact=True).click()
    html = page.content()
    assert WRONG_SECRET not in html and SECRET not in html
    screenshot(page, "test-dialog-failure.png")
