"""The account form's backup account in a real browser: chosen from the list of the other enabled accounts, saved,
and a circle refused beside the field."""
import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.test_account_row_actions import add_account, sign_in

pytestmark = pytest.mark.e2e


def test_a_backup_is_chosen_on_the_form_and_a_circle_is_refused(live_server, browser: Browser,
                                                               browser_context_args):
    live_server.add_admin("rowadmin")
    page = browser.new_context(**browser_context_args).new_page()
    sign_in(page, live_server.url)
    for name in ("Relay A", "Relay B"):
        add_account(page, live_server.url, name)

    def edit(name: str) -> None:
        row = page.locator("#account-rows tbody tr", has_text=name)
        row.get_by_text("Actions", exact=True).click()
        row.get_by_role("link", name="Edit").click()
        expect(page.get_by_role("heading", name="Failover")).to_be_visible()

    edit("Relay A")
    backup = page.get_by_label("Backup account")
    expect(backup.locator("option")).to_have_text(["None", "Relay B"])  # the others, not itself
    backup.select_option(label="Relay B")
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_text("Account “Relay A” saved.")).to_be_visible()

    edit("Relay B")
    page.get_by_label("Backup account").select_option(label="Relay A")
    page.get_by_role("button", name="Submit").click()
    expect(page.locator("#backup_account-error")).to_have_text(
        "This would make a circle of backups: Relay B → Relay A → Relay B.")
    expect(page.get_by_label("Backup account")).to_have_attribute("aria-invalid", "true")
    page.context.close()
