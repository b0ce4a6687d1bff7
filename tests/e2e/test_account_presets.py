"""Provider presets in a real browser: choosing a provider fills the server fields and its known sending limits and
says its help line, by mouse and by keyboard; what the admin types afterwards is what is saved; axe finds nothing
serious with the help shown."""
import re

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import keep_problems, sign_in
from tests.e2e.test_layout_a11y import axe_problems

pytestmark = pytest.mark.e2e

expect.set_options(timeout=10_000)


@pytest.fixture(scope="module")
def preset_admin(live_server) -> str:
    return live_server.add_admin("presetadmin")


@pytest.fixture
def admin_page(live_server, preset_admin, page: Page) -> Page:
    """Signed in as an admin, browsing in English; the browser's own complaints (CSP, script errors) are kept."""
    return sign_in_english(keep_problems(page), live_server.url, preset_admin)


def sign_in_english(page: Page, base: str, username: str) -> Page:
    """Sign in through the login form, then switch to English."""
    sign_in(page, base, username)
    page.get_by_role("button", name="EN", exact=True).click()
    return page


def radio(page: Page, question: str, answer: str):
    """One answer of a radio group, found by the group's legend."""
    return page.get_by_role("group", name=question).get_by_label(answer, exact=True)


def expect_server_fields(page: Page, host: str, port: str) -> None:
    """The server fields as a STARTTLS preset with authentication fills them."""
    expect(page.get_by_label("SMTP host")).to_have_value(host)
    expect(page.get_by_label("Port")).to_have_value(port)
    expect(radio(page, "Use secure connection?", "Yes")).to_be_checked()
    expect(radio(page, "Secure connection type (SSL / TLS)", "TLS")).to_be_checked()
    expect(radio(page, "Use authentication?", "Yes")).to_be_checked()
    expect(page.get_by_label("Credential for authentication")).to_be_visible()


def test_a_preset_fills_the_fields_and_what_is_typed_afterwards_is_saved(live_server, admin_page: Page):
    page = admin_page
    base = live_server.url
    page.goto(f"{base}/credentials/new")
    page.get_by_label("Name", exact=True).fill("SendGrid key")
    page.get_by_label("Username", exact=True).fill("apikey")
    page.get_by_label("Secret", exact=True).fill("SG.not-a-real-key")
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/credentials/$"))

    page.goto(f"{base}/accounts/new")
    page.get_by_label("Account name").fill("Newsletter")
    page.get_by_label("Sender e-mail").fill("News <news@example.com>")
    page.get_by_label("Reply-To e-mail").fill("reply@example.com")
    page.get_by_label("Return-Path e-mail").fill("bounces@example.com")
    page.get_by_label("Confirmation e-mail").fill("receipts@example.com")
    provider = page.get_by_label("Provider")
    help_line = page.locator("#provider-help")
    expect(provider).to_have_value("custom")
    expect(page.get_by_role("button", name="Apply")).to_be_hidden()  # the script fills the fields itself
    expect(help_line).to_be_hidden()

    provider.select_option(label="Microsoft 365")
    expect_server_fields(page, "smtp.office365.com", "587")
    expect(help_line).to_contain_text("Authenticated SMTP")
    expect(help_line).to_contain_text("Expected credential: OAuth 2.0 — client credentials")
    expect(help_line).to_have_attribute("aria-live", "polite")
    expect(provider).to_have_accessible_description(re.compile("Authenticated SMTP"))
    connections = page.get_by_label("Max simultaneous connections")
    per_minute = page.get_by_label("Messages per minute")
    expect(connections).to_have_value("3")  # the limits Microsoft 365 documents for a mailbox
    expect(per_minute).to_have_value("30")
    expect(help_line).to_contain_text("30 messages a minute per mailbox")
    credential = page.get_by_label("Credential for authentication")
    expect(credential.locator("option", has_text="SendGrid key")).to_have_text("SendGrid key")

    provider.select_option(label="SendGrid")
    expect_server_fields(page, "smtp.sendgrid.net", "587")
    expect(help_line).to_contain_text("The username is literally apikey")
    expect(credential.locator("option", has_text="SendGrid key")).to_have_text("SendGrid key (expected type)")
    expect(connections).to_have_value("")  # none documented: the configured defaults, named in their help
    expect(per_minute).to_have_value("")
    expect(per_minute).to_have_accessible_description(re.compile("Empty: the default, no limit"))
    assert axe_problems(page) == []

    # The fields stay the admin's: another port and a rate, and the saved account has them.
    page.get_by_label("Port").fill("2525")
    per_minute.fill("20")
    credential.select_option(label="SendGrid key (expected type)")
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/accounts/$"))
    expect(page.locator("#flashes")).to_contain_text("Account “Newsletter” created.")
    expect(page.locator("#account-rows tr", has_text="Newsletter")).to_contain_text(
        "Sending limits: 20 messages a minute")

    page.locator("#account-rows tr", has_text="Newsletter").get_by_text("Actions").click()
    page.locator("#account-rows tr", has_text="Newsletter").get_by_role("link", name="Edit").click()
    expect(page.get_by_label("SMTP host")).to_have_value("smtp.sendgrid.net")
    expect(page.get_by_label("Port")).to_have_value("2525")
    expect(per_minute).to_have_value("20")
    expect(radio(page, "Secure connection type (SSL / TLS)", "TLS")).to_be_checked()
    expect(page.get_by_label("Credential for authentication")).to_have_value(re.compile(r"\d+"))
    # The provider is not stored: the edit page finds it from the host.
    expect(provider).to_have_value("sendgrid")
    expect(help_line).to_contain_text("literally apikey")

    # Enter in a field saves: the hidden first Submit, never Apply or "Test these settings".
    page.get_by_label("Port").fill("2526")
    page.get_by_label("Port").press("Enter")
    expect(page).to_have_url(re.compile(r"/accounts/$"))
    expect(page.locator("#flashes")).to_contain_text("Account “Newsletter” saved.")
    assert not page.problems, "\n".join(page.problems)


def test_a_provider_is_chosen_from_the_keyboard(live_server, admin_page: Page):
    page = admin_page
    page.goto(f"{live_server.url}/accounts/new")
    # From the last question of the Account section, Tab reaches the provider first.
    radio(page, "Enable footer", "No").focus()
    page.keyboard.press("Tab")
    provider = page.get_by_label("Provider")
    expect(provider).to_be_focused()
    page.keyboard.type("Postmark")
    expect(provider).to_have_value("postmark")
    expect_server_fields(page, "smtp.postmarkapp.com", "587")
    expect(page.locator("#provider-help")).to_contain_text("Server API token")
    page.keyboard.press("ArrowDown")  # Brevo, the next one
    expect(provider).to_have_value("brevo")
    expect(page.get_by_label("SMTP host")).to_have_value("smtp-relay.brevo.com")
    expect(page.locator("#provider-help")).to_contain_text("SMTP key")
    # The next stop is the host, which stays editable.
    page.keyboard.press("Tab")
    expect(page.get_by_label("SMTP host")).to_be_focused()
    page.keyboard.press("End")
    page.keyboard.type("-eu")
    expect(page.get_by_label("SMTP host")).to_have_value("smtp-relay.brevo.com-eu")
    assert not page.problems, "\n".join(page.problems)


def test_without_javascript_apply_fills_the_fields_and_keeps_what_was_typed(live_server, preset_admin,
                                                                            browser: Browser, browser_context_args):
    context = browser.new_context(**browser_context_args, java_script_enabled=False)
    page = sign_in_english(context.new_page(), live_server.url, preset_admin)
    page.goto(f"{live_server.url}/accounts/new")
    page.get_by_label("Account name").fill("Ireland relay")
    page.get_by_label("Provider").select_option(label="Amazon SES · Europe (Ireland) · eu-west-1")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"/accounts/new"))
    expect_server_fields(page, "email-smtp.eu-west-1.amazonaws.com", "587")
    expect(page.locator("#provider-help")).to_contain_text("not IAM access keys")
    expect(page.get_by_label("Account name")).to_have_value("Ireland relay")
    expect(page.locator(".field-error")).to_have_count(0)
    context.close()
