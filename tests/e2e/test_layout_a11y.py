"""Every screen fits a laptop (1366×768) and a phone (390×844), and axe-core finds no serious or critical WCAG 2.1 AA
violation on any of them, in every state: empty, filled with realistic accounts, validation errors, the test dialog
open and after a real send, disabled rows, an account that ignores certificate errors, the print view.

axe-core is vendored for the tests only (tests/e2e/vendor/, `make vendor`) and evaluated in the page.
"""
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import INK, sign_in

pytestmark = pytest.mark.e2e

expect.set_options(timeout=10_000)

ADMIN = "layoutadmin"
AXE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text()
VIEWPORTS = {"laptop": {"width": 1366, "height": 768}, "phone": {"width": 390, "height": 844}}
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]

# Wider than the viewport; or an Ações menu of a row outside the viewport, clipped by its scrolling table, or on a
# see-through background that lets the cells scrolling under it show.
LAYOUT_PROBLEMS = """() => {
  const problems = [];
  const width = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth > width) {
    problems.push(`page is ${document.documentElement.scrollWidth}px wide in a ${width}px viewport`);
  }
  for (const cell of document.querySelectorAll('td.actions-col')) {
    const row = cell.closest('tr').innerText.split('\\t')[0].trim();
    // A row menu's summary, or the row's own button or link (Retry, Edit) where it has no menu.
    const control = cell.querySelector('details > summary, button, a');
    const box = control ? control.getBoundingClientRect() : null;
    const wrap = cell.closest('.table-wrap');
    const area = wrap ? wrap.getBoundingClientRect() : {left: 0, right: width};
    if (box && (box.width === 0 || box.left < Math.max(area.left, 0) - 1
                || box.right > Math.min(area.right, width) + 1)) {
      problems.push(`Ações of "${row}" is not visible`);
    }
    if (getComputedStyle(cell).backgroundColor.startsWith('rgba')) {
      problems.push(`cells show through the Ações of "${row}"`);
    }
  }
  return problems;
}"""


# The words of the interface, not of data: headings, labels, buttons, column heads, menus, badges, help and errors.
# On a page in Portuguese none of them may say a common English word of the interface. Option lists, cells and
# servers' replies hold names and replies as they are, so they are not read.
ENGLISH_WORDS = r"\b(the|and|with|without|this|which|Edit|Delete|Save|Cancel|Search|Clear|Send|Enabled|Disabled|" \
                r"Default|Yes|Never|Accounts?|Credentials?|Deliveries|Users?|Settings|Actions|Name|Created|Updated|" \
                r"Last|Next|Previous|Page|Sign out|Filter|Export|Schedule|Remove|Add|New|Apply|Provider|Custom)\b"
ENGLISH_PROBLEMS = """words => {
  if (document.documentElement.lang !== 'pt-BR') return [];
  const english = new RegExp(words);
  const chrome = 'h1, h2, h3, h4, label, legend, button, th, nav a, summary, .badge, small, caption, dt, .flash';
  return [...document.querySelectorAll(chrome)]
    .filter(element => element.offsetParent !== null && !element.closest('option, td .reply, pre, code'))
    .map(element => element.innerText.trim())
    .filter(text => english.test(text))
    .map(text => `English in Portuguese: "${text.slice(0, 80)}"`);
}"""


def axe_problems(page: Page) -> list[str]:
    """axe-core's serious and critical WCAG 2.1 AA violations on the page as it is now."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE)  # evaluated, not a <script>: the app's CSP rightly refuses inline scripts
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG_AA)
    return [f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


class Check:
    """Collects every problem of every state, so one run reports them all."""

    def __init__(self, page: Page):
        self.page = page
        self.problems: list[str] = []

    def __call__(self, state: str) -> None:
        self.page.wait_for_load_state("networkidle")
        # Judge the page at rest, not halfway through a fade.
        self.page.wait_for_function("() => document.getAnimations().every(a => a.playState !== 'running')")
        problems = self.page.evaluate(LAYOUT_PROBLEMS) + self.page.evaluate(ENGLISH_PROBLEMS, ENGLISH_WORDS)
        for problem in problems + axe_problems(self.page):
            self.problems.append(f"{state}: {problem}")

    def visit(self, path: str, state: str | None = None) -> None:
        response = self.page.goto(self.base + path)
        if not response.ok:  # an error page would pass for the screen it replaced
            self.problems.append(f"{state or path}: HTTP {response.status}")
        self(state or path)

    @property
    def base(self) -> str:
        return self.page.url.split("/", 3)[0] + "//" + self.page.url.split("/", 3)[2]


def submit(page: Page) -> None:
    """Send the page's main form: its visible submit button that is not a helper (no formaction, no name of its own)."""
    page.locator("main form button[type=submit]:not([formaction]):not([name]):visible").first.click()


def new_page(browser: Browser, browser_context_args, viewport: str) -> Page:
    context = browser.new_context(**{**browser_context_args, "viewport": VIEWPORTS[viewport]})
    return context.new_page()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_signed_out_screens_fit_and_pass_axe(live_server, browser: Browser, browser_context_args, viewport):
    """The first-run setup page (plain, then a wrong code) and the sign-in page (plain, then a wrong password)."""
    page = new_page(browser, browser_context_args, viewport)
    check = Check(page)
    page.goto(f"{live_server.url}/auth/setup")
    if page.url.endswith("/auth/setup"):
        check("setup")
        submit(page)
        check("setup with errors")
    page.goto(f"{live_server.url}/auth/login")
    check("login")
    page.locator("#username").fill("nobody")
    page.locator("#password").fill("wrong password")
    page.locator("main form button[type=submit]").click()
    check("login refused")
    page.context.close()
    assert not check.problems, "\n".join(check.problems)


@pytest.fixture(scope="module")
def admin(live_server) -> None:
    live_server.add_admin(ADMIN)


EMPTY_PAGES = ["/accounts/", "/credentials/", "/connectors/", "/deliveries/", "/audit/", "/users/", "/tokens/",
               "/schedules/", "/settings/"]


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_empty_screens_fit_and_pass_axe(live_server, admin, browser: Browser, browser_context_args, viewport):
    """Before any account, credential or connector exists: every list's empty state."""
    page = new_page(browser, browser_context_args, viewport)
    sign_in(page, live_server.url, ADMIN)
    check = Check(page)
    for path in EMPTY_PAGES:
        check.visit(path)
    page.context.close()
    assert not check.problems, "\n".join(check.problems)


@pytest.fixture(scope="module")
def realistic(live_server, admin) -> None:
    live_server.seed()


FILLED_PAGES = ["/accounts/", "/accounts/?name=nada-assim", "/accounts/?enabled=no", "/accounts/print",
                "/accounts/new", "/accounts/1/edit", "/accounts/2/edit", "/credentials/", "/credentials/new",
                "/credentials/1/edit", "/credentials/3/edit", "/credentials/4/edit", "/connectors/", "/connectors/new",
                "/connectors/1/edit", "/connectors/1/test", "/deliveries/", "/audit/", "/users/", "/users/new",
                "/users/1/edit", "/tokens/", "/tokens/new", "/schedules/", "/schedules/new", "/settings/",
                "/accounts/1/test"]
FORMS_WITH_ERRORS = ["/accounts/new", "/credentials/new", "/connectors/new", "/users/new", "/tokens/new"]


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_filled_screens_fit_and_pass_axe(live_server, realistic, browser: Browser, browser_context_args, viewport):
    """Realistic accounts (one disabled, one ignoring certificate errors, long test summaries) on every screen, and
    every form sent empty so that its validation errors show."""
    page = new_page(browser, browser_context_args, viewport)
    sign_in(page, live_server.url, ADMIN)
    check = Check(page)
    for path in FILLED_PAGES:
        check.visit(path)
    for path in FORMS_WITH_ERRORS:
        page.goto(live_server.url + path)
        page.locator("main form input:not([type=hidden]):not([type=radio]):not([type=checkbox])").first.fill("")
        submit(page)
        check(f"{path} with errors")
    page.context.close()
    assert not check.problems, "\n".join(check.problems)


STATUSES = ("queued", "sending", "retrying", "sent", "failed")


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_deliveries_in_every_status_fit_and_pass_axe(live_server, realistic, browser: Browser, browser_context_args,
                                                      viewport):
    """The deliveries list with a row in every status (their badges, counts and replies), each status alone, and a
    failed notification's page. axe will not judge a one-digit count's colour, so the test measures it too."""
    page = new_page(browser, browser_context_args, viewport)
    sign_in(page, live_server.url, ADMIN)
    check = Check(page)
    check.visit("/deliveries/")
    for status in STATUSES:
        expect(page.locator(f"#delivery-rows tbody .badge.status-{status}")).to_have_count(1)
        for shown in (page.locator(f".delivery-counts .status-{status} strong"),
                      page.locator(f"#delivery-rows .badge.status-{status}")):
            contrast = shown.evaluate(INK)["text"]
            if contrast < 4.5:
                check.problems.append(f"{status}: {shown.inner_text()} is {contrast:.2f}:1")
    for status in STATUSES:
        check.visit(f"/deliveries/?status={status}")
    page.locator("#delivery-rows tbody tr", has=page.locator(".status-failed")).locator("a").first.click()
    expect(page.locator("h1 .status-failed")).to_be_visible()
    check("a failed notification")
    page.context.close()
    assert not check.problems, "\n".join(check.problems)


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_test_dialog_fits_and_passes_axe(live_server, realistic, browser: Browser, browser_context_args, viewport,
                                         smtp_server):
    """The test dialog open, with a validation error, and after a real send to a local SMTP server."""
    server = smtp_server("plain")
    live_server.seed(str(server.port))
    page = new_page(browser, browser_context_args, viewport)
    sign_in(page, live_server.url, ADMIN)
    check = Check(page)
    row = page.locator("#account-rows tbody tr", has_text=f"Servidor de teste local {server.port}")
    row.get_by_text("Ações", exact=True).click()
    check("row menu open")
    row.get_by_role("button", name="Testar configuração").click()
    dialog = page.locator("dialog#test-dialog[open]")
    expect(dialog).to_be_visible()
    check("dialog open")
    backdrop = page.evaluate("""() => {
      const box = document.querySelector('dialog#test-dialog').getBoundingClientRect();
      return [box.left <= 0 && box.top <= 0, box.right >= innerWidth && box.bottom >= innerHeight] }""")
    assert backdrop == [True, True], "the dialog's backdrop does not cover the page"
    dialog.get_by_role("button", name="Enviar", exact=True).click()
    expect(dialog.locator(".field-error, [aria-invalid=true]").first).to_be_visible()
    check("dialog with errors")
    dialog.get_by_label("Enviar para").fill("rita@example.org")
    dialog.get_by_role("button", name="Enviar", exact=True).click()
    expect(page.locator("dialog#test-dialog .test-result")).to_be_visible()
    check("dialog result")
    page.context.close()
    assert not check.problems, "\n".join(check.problems)


def test_phones_get_a_navigation_menu_that_opens_by_keyboard(live_server, admin, browser: Browser,
                                                             browser_context_args):
    """At 390 px the links hide behind "Menu", which Enter opens; at 1366 px they show without it."""
    page = new_page(browser, browser_context_args, "phone")
    sign_in(page, live_server.url, ADMIN)
    credentials = page.locator("header nav").get_by_role("link", name="Credenciais")
    expect(credentials).to_be_hidden()
    page.locator("header nav summary", has_text="Menu").focus()
    page.keyboard.press("Enter")
    expect(credentials).to_be_visible()
    page.set_viewport_size(VIEWPORTS["laptop"])
    page.reload()
    expect(page.locator("header nav summary", has_text="Menu")).to_be_hidden()
    expect(credentials).to_be_visible()
    page.context.close()
