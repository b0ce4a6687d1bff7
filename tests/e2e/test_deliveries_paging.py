"""Deliveries in chromium: keyset pages (Older / Newer / Newest) and the recipient search, swapped in by htmx with
the address bar following, against a real `smtpdesk serve` whose worker delivers to a real aiosmtpd server."""
import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import complete_first_run
from webapp import db
from webapp.models import SmtpAccount
from webapp.outbox import send_notification

pytestmark = pytest.mark.e2e


def queue_notifications(live_server, server, count: int) -> None:
    """An enabled default account on the test server and `count` notifications, written to the served database."""
    db.init_database(str(live_server.instance / "smtpdesk.db"))
    with db.database.connection_context():
        account = SmtpAccount.create(name="Relay", sender="Alerts <alerts@example.com>",
                                     reply_to="ops@example.com", return_path="bounces@example.com",
                                     confirmation_email="receipts@example.com", host=server.host, port=server.port,
                                     is_default=True)
        for n in range(count):
            send_notification(to=[f"Person {n} <person{n}@example.org>"], subject=f"Report {n}", text="Ready.",
                              account=account)


def test_older_and_newer_pages_and_the_recipient_search(live_server, smtp_server, page: Page):
    page.set_default_timeout(15_000)
    server = smtp_server("plain")
    complete_first_run(page, live_server)
    queue_notifications(live_server, server, 35)
    rows = page.locator("#delivery-rows tbody tr")

    page.get_by_role("link", name="Deliveries").click()
    expect(page.locator("#delivery-counts")).to_contain_text("35")
    expect(rows).to_have_count(30)
    expect(rows.first).to_contain_text("Report 34")  # newest first

    page.get_by_role("link", name="Older ›").click()
    expect(page).to_have_url(re.compile(r"/deliveries/\?before=\d+$"))
    expect(rows).to_have_count(5)
    expect(rows.first).to_contain_text("Report 4")
    expect(rows.last).to_contain_text("Report 0")

    page.get_by_role("link", name="‹ Newer").click()
    expect(page).to_have_url(re.compile(r"/deliveries/\?after=\d+$"))
    expect(rows).to_have_count(30)
    expect(rows.first).to_contain_text("Report 34")

    # The search matches the start of a word of a name or an address, whatever the case.
    search = page.get_by_label("Recipient")
    search.fill("PERSON7")
    search.press("Enter")
    expect(page).to_have_url(re.compile(r"recipient=PERSON7"))
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("person7@example.org")
    search.fill("example.org")
    search.press("Enter")
    expect(rows).to_have_count(30)
    expect(page.get_by_role("link", name="Older ›")).to_be_visible()

    page.go_back()  # the address bar followed each search: back is the previous one
    expect(page).to_have_url(re.compile(r"recipient=PERSON7"))
    expect(rows).to_have_count(1)
    # Browsing changed nothing; the served worker delivers them all in the meantime.
    expect(page.locator("#delivery-counts .status-sent strong")).to_have_text("35", timeout=20_000)
    assert len(server.received) == 35
