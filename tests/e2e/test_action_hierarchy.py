"""One hierarchy of actions on every form page, in a real browser: the primary action is filled, first and as wide
as its words; a destructive action sits apart below the form, outlined, never wider or bolder than the primary."""
import re

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"

STYLE = """button => {
  const style = getComputedStyle(button), box = button.getBoundingClientRect();
  return {width: box.width, top: box.top, filled: style.backgroundColor !== 'rgba(0, 0, 0, 0)'
          && style.backgroundColor !== 'transparent'};
}"""


@pytest.fixture(scope="module")
def hierarchy_admin(live_server) -> str:
    live_server.cli("users", "create", "hierarchy", "--password", PASSWORD)
    return "hierarchy"


def test_every_form_page_puts_its_primary_action_first_and_its_destructive_one_apart(live_server, hierarchy_admin,
                                                                                    page: Page):
    base = live_server.url
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{base}/auth/login")
    page.locator("#username").fill(hierarchy_admin)
    page.locator("#password").fill(PASSWORD)
    page.locator("main form button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/accounts/$"))
    for name in ("Primeira", "Segunda"):  # the second is not the default, so it may be deleted
        page.goto(f"{base}/accounts/new")
        page.get_by_label("Nome da conta").fill(name)
        page.get_by_label("E-mail do Remetente").fill("ops@example.com")
        page.get_by_label("E-mail de resposta (Reply-To)").fill("reply@example.com")
        page.get_by_label("E-mail de retorno (Return-Path)").fill("bounces@example.com")
        page.get_by_label("E-mail de confirmação").fill("receipts@example.com")
        page.get_by_label("Host SMTP").fill("127.0.0.1")
        page.get_by_label("Porta", exact=True).fill("2525")
        page.get_by_role("button", name="Enviar").click()
        expect(page).to_have_url(re.compile(r"/accounts/$"))

    pages = ["/accounts/new", "/credentials/new", "/connectors/new", "/users/new", "/schedules/new"]
    edit = base + page.locator("#account-rows tbody tr", has_text="Segunda").locator('a[href*="/edit"]').get_attribute(
        "href")
    for path in [*pages, edit]:
        page.goto(path if path.startswith("http") else f"{base}{path}")
        primary = page.locator("main form :is(.form-actions, .actions) button[type=submit]").first
        seen = primary.evaluate(STYLE)
        viewport = page.viewport_size["width"]
        assert seen["filled"], f"{path}: the primary action is filled"
        assert seen["width"] < viewport / 3, f"{path}: the primary action is as wide as its words, {seen}"
        danger = page.locator(".danger-zone button")
        if path == edit:
            risky = danger.first.evaluate(STYLE)
            assert not risky["filled"], "the destructive action is outlined, not filled"
            assert risky["width"] <= seen["width"] * 1.5 and risky["top"] > seen["top"], (seen, risky)
