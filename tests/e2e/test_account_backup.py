"""The account form's backup account in a real browser: chosen from the list of the other enabled accounts, saved,
and a circle refused beside the field; disabling and deleting an account others name as their backup says which
accounts lose it, and the report marks them."""
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import keep_problems
from tests.e2e.test_account_row_actions import add_account, sign_in

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def admin(live_server) -> str:
    return live_server.add_admin("rowadmin")


def edit(page: Page, name: str) -> None:
    """The account's form, opened from its row's menu."""
    row = page.locator("#account-rows tbody tr", has=page.get_by_role("rowheader", name=name, exact=True))
    row.get_by_text("Actions", exact=True).click()
    row.get_by_role("link", name="Edit").click()
    expect(page.get_by_role("heading", name="Failover")).to_be_visible()


def test_a_backup_is_chosen_on_the_form_and_a_circle_is_refused(live_server, admin, browser: Browser,
                                                               browser_context_args):
    page = browser.new_context(**browser_context_args).new_page()
    sign_in(page, live_server.url)
    for name in ("Relay A", "Relay B"):
        add_account(page, live_server.url, name)

    edit(page, "Relay A")
    backup = page.get_by_label("Backup account")
    expect(backup.locator("option")).to_have_text(["None", "Relay B"])  # the others, not itself
    backup.select_option(label="Relay B")
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_text("Account “Relay A” saved.")).to_be_visible()

    edit(page, "Relay B")
    page.get_by_label("Backup account").select_option(label="Relay A")
    page.get_by_role("button", name="Submit").click()
    expect(page.locator("#backup_account-error")).to_have_text(
        "This would make a circle of backups: Relay B → Relay A → Relay B.")
    expect(page.get_by_label("Backup account")).to_have_attribute("aria-invalid", "true")
    page.context.close()


def test_disabling_then_deleting_a_backup_says_which_accounts_lose_it(live_server, admin, browser: Browser,
                                                                      browser_context_args):
    page = keep_problems(browser.new_context(**browser_context_args).new_page())
    page.set_default_timeout(10_000)
    sign_in(page, live_server.url)
    add_account(page, live_server.url, "Relay C")
    add_account(page, live_server.url, "Relay D")
    edit(page, "Relay C")
    page.get_by_label("Backup account").select_option(label="Relay D")
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_text("Account “Relay C” saved.")).to_be_visible()

    # Disabled on its form: saved, with a warning naming the account that loses its backup.
    edit(page, "Relay D")
    page.get_by_role("group", name="Enabled", exact=True).get_by_label("No").check()
    page.get_by_role("button", name="Submit").click()
    expect(page.locator("#flashes .flash-warning")).to_have_text(
        "The account “Relay C” uses “Relay D” as its backup: it has no backup while “Relay D” is disabled.")
    row = page.locator("#account-rows tbody tr", has=page.get_by_role("rowheader", name="Relay C", exact=True))
    expect(row.locator(".backup-disabled")).to_have_text("backup Relay D disabled")

    # Deleting it: the page and the confirmation say so; the delete leaves Relay C without a backup.
    edit(page, "Relay D")
    losing = "The account “Relay C” uses this account as its backup: deleting it leaves that account without a backup."
    expect(page.locator("#delete-backup-warning")).to_have_text(losing)
    questions = []
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
    page.get_by_role("button", name="Delete").click()
    expect(page.locator("#flashes .flash-warning")).to_have_text("The account “Relay C” has no backup any more.")
    assert questions == [f"Delete the account “Relay D”? This cannot be undone. {losing}"]
    expect(row.locator(".backup-disabled")).to_have_count(0)
    edit(page, "Relay C")
    expect(page.get_by_label("Backup account")).to_have_value("")
    assert page.problems == []
    page.context.close()
