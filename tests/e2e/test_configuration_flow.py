"""The issue's proof, in a real browser against a fresh server: from the first-run setup to a filtered CSV.

One admin sets smtpdesk up from nothing: a credential, a SOCKS5 connector, a plain account and a TLS account
that logs in with the credential through the connector; then moves the default, filters the report and
downloads it. Along the way every page's HTML is kept, to prove the two secrets typed never come back.
It also writes the README's screenshots (in English) into docs/screenshots/.
"""
import csv
import io
import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import complete_first_run

# The one browser flow on PostgreSQL too: the whole served app, from its first start on an empty database to the CSV.
pytestmark = [pytest.mark.e2e, pytest.mark.engines("sqlite", "postgresql")]

expect.set_options(timeout=10_000)

CREDENTIAL_SECRET = "Cred-Secret-7fK3q9Zt"
PROXY_PASSWORD = "Proxy-Pass-2Lw8XmRv"
# `make screenshots` sets this to docs/screenshots; ordinary runs leave the committed pictures alone.
SCREENSHOTS = os.environ.get("SMTPDESK_SCREENSHOTS")


class Visited:
    """The HTML of every page state the test looked at, to search for secrets at the end."""

    def __init__(self, page: Page):
        self.page = page
        self.html: list[tuple[str, str]] = []

    def keep(self) -> None:
        self.html.append((self.page.url, self.page.content()))


def yes_no(page: Page, question: str, answer: str) -> None:
    """Answer a yes/no question: a radio group whose legend is the question."""
    page.get_by_role("group", name=question).get_by_label(answer, exact=True).check()


def group(page: Page, name: str):
    """A fieldset by its legend, found even while hidden (so that to_be_hidden() proves something)."""
    return page.get_by_role("group", name=name, include_hidden=True)


def mark_page(page: Page, value: str) -> None:
    """Leave a marker on the window: it survives htmx swaps and disappears on any page load."""
    page.evaluate("value => { window.__smtpdeskMarker = value; }", value)


def expect_same_page(page: Page, value: str) -> None:
    """Fail if the page was loaded again since mark_page(page, value)."""
    assert page.evaluate("() => window.__smtpdeskMarker") == value, "the page was reloaded"


def screenshot(page: Page, name: str, fit_table: bool = False) -> None:
    """Save a full-page screenshot for the README; fit_table widens the window to show a wide report whole, and an
    open dialog, which scrolls inside the window, gets a window as tall as its content."""
    if not SCREENSHOTS:
        return
    Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
    path = Path(SCREENSHOTS) / name
    page.evaluate("() => document.activeElement && document.activeElement.blur()")  # no focus ring in the picture
    viewport = page.viewport_size
    size = dict(viewport)
    if fit_table:
        width = page.evaluate("() => document.querySelector('table.report').scrollWidth")
        size["width"] = min(max(viewport["width"], width + 80), 1920)
    dialog = page.evaluate("() => document.querySelector('dialog[open] > article')?.scrollHeight || 0")
    if dialog:
        size["height"] = min(max(viewport["height"], dialog + 80), 2400)
    page.set_viewport_size(size)
    # Not halfway through a transition (a details chevron turning, a dialog sliding in).
    page.wait_for_function("() => document.getAnimations().every(a => a.playState !== 'running')")
    try:
        page.screenshot(path=path, full_page=True)
    finally:
        page.set_viewport_size(viewport)
    assert path.stat().st_size < 300_000, f"{name} is {path.stat().st_size} bytes"


def phone_screenshot(page: Page, name: str) -> None:
    """The page as a phone shows it (390×844), its navigation menu open, for the README; the window is restored."""
    if not SCREENSHOTS:
        return
    viewport = page.viewport_size
    page.set_viewport_size({"width": 390, "height": 844})
    menu = page.locator("header nav summary", has_text="Menu")
    try:
        menu.click()
        expect(page.locator("header nav .nav-links")).to_be_visible()
        screenshot(page, name)
        menu.click()
    finally:
        page.set_viewport_size(viewport)


def test_configure_smtpdesk_from_first_run_to_filtered_csv(live_server, page: Page):
    """Setup, English, credential, connector, two accounts, default moved, filter, CSV; no secret ever shown."""
    page.set_default_timeout(10_000)
    seen = Visited(page)
    base = live_server.url

    # 1-2. First-run setup with the code the server printed, then English from the nav's language switch.
    complete_first_run(page, live_server)
    expect(page.get_by_role("heading", name="SMTP Configuration")).to_be_visible()
    expect(page.get_by_text("No SMTP account yet.")).to_be_visible()

    # 3. A credential, allowed on smtp.example.com and any host under example.net.
    page.get_by_role("link", name="Credentials").click()
    page.get_by_role("button", name="Add").click()
    expect(page.get_by_role("heading", name="Add credential")).to_be_visible()
    page.get_by_label("Name", exact=True).fill("Billing login")
    page.get_by_label("Username", exact=True).fill("billing@example.net")
    page.get_by_label("Secret", exact=True).fill(CREDENTIAL_SECRET)
    page.get_by_label("Allowed hosts").fill("smtp.example.com\n*.example.net")
    seen.keep()
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/credentials/$"))
    row = page.locator("#credential-rows tr", has_text="Billing login")
    expect(row).to_contain_text("secret set")
    expect(row).to_contain_text("*.example.net")
    seen.keep()

    # 4. A SOCKS5 connector with a login.
    page.get_by_role("link", name="Network connectors").click()
    page.get_by_role("button", name="Add").click()
    expect(page.get_by_role("heading", name="Add connector")).to_be_visible()
    page.get_by_label("Name", exact=True).fill("Office proxy")
    page.get_by_label("Type").select_option("socks5")
    page.get_by_label("Host").fill("proxy.example.com")
    page.get_by_label("Port").fill("1080")
    page.get_by_label("Username").fill("proxyuser")
    page.get_by_label("Password").fill(PROXY_PASSWORD)
    seen.keep()
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/connectors/$"))
    row = page.locator("#connector-rows tr", has_text="Office proxy")
    expect(row).to_contain_text("SOCKS5")
    expect(row).to_contain_text("proxy.example.com:1080")
    expect(row).to_contain_text("password set")
    seen.keep()

    # 5a. The first account, plain. Dependent questions stay hidden while their yes/no is No.
    page.get_by_role("link", name="SMTP accounts").click()
    page.get_by_role("button", name="Add").click()
    expect(page.get_by_role("heading", name="Add SMTP account")).to_be_visible()
    port = page.get_by_label("Port")
    expect(group(page, "Secure connection type (SSL / TLS)")).to_be_hidden()
    expect(group(page, "Ignore certificate error")).to_be_hidden()
    expect(page.get_by_label("Credential for authentication")).to_be_hidden()
    expect(page.get_by_label("Network connector")).to_be_hidden()
    expect(port).to_have_attribute("placeholder", "25")

    page.get_by_label("Account name").fill("Alerts relay")
    page.get_by_label("Sender e-mail").fill("Alerts <alerts@example.com>")
    page.get_by_label("Reply-To e-mail").fill("ops@example.com")
    page.get_by_label("Return-Path e-mail").fill("bounces@example.com")
    page.get_by_label("Confirmation e-mail").fill("receipts@example.com")
    page.get_by_label("SMTP host").fill("smtp.example.com")
    yes_no(page, "Use secure connection?", "No")

    # A wrong sender comes back beside its field, in place (htmx 422), and nothing is saved.
    page.get_by_label("Sender e-mail").fill("alerts at example dot com")
    mark_page(page, "account form")
    page.get_by_role("button", name="Submit").click()
    sender = page.get_by_label("Sender e-mail")
    expect(sender).to_have_attribute("aria-invalid", "true")
    expect(sender).to_have_accessible_description(re.compile(r"Enter a valid e-mail address"))
    expect(page.locator("#sender-field .field-error")).to_contain_text("Enter a valid e-mail address")
    expect(page.get_by_role("alert")).to_contain_text("Nothing was saved.")
    expect_same_page(page, "account form")
    expect(page).to_have_url(re.compile(r"/accounts/new"))
    expect(page.get_by_label("Account name")).to_have_value("Alerts relay")  # what was typed is kept
    assert "No SMTP account yet." in page.request.get(f"{base}/accounts/").text()
    seen.keep()

    page.get_by_label("Sender e-mail").fill("Alerts <alerts@example.com>")
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/accounts/$"))
    expect(page.get_by_text("Account “Alerts relay” created.")).to_be_visible()
    seen.keep()

    # 5b. The second account: TLS, logging in with the credential, through the connector.
    page.get_by_role("button", name="Add").click()
    expect(page.get_by_role("heading", name="Add SMTP account")).to_be_visible()
    page.get_by_label("Account name").fill("Billing mailer")
    page.get_by_label("Sender e-mail").fill("Billing <billing@example.net>")
    page.get_by_label("Reply-To e-mail").fill("billing@example.net")
    page.get_by_label("Return-Path e-mail").fill("bounces@example.net")
    page.get_by_label("Confirmation e-mail").fill("receipts@example.net")
    page.get_by_label("SMTP host").fill("mail.example.net")

    expect(port).to_have_attribute("placeholder", "25")
    yes_no(page, "Use secure connection?", "Yes")
    expect(group(page, "Secure connection type (SSL / TLS)")).to_be_visible()
    expect(group(page, "Ignore certificate error")).to_be_visible()
    expect(port).to_have_attribute("placeholder", "587")  # TLS (STARTTLS) is preselected
    yes_no(page, "Secure connection type (SSL / TLS)", "SSL")
    expect(port).to_have_attribute("placeholder", "465")
    yes_no(page, "Secure connection type (SSL / TLS)", "TLS")
    expect(port).to_have_attribute("placeholder", "587")

    credential = page.get_by_label("Credential for authentication")
    expect(credential).to_be_hidden()
    yes_no(page, "Use authentication?", "Yes")
    expect(credential).to_be_visible()
    credential.select_option(label="Billing login")

    connector = page.get_by_label("Network connector")
    expect(connector).to_be_hidden()
    yes_no(page, "Use network connector?", "Yes")
    expect(connector).to_be_visible()
    yes_no(page, "Use network connector?", "No")
    expect(connector).to_be_hidden()
    yes_no(page, "Use network connector?", "Yes")
    connector.select_option(label="Office proxy")
    page.get_by_role("heading", name="SMTP server settings").scroll_into_view_if_needed()
    screenshot(page, "account-form.png")
    seen.keep()

    mark_page(page, "second account")
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/accounts/$"))
    expect(page.get_by_text("Account “Billing mailer” created.")).to_be_visible()
    seen.keep()

    # 6. The default moves to the second account from its row menu, without a page load.
    rows = page.locator("#account-rows tbody tr")
    badges = page.locator("#account-rows tbody .badge-default")
    first = rows.filter(has_text="Alerts relay")
    second = rows.filter(has_text="Billing mailer")
    expect(rows).to_have_count(2)
    expect(page.get_by_role("status").filter(has_text="2 accounts")).to_be_visible()
    expect(badges).to_have_count(1)
    expect(first.locator(".badge-default")).to_have_text("Default")
    expect(second).to_contain_text("TLS")

    mark_page(page, "report")
    second.get_by_text("Actions").click()
    page.once("dialog", lambda dialog: dialog.accept())  # it asks first: every notification would go through it
    second.get_by_role("button", name="Make default").click()
    expect(second.locator(".badge-default")).to_have_text("Default")
    expect(first.locator(".badge-default")).to_have_count(0)
    expect(badges).to_have_count(1)
    expect_same_page(page, "report")
    seen.keep()
    page.reload()  # the report as a newcomer sees it (no flash), and proof the change was saved
    expect(second.locator(".badge-default")).to_have_text("Default")
    expect(badges).to_have_count(1)
    screenshot(page, "accounts-report.png", fit_table=True)
    phone_screenshot(page, "accounts-report-phone.png")
    seen.keep()

    # 7. Filtering by name updates the address bar; the filtered URL reloads to the same rows.
    mark_page(page, "filter")
    filters = page.get_by_role("search", name="Search filters")
    filters.get_by_label("Name", exact=True).fill("billing")
    expect(page).to_have_url(re.compile(r"/accounts/\?name=billing$"))
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Billing mailer")
    expect(page.get_by_role("status").filter(has_text="1 account · filtered")).to_be_visible()
    expect_same_page(page, "filter")
    seen.keep()
    page.reload()
    expect(filters.get_by_label("Name", exact=True)).to_have_value("billing")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Billing mailer")
    seen.keep()

    # 8. The CSV holds the filtered account with its settings, by name, and no secret.
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Export CSV").click()
    download = download_info.value
    assert download.suggested_filename == "smtp-accounts.csv"
    text = Path(download.path()).read_bytes().decode("utf-8-sig")
    table = list(csv.reader(io.StringIO(text)))
    header, data = table[0], table[1:]
    assert header[:3] == ["ID", "Name", "Sender e-mail"]
    assert len(data) == 1, data
    record = dict(zip(header, data[0]))
    assert record["Name"] == "Billing mailer"
    assert record["Sender e-mail"] == "Billing <billing@example.net>"
    assert record["Default"] == "Yes"
    assert record["Secure connection"] == "TLS"
    assert record["SMTP host"] == "mail.example.net"
    assert record["Port"] == "587"
    assert record["Use authentication?"] == "Yes"
    assert record["Credential for authentication"] == "Billing login"
    assert record["Use network connector?"] == "Yes"
    assert record["Network connector"] == "Office proxy"
    assert "Alerts relay" not in text

    # The lists, now that an account uses the credential and the connector; and their edit forms.
    page.get_by_role("link", name="Credentials").click()
    expect(page.locator("#credential-rows tr", has_text="Billing login")).to_contain_text("Billing mailer")
    screenshot(page, "credentials.png")
    seen.keep()
    row = page.locator("#credential-rows tr", has_text="Billing login")
    row.get_by_text("Actions").click()
    row.get_by_role("link", name="Edit").click()
    expect(page.get_by_text("Secret set — enter a new one to change it.")).to_be_visible()
    seen.keep()

    page.get_by_role("link", name="Network connectors").click()
    expect(page.locator("#connector-rows tr", has_text="Office proxy")).to_contain_text("Billing mailer")
    screenshot(page, "connectors.png")
    seen.keep()
    row = page.locator("#connector-rows tr", has_text="Office proxy")
    row.get_by_text("Actions").click()
    row.get_by_role("link", name="Edit").click()
    expect(page.get_by_text("Password set — enter a new one to change it.")).to_be_visible()
    seen.keep()

    # 9. Neither secret came back: not in any page or fragment the browser showed, not in the CSV.
    # (page.content() serialises the DOM: a value typed into an input is not in it, a value="..." would be.)
    for secret in (CREDENTIAL_SECRET, PROXY_PASSWORD):
        assert secret not in text
        for url, html in seen.html:
            assert secret not in html, f"the secret appears in the HTML of {url}"
    assert len(seen.html) >= 15
