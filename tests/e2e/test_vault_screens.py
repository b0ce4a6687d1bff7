"""Credentials and connectors in a real browser: htmx swaps, confirmations, show-when and the default."""
import re

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def vault_admin(live_server) -> str:
    return live_server.add_admin("vaultadmin")


@pytest.fixture
def admin_page(live_server, vault_admin, page: Page) -> Page:
    """Signed in as an admin, browsing in English."""
    page.goto(f"{live_server.url}/auth/login")
    page.locator("#username").fill(vault_admin)
    page.locator("#password").fill(PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.get_by_role("button", name="EN", exact=True).click()
    return page


def test_credential_add_edit_and_delete_with_htmx(live_server, admin_page: Page):
    page = admin_page
    page.goto(f"{live_server.url}/credentials/")
    page.get_by_role("button", name="Add").click()

    # An error comes back as a swapped form (422), the typed secret not echoed.
    page.get_by_label("Name", exact=True).fill("Mailer")
    page.get_by_label("Username", exact=True).fill("mailer@example.com")
    page.get_by_label("Secret", exact=True).fill("Browser-Secret-1")
    page.get_by_label("Allowed hosts").fill("smtp.example.com\nbad host")
    page.get_by_role("button", name="Submit").click()
    expect(page.locator("#allowed_hosts-error")).to_contain_text("Line 2")
    expect(page.get_by_label("Secret", exact=True)).to_have_value("")

    page.get_by_label("Allowed hosts").fill("smtp.example.com\n*.example.net")
    page.get_by_label("Secret", exact=True).fill("Browser-Secret-1")
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/credentials/$"))
    row = page.locator("#credential-rows tr", has_text="Mailer")
    expect(row).to_contain_text("secret set")
    expect(page.locator("body")).not_to_contain_text("Browser-Secret-1")

    row.get_by_text("Actions").click()
    row.get_by_role("link", name="Edit").click()
    expect(page.get_by_text("Secret set — enter a new one to change it.")).to_be_visible()
    expect(page.get_by_label("Secret", exact=True)).to_have_value("")
    page.get_by_role("button", name="Cancel").click()

    # Delete asks once (hx-confirm), then the row goes away without a reload.
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    row = page.locator("#credential-rows tr", has_text="Mailer")
    row.get_by_text("Actions").click()
    row.get_by_role("button", name="Delete").click()
    expect(page.locator("#credential-rows tr", has_text="Mailer")).to_have_count(0)
    assert len(dialogs) == 1 and "Mailer" in dialogs[0]


def test_connector_form_and_default_with_htmx(live_server, admin_page: Page):
    page = admin_page
    for name in ("First hop", "Second hop"):
        page.goto(f"{live_server.url}/connectors/new")
        resolve = page.locator("#remote_dns-field")
        expect(resolve).to_be_visible()
        page.get_by_label("Type").select_option("http")
        expect(resolve).to_be_hidden()
        page.get_by_label("Type").select_option("socks5")
        expect(resolve).to_be_visible()
        page.get_by_label("Name", exact=True).fill(name)
        page.get_by_label("Host").fill("proxy.example.com")
        page.get_by_label("Port").fill("70000")
        page.get_by_role("button", name="Submit").click()
        expect(page.locator("#port-error")).to_contain_text("1 to 65535")
        page.get_by_label("Port").fill("1080")
        page.get_by_role("button", name="Submit").click()
        expect(page).to_have_url(re.compile(r"/connectors/$"))

    for name in ("First hop", "Second hop"):
        row = page.locator("#connector-rows tr", has_text=name)
        row.get_by_text("Actions").click()
        row.get_by_role("button", name="Make default").click()
        expect(page.locator("#connector-rows tr", has_text=name).locator(".badge-default")).to_have_count(1)
        expect(page.locator("#connector-rows .badge-default")).to_have_count(1)
    expect(page.locator("#connector-rows tr", has_text="Second hop").get_by_role(
        "link", name="Test connector", include_hidden=True)).to_have_attribute("hx-target", "#test-dialog")
