"""One hierarchy of actions on every form page, in a real browser: the primary action is filled, first and as wide
as its words; a destructive action sits apart below the form, outlined, never wider or bolder than the primary."""

import pytest
from playwright.sync_api import Page

from tests.e2e.conftest import add_account, sign_in

pytestmark = pytest.mark.e2e


STYLE = """button => {
  const style = getComputedStyle(button), box = button.getBoundingClientRect();
  return {width: box.width, top: box.top, filled: style.backgroundColor !== 'rgba(0, 0, 0, 0)'
          && style.backgroundColor !== 'transparent'};
}"""


@pytest.fixture(scope="module")
def hierarchy_admin(live_server) -> str:
    return live_server.add_admin("hierarchy")


def test_every_form_page_puts_its_primary_action_first_and_its_destructive_one_apart(live_server, hierarchy_admin,
                                                                                    page: Page):
    base = live_server.url
    page.set_viewport_size({"width": 1366, "height": 768})
    sign_in(page, base, hierarchy_admin)
    for name in ("Primeira", "Segunda"):  # the second is not the default, so it may be deleted
        add_account(page, base, name, "127.0.0.1", 2525)

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
