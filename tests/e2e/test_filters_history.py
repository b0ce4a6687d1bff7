"""The filter forms follow the address bar: a search loaded from its URL, or returned to with Back (from another
search on the same page or from another page), shows its terms in the filter fields, not only in the rows."""
import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import complete_first_run
from webapp import db
from webapp.models import SmtpAccount
from webapp.outbox import send_notification

pytestmark = pytest.mark.e2e


def seed(live_server, server) -> None:
    """Two accounts and a notification to each of two people, written to the served database."""
    db.init_database(str(live_server.instance / "smtpdesk.db"))
    with db.database.connection_context():
        accounts = [SmtpAccount.create(name=name, sender="Alerts <alerts@example.com>", reply_to="ops@example.com",
                                       return_path="bounces@example.com", confirmation_email="receipts@example.com",
                                       host=server.host, port=server.port, is_default=default)
                    for name, default in (("Notifications relay", True), ("Reports relay", False))]
        for person in ("ana", "bruno"):
            send_notification(to=[f"{person}@example.org"], subject=f"For {person}", text="Ready.",
                              account=accounts[0])


def test_the_report_and_deliveries_filters_show_the_search_in_the_url(live_server, smtp_server, page: Page):
    page.set_default_timeout(15_000)
    complete_first_run(page, live_server)
    seed(live_server, smtp_server("plain"))
    name = page.locator("#account-filters [name=name]")
    account_rows = page.locator("#account-rows tbody tr")

    # Loaded directly.
    page.goto(f"{live_server.url}/accounts/?name=Notif")
    expect(name).to_have_value("Notif")
    expect(account_rows).to_have_count(1)

    # Two searches, then Back to the first: htmx restores the page, and the field says what the rows show.
    page.goto(f"{live_server.url}/accounts/")
    name.fill("Notif")
    expect(page).to_have_url(re.compile(r"\?name=Notif$"))
    expect(account_rows).to_have_count(1)
    name.fill("Reports")
    expect(page).to_have_url(re.compile(r"\?name=Reports$"))
    expect(account_rows.first).to_contain_text("Reports relay")
    page.go_back()
    expect(page).to_have_url(re.compile(r"\?name=Notif$"))
    expect(account_rows).to_have_count(1)
    expect(account_rows.first).to_contain_text("Notifications relay")
    expect(name).to_have_value("Notif")

    # Back from another page.
    page.get_by_role("link", name="Deliveries").click()
    expect(page).to_have_url(re.compile(r"/deliveries/$"))
    page.go_back()
    expect(page).to_have_url(re.compile(r"\?name=Notif$"))
    expect(name).to_have_value("Notif")
    expect(account_rows).to_have_count(1)

    # The deliveries filters do the same.
    recipient = page.locator("#delivery-filters [name=recipient]")
    delivery_rows = page.locator("#delivery-rows tbody tr")
    page.goto(f"{live_server.url}/deliveries/?recipient=ana")
    expect(recipient).to_have_value("ana")
    expect(delivery_rows).to_have_count(1)
    recipient.fill("ana")
    recipient.press("Enter")
    recipient.fill("bruno")
    recipient.press("Enter")
    expect(page).to_have_url(re.compile(r"recipient=bruno"))
    expect(delivery_rows.first).to_contain_text("bruno@example.org")
    page.go_back()
    expect(page).to_have_url(re.compile(r"recipient=ana$"))
    expect(delivery_rows).to_have_count(1)
    expect(recipient).to_have_value("ana")
    page.get_by_role("link", name="SMTP accounts").click()
    page.go_back()
    expect(page).to_have_url(re.compile(r"recipient=ana$"))
    expect(recipient).to_have_value("ana")
