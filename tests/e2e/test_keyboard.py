"""Keyboard and console: the report, its row menus and the Test Email dialog used with the keyboard alone, in a real
browser against a fresh server and a real SMTP server; skip link, focus rings, favicon and a CSP-clean console."""
import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import add_account, sign_in

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def keyboard_admin(live_server) -> str:
    return live_server.add_admin("kbadmin")


def test_a_row_menu_and_the_test_dialog_work_from_the_keyboard(live_server, keyboard_admin, page: Page,
                                                              smtp_server):
    page.set_default_timeout(15_000)
    base = live_server.url
    server = smtp_server("plain")
    sign_in(page, base, keyboard_admin)
    add_account(page, base, "Teclado", server.host, server.port)
    row = page.locator("#account-rows tbody tr", has_text="Teclado")
    menu = row.locator("details.dropdown")
    summary = menu.locator("summary")

    # The menu opens with Enter, the arrows walk its items, Escape closes it and leaves the focus on Ações.
    summary.focus()
    page.keyboard.press("Enter")
    expect(menu).to_have_attribute("open", "")
    page.keyboard.press("ArrowDown")
    expect(row.get_by_role("link", name="Editar")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(row.get_by_role("button", name="Testar configuração")).to_be_focused()
    page.keyboard.press("ArrowUp")
    expect(row.get_by_role("link", name="Editar")).to_be_focused()
    page.keyboard.press("Escape")
    expect(menu).not_to_have_attribute("open", "")
    expect(summary).to_be_focused()

    # Testar configuração opens a modal dialog with the focus in "Enviar para"; Escape closes it, back to Ações.
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    expect(row.get_by_role("button", name="Testar configuração")).to_be_focused()
    page.keyboard.press("Enter")
    dialog = page.locator("dialog#test-dialog[open]")
    expect(dialog).to_be_visible()
    expect(page.locator("dialog#test-dialog:modal")).to_have_count(1)
    expect(dialog.get_by_label("Enviar para")).to_be_focused()
    expect(menu).not_to_have_attribute("open", "")
    page.keyboard.press("Escape")
    expect(page.locator("dialog#test-dialog[open]")).to_have_count(0)
    expect(summary).to_be_focused()

    # Again, and this time a real send: the focus lands on the outcome, which says the server took the message.
    page.keyboard.press("Enter")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    expect(dialog.get_by_label("Enviar para")).to_be_focused()
    page.keyboard.type("rita@example.org")
    page.keyboard.press("Enter")
    headline = page.locator("dialog#test-dialog .test-result .test-headline")
    expect(headline).to_be_focused()
    expect(headline).to_contain_text("Enviada")
    expect(page.locator("dialog#test-dialog:modal")).to_have_count(1)
    assert [message.rcpt_tos for message in server.received] == [["rita@example.org"]]
    # The page behind a modal dialog is out of reach: Tab never leaves the dialog for the report.
    for _ in range(12):
        page.keyboard.press("Tab")
        assert page.evaluate("!document.activeElement.closest('main') || !!document.activeElement.closest('dialog')")

    # Escape closes the dialog that came back with the outcome too; open it again to try the close button.
    page.keyboard.press("Escape")
    expect(page.locator("dialog#test-dialog[open]")).to_have_count(0)
    expect(summary).to_be_focused()
    page.keyboard.press("Enter")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    expect(dialog.get_by_label("Enviar para")).to_be_focused()
    page.keyboard.press("Enter")  # nothing typed: the field error, and the dialog is still modal
    expect(page.locator("dialog#test-dialog .field-error")).to_be_visible()
    expect(page.locator("dialog#test-dialog:modal")).to_have_count(1)

    # The close button closes it too, and the focus goes back to the row's Ações (the row itself was replaced
    # with its new health meanwhile).
    page.locator("dialog#test-dialog header .dialog-close button").focus()
    page.keyboard.press("Enter")
    expect(page.locator("dialog#test-dialog[open]")).to_have_count(0)
    expect(row.locator("td.health")).to_contain_text("OK")
    expect(row.locator("details.dropdown summary")).to_be_focused()
    expect(row.locator("details.dropdown")).not_to_have_attribute("open", "")


PAGES = ["/accounts/", "/accounts/new", "/credentials/", "/credentials/new", "/connectors/", "/connectors/new",
         "/deliveries/", "/audit/", "/users/", "/tokens/", "/settings/"]


def test_every_page_starts_with_a_skip_link_to_the_main_content(live_server, keyboard_admin, page: Page):
    page.set_default_timeout(10_000)
    base = live_server.url
    page.goto(f"{base}/auth/login")
    pages = ["/auth/login"]
    sign_in(page, base, keyboard_admin)
    for path in pages + PAGES:
        if path == "/auth/login":
            page.context.clear_cookies()
        page.goto(base + path)
        skip = page.get_by_role("link", name="Pular para o conteúdo principal")
        expect(skip).not_to_be_in_viewport()
        assert skip.evaluate("e => e === document.querySelector('a[href], button, input:not([type=hidden]), select')")
        if page.locator("[autofocus]").count():  # the login page starts in its first field, after the skip link
            skip.focus()
        else:
            page.keyboard.press("Tab")
        expect(skip, path).to_be_focused()
        expect(skip, path).to_be_in_viewport()
        page.keyboard.press("Enter")
        expect(page.locator("main#main"), path).to_be_focused()
        if path == "/auth/login":
            sign_in(page, base, keyboard_admin)
    # From the report, the first Tab after the skip link reaches the page's own controls, not the navigation.
    page.goto(f"{base}/accounts/")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    assert page.evaluate("!!document.activeElement.closest('main')")


# Contrast of the focused element's outline against what is behind it (WCAG 2.1 relative luminance).
RING = """() => {
    const e = document.activeElement;
    const s = getComputedStyle(e);
    const rgb = c => (c.match(/[\\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => [r, g, b].map(v => v / 255).map(v => v <= 0.03928 ? v / 12.92
        : Math.pow((v + 0.055) / 1.055, 2.4)).reduce((a, v, i) => a + v * [0.2126, 0.7152, 0.0722][i], 0);
    let back = e.parentElement, bg = [255, 255, 255, 1];
    while (back) {
        const c = rgb(getComputedStyle(back).backgroundColor);
        if (c.length === 3 || (c.length === 4 && c[3] === 1)) { bg = c; break; }
        back = back.parentElement;
    }
    const ring = rgb(s.outlineColor);
    const [hi, lo] = [lum(ring), lum(bg)].sort((a, b) => b - a);
    const label = (e.textContent || e.name || '').trim().slice(0, 30);
    return {what: e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + ' ' + label,
            style: s.outlineStyle, width: parseFloat(s.outlineWidth), alpha: ring.length === 4 ? ring[3] : 1,
            contrast: (hi + 0.05) / (lo + 0.05)};
}"""


def test_every_control_shows_a_solid_focus_ring(live_server, keyboard_admin, page: Page):
    page.set_default_timeout(10_000)
    sign_in(page, live_server.url, keyboard_admin)
    weak = []
    for scheme, path in [("light", "/accounts/"), ("light", "/accounts/new"), ("light", "/credentials/new"),
                         ("light", "/connectors/new"), ("light", "/deliveries/"), ("dark", "/accounts/"),
                         ("dark", "/accounts/new")]:
        page.emulate_media(color_scheme=scheme)
        page.goto(live_server.url + path)
        seen = set()
        for _ in range(60):
            page.keyboard.press("Tab")
            ring = page.evaluate(RING)
            if ring["what"] in seen or ring["what"].startswith("body"):  # round the page, or out to the browser
                break
            seen.add(ring["what"])
            if ring["style"] == "none" or ring["width"] < 2 or ring["alpha"] < 1 or ring["contrast"] < 3:
                weak.append((scheme, path, ring))
        if path == "/accounts/":  # the search button, which had no focus mark at all
            assert "button Pesquisar" in seen
    assert not weak, "\n".join(map(str, weak))


def test_unchecked_radios_are_visible_in_light_and_dark(live_server, keyboard_admin, page: Page):
    sign_in(page, live_server.url, keyboard_admin)
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.goto(f"{live_server.url}/accounts/new")
        radio = page.get_by_role("group", name="Usar conexão segura?").get_by_label("Sim")
        expect(radio).not_to_be_checked()
        contrast = radio.evaluate("""e => {
            const rgb = c => (c.match(/[\\d.]+/g) || []).map(Number);
            const lum = c => c.slice(0, 3).map(v => v / 255)
                .map(v => v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4))
                .reduce((a, v, i) => a + v * [0.2126, 0.7152, 0.0722][i], 0);
            let back = e.parentElement, bg = [255, 255, 255];
            for (; back; back = back.parentElement) {
                const c = rgb(getComputedStyle(back).backgroundColor);
                if (c.length === 3 || c[3] === 1) { bg = c; break; }
            }
            const [hi, lo] = [lum(rgb(getComputedStyle(e).borderTopColor)), lum(bg)].sort((a, b) => b - a);
            return (hi + 0.05) / (lo + 0.05);
        }""")
        assert contrast >= 3, (scheme, contrast)  # WCAG 2.1 non-text contrast


def test_htmx_swaps_leave_no_csp_violation_and_the_page_has_its_favicon(live_server, keyboard_admin, page: Page,
                                                                         smtp_server):
    page.set_default_timeout(15_000)
    # htmx logs the searches it cancels itself (hx-sync) as errors too: only the browser's complaints count here.
    problems = []
    page.on("console", lambda message: problems.append(message.text)
            if re.search(r"Content Security Policy|Refused to|Failed to load resource", message.text) else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.add_init_script("window.violations = []; document.addEventListener('securitypolicyviolation',"
                         " e => window.violations.push(e.violatedDirective + ' ' + e.blockedURI));")
    base = live_server.url
    sign_in(page, base, keyboard_admin)
    server = smtp_server("plain")
    add_account(page, base, "Console", server.host, server.port)
    page.goto(f"{base}/accounts/")
    # A search (rows swapped), a sort, a row action, the test dialog opened and sent: all htmx swaps.
    page.locator("#account-filters").get_by_label("Nome").fill("Cons")
    expect(page).to_have_url(re.compile(r"name=Cons"))
    page.locator("#account-rows th a.sort").first.click()
    expect(page).to_have_url(re.compile(r"sort="))
    row = page.locator("#account-rows tbody tr", has_text="Console")
    row.locator("summary").click()
    row.get_by_role("button", name="Testar configuração").click()
    dialog = page.locator("dialog#test-dialog[open]")
    dialog.get_by_label("Enviar para").fill("rita@example.org")
    dialog.get_by_role("button", name="Enviar", exact=True).click()
    expect(page.locator("dialog#test-dialog .test-result")).to_contain_text("Enviada")
    expect(page.locator("dialog#test-dialog .test-headline")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("dialog#test-dialog[open]")).to_have_count(0)
    icon = page.locator("link[rel=icon]").get_attribute("href")
    response = page.request.get(base + icon)
    assert response.ok and response.headers["content-type"].startswith("image/svg+xml")
    assert page.evaluate("window.violations") == []
    assert not problems, "\n".join(problems)


def test_the_row_menu_lines_up_its_items_and_its_chevron(live_server, keyboard_admin, page: Page, smtp_server):
    page.set_default_timeout(10_000)
    sign_in(page, live_server.url, keyboard_admin)
    server = smtp_server("plain")
    add_account(page, live_server.url, "Alinhada", server.host, server.port)
    row = page.locator("#account-rows tbody tr", has_text="Alinhada")
    row.locator("summary").click()
    # Where each item's text starts: the link (Editar) and the buttons alike.
    starts = row.locator("details ul").evaluate("""u => Array.from(u.querySelectorAll('a, button')).map(e => {
        const text = document.createRange(); text.selectNodeContents(e);
        return Math.round(text.getBoundingClientRect().left);
    })""")
    assert len(starts) == 4 and len(set(starts)) == 1, starts
    # "Ações" sits in the middle of its box, where the chevron is centred.
    offset = row.locator("summary").evaluate("""s => {
        const text = document.createRange(); text.selectNodeContents(s);
        const t = text.getBoundingClientRect(), box = s.getBoundingClientRect();
        return Math.abs((t.top + t.bottom) / 2 - (box.top + box.bottom) / 2);
    }""")
    assert offset <= 1.5
