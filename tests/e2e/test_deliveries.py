"""The issue's browser proof: a notification sent through the HTTP API appears in Deliveries and turns to "sent".

Against a real `smtpdesk serve` (web + its outbox worker) whose default account points at a real aiosmtpd server.
The admin sets up, adds the account and creates an API token in the UI; a program then calls the API with that
token; the Deliveries page shows the notification on its way and, without being reloaded, delivered.
"""
import json
import re
import urllib.request

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import complete_first_run
from tests.support.outbox import hold_data

pytestmark = pytest.mark.e2e



def call_api(base: str, token: str, body: dict) -> dict:
    request = urllib.request.Request(f"{base}/api/v1/notifications", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202
        return json.loads(response.read())


def test_a_notification_sent_through_the_api_appears_in_deliveries_and_turns_to_sent(
        live_server, smtp_server, page: Page):
    page.set_default_timeout(15_000)
    # The relay holds the message's reply until the page has shown it on its way (a fixed stall could end before a
    # slow browser has looked); the worker finishes it once released.
    server = smtp_server("plain")
    held = hold_data(server)
    base = live_server.url

    complete_first_run(page, live_server)

    # The account the notification goes through: the first one, so the default.
    page.get_by_role("button", name="Add").click()
    page.get_by_label("Account name").fill("Test relay")
    page.get_by_label("Sender e-mail").fill("Alerts <alerts@example.com>")
    page.get_by_label("Reply-To e-mail").fill("ops@example.com")
    page.get_by_label("Return-Path e-mail").fill("bounces@example.com")
    page.get_by_label("Confirmation e-mail").fill("receipts@example.com")
    page.get_by_label("SMTP host").fill(server.host)
    page.get_by_role("group", name="Use secure connection?").get_by_label("No", exact=True).check()
    page.get_by_label("Port").fill(str(server.port))
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_text("“Test relay” is the default account")).to_be_visible()

    # An API token, shown once.
    page.get_by_role("link", name="API tokens").click()
    expect(page.get_by_text("No API token yet.")).to_be_visible()
    page.get_by_role("button", name="Add").click()
    page.get_by_label("Name").fill("CI pipeline")
    page.get_by_role("button", name="Create token").click()
    token_box = page.get_by_role("textbox", name="Token")
    expect(token_box).to_have_value(re.compile(r"^smtpdesk_"))
    token = token_box.input_value()
    page.get_by_role("button", name="Done").click()
    expect(page.locator("#token-rows")).to_contain_text("CI pipeline")
    expect(page.locator("#token-rows")).not_to_contain_text(token)

    # Deliveries, empty; then another system sends a notification through the API.
    page.get_by_role("link", name="Deliveries").click()
    expect(page.get_by_role("heading", name="Deliveries")).to_be_visible()
    expect(page.get_by_text("No notification yet.")).to_be_visible()
    sent = call_api(base, token, {"to": "oncall@example.com", "subject": "Build 1234 passed",
                                  "text": "All green."})

    page.reload()
    row = page.locator(f"#notification-{sent['id']}")
    expect(row).to_contain_text("Build 1234 passed")
    expect(row).to_contain_text("oncall@example.com")
    expect(row).to_contain_text(re.compile(r"Queued|Sending"))
    expect(page.locator("#delivery-counts")).to_have_attribute("hx-trigger", "every 3s")
    held.release()

    # No reload from here: the counts refresh themselves and tell the rows to follow.
    page.evaluate("() => { window.__notReloaded = true; }")
    expect(row.locator(".badge")).to_have_text("Sent", timeout=20_000)
    expect(row).to_contain_text("250")
    expect(page.locator("#delivery-counts")).not_to_have_attribute("hx-trigger", "every 3s")
    assert page.evaluate("() => window.__notReloaded") is True
    assert len(server.received) == 1 and server.received[0].rcpt_tos == ["oncall@example.com"]

    # The detail: the attempt and the headers that went out.
    row.get_by_role("link", name="Build 1234 passed").click()
    expect(page.get_by_role("heading", name=f"Notification #{sent['id']}")).to_be_visible()
    expect(page.locator("table.attempts")).to_contain_text("delivered")
    expect(page.locator("pre.headers-sent")).to_contain_text("Subject: Build 1234 passed")
    expect(page.get_by_text("CI pipeline")).to_be_visible()  # sent by that token
