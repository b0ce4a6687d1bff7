"""The report's row actions in a real browser: each is a small form of its row. With JavaScript htmx swaps the row
in place; without it the browser posts and comes back to the same filtered report."""
import re

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.test_configuration_flow import expect_same_page, mark_page

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def accounts(live_server, browser: Browser, browser_context_args) -> str:
    """An admin, and two accounts made through the form: "Row main" (the default, being the first) and "Row spare"."""
    live_server.add_admin("rowadmin")
    context = browser.new_context(**browser_context_args)
    page = context.new_page()
    sign_in(page, live_server.url)
    for name in ("Row main", "Row spare"):
        add_account(page, live_server.url, name)
    context.close()
    return "rowadmin"


def sign_in(page: Page, base: str) -> None:
    page.goto(f"{base}/auth/login")
    page.locator("#username").fill("rowadmin")
    page.locator("#password").fill(PASSWORD)
    page.locator("main form button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/accounts/$"))
    page.get_by_role("button", name="EN", exact=True).click()
    expect(page.locator("html")).to_have_attribute("lang", "en")


def add_account(page: Page, base: str, name: str) -> None:
    """An account made through the form in English, every address filled, for smtp.example.com."""
    page.goto(f"{base}/accounts/new")
    page.get_by_label("Account name").fill(name)
    page.get_by_label("Sender e-mail").fill("Ops <ops@example.com>")
    page.get_by_label("Reply-To e-mail").fill("reply@example.com")
    page.get_by_label("Return-Path e-mail").fill("bounces@example.com")
    page.get_by_label("Confirmation e-mail").fill("receipts@example.com")
    page.get_by_label("SMTP host").fill("smtp.example.com")
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_text(f"Account “{name}” created.")).to_be_visible()


def menu(page: Page, name: str):
    """The row of this account, its Actions menu open."""
    row = page.locator("#account-rows tbody tr", has_text=name)
    row.get_by_text("Actions", exact=True).click()
    return row


def default_first(page: Page) -> tuple[str, str]:
    """The two accounts' names, the default one first (the tests take turns moving the default)."""
    row = page.locator("#account-rows tbody tr", has=page.locator(".badge-default"))
    expect(row).to_have_count(1)
    names = ["Row main", "Row spare"]
    return tuple(sorted(names, key=lambda name: name not in row.inner_text()))


def test_with_htmx_the_row_buttons_swap_rows_in_place(live_server, accounts, page: Page):
    page.set_default_timeout(10_000)
    sign_in(page, live_server.url)
    page.goto(f"{live_server.url}/accounts/?name=row")
    default, other = default_first(page)
    mark_page(page, "report")

    row = menu(page, default)
    expect(row.get_by_role("button", name="Disable")).to_be_disabled()
    # Each disabled button says why in words on the menu, not only in a tooltip.
    expect(row.get_by_text("The default account cannot be disabled. Make another account the default first.")
           ).to_be_visible()
    expect(row.get_by_role("button", name="Make default")).to_be_disabled()
    expect(row.get_by_text("This is the default account.")).to_be_visible()
    row.get_by_text("Actions", exact=True).click()  # closed again: the open menu covers the next row

    row = menu(page, other)
    row.get_by_role("button", name="Disable").click()
    expect(page.locator("#flashes")).to_have_text(f"Account “{other}” disabled.")
    expect(row.locator(".badge-bad")).to_have_text("No")
    expect(row).to_have_class("disabled-row")
    menu(page, other)
    expect(row.get_by_role("button", name="Make default")).to_be_disabled()
    row.get_by_role("button", name="Enable").click()
    expect(row).not_to_have_class("disabled-row")

    # Make default asks first (it reroutes every notification); declined, nothing changes.
    questions = []
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
    menu(page, other).get_by_role("button", name="Make default").click()  # returns once the dialog is answered
    assert questions == [f"Make “{other}” the default account? Every notification that names no account will be "
                         "sent through it."]
    expect(row.locator(".badge-default")).to_have_count(0)
    row.get_by_text("Actions", exact=True).click()
    # Accepted: the clicked row and, out of band, the previous default's row.
    page.once("dialog", lambda dialog: dialog.accept())
    menu(page, other).get_by_role("button", name="Make default").click()
    expect(page.locator("#flashes")).to_have_text(f"“{other}” is now the default account.")
    expect(row.locator(".badge-default")).to_have_text("Default")
    old = page.locator("#account-rows tbody tr", has_text=default)
    expect(old.locator(".badge-default")).to_have_count(0)
    # The swapped rows' own links still lead back to the filtered report.
    expect(menu(page, default).get_by_role("link", name="Edit")).to_have_attribute(
        "href", re.compile(r"next=/accounts/\?name%3Drow$"))
    expect_same_page(page, "report")

    page.reload()
    expect(page.locator("#account-rows tbody tr", has_text=other).locator(".badge-default")).to_have_count(1)


def test_without_javascript_a_row_button_posts_and_returns_to_the_filtered_report(
        live_server, accounts, browser: Browser, browser_context_args):
    context = browser.new_context(**browser_context_args, java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto(f"{live_server.url}/auth/login")
    page.locator("#username").fill(accounts)
    page.locator("#password").fill(PASSWORD)
    page.locator("main form button[type=submit]").click()
    report = f"{live_server.url}/accounts/?name=row&sort=-name"
    page.goto(report)
    default, other = default_first(page)
    back = re.compile(re.escape(report) + "$")

    menu(page, other).get_by_role("button", name="Make default").click()
    expect(page).to_have_url(back)
    expect(page.locator(".flash-success")).to_contain_text(f"“{other}” is now the default account.")
    expect(page.locator("#account-rows tbody tr", has_text=other).locator(".badge-default")).to_have_count(1)

    menu(page, default).get_by_role("button", name="Disable").click()
    expect(page).to_have_url(back)
    expect(page.locator(".flash-success")).to_contain_text(f"Account “{default}” disabled.")
    expect(page.locator("#account-rows tbody tr", has_text=default)).to_have_class("disabled-row")

    menu(page, default).get_by_role("button", name="Enable").click()
    expect(page).to_have_url(back)
    expect(page.locator("#account-rows tbody tr", has_text=default)).not_to_have_class("disabled-row")
    context.close()
