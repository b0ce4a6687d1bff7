"""Retry in the deliveries list, in chromium: a small form of its row. With JavaScript htmx swaps the row in place;
without it the browser posts and comes back to the same filtered list. Against a real `smtpdesk serve` and a real
aiosmtpd server that refuses a recipient until the test lets it through."""
import re

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import PASSWORD, complete_first_run
from tests.e2e.test_deliveries_paging import queue_notifications

pytestmark = pytest.mark.e2e


def failed_row(page: Page, subject: str):
    """The row of this notification, once the worker has given up on it (the list refreshes itself)."""
    row = page.locator("#delivery-rows tbody tr", has_text=subject)
    expect(row.locator(".badge")).to_have_text("Failed", timeout=20_000)
    return row


def test_retry_with_and_without_javascript(live_server, smtp_server, page: Page, browser: Browser,
                                           browser_context_args):
    page.set_default_timeout(15_000)
    server = smtp_server("plain", replies={"RCPT": "550 5.1.1 no such user"})
    complete_first_run(page, live_server)
    queue_notifications(live_server, server, 2)  # "Report 0" and "Report 1", refused for good
    page.get_by_role("link", name="Deliveries").click()
    first = failed_row(page, "Report 0")
    failed_row(page, "Report 1")
    server.handler.replies.clear()  # the recipients are accepted from now on

    # With JavaScript: htmx posts and swaps the row; the worker then delivers it.
    first.get_by_role("button", name="Retry").click()
    expect(first.locator(".badge")).not_to_have_text("Failed")
    expect(first.get_by_role("button", name="Retry")).to_have_count(0)
    expect(first.locator(".badge")).to_have_text("Sent", timeout=20_000)

    # Without JavaScript: the browser posts the row's form and returns to the filtered list.
    context = browser.new_context(**browser_context_args, java_script_enabled=False)
    plain = context.new_page()
    plain.set_default_timeout(15_000)
    plain.goto(f"{live_server.url}/auth/login")
    plain.locator("#username").fill("admin")
    plain.locator("#password").fill(PASSWORD)
    plain.locator("main form button[type=submit]").click()
    listing = f"{live_server.url}/deliveries/?status=failed"
    plain.goto(listing)
    row = plain.locator("#delivery-rows tbody tr", has_text="Report 1")
    row.get_by_role("button").click()  # named in the session's language (pt-BR in this context)
    expect(plain).to_have_url(re.compile(re.escape(listing) + "$"))
    expect(plain.locator(".flash-success")).to_contain_text(re.compile(r"#\d+"))
    expect(plain.locator("#delivery-rows tbody tr", has_text="Report 1")).to_have_count(0)  # no longer failed
    context.close()

    page.reload()  # the first page stopped refreshing itself when nothing was left on its way
    expect(page.locator("#delivery-rows tbody tr", has_text="Report 1").locator(".badge")).to_have_text(
        "Sent", timeout=20_000)
    assert len(server.handler.received) == 2  # each delivered once, after its retry
