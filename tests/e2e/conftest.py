"""Browser tests: smtpdesk served for real by `smtpdesk serve` (waitress), driven by Playwright in Debian's chromium.

Playwright cannot download its own browsers here, so it launches /usr/bin/chromium (installed by `make test`).
"""
import os
import re
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.net import free_port, wait_for_port
from tests.support.processes import stop

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery staple"
SETUP_CODE = re.compile(r"setup code: ([0-9A-F-]+)")

# An element's text and border contrast against what shows behind it (WCAG 2.1 relative luminance), and on how many
# lines its words fall: for colours axe leaves to a person (a one-digit count is too short for it to judge) and for
# print, where axe does not look.
INK = """element => {
  const rgb = value => value.match(/[\\d.]+/g).map(Number);
  const luminance = ([r, g, b]) => [r, g, b].map(c => c / 255)
    .map(c => c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4)
    .reduce((sum, c, i) => sum + c * [0.2126, 0.7152, 0.0722][i], 0);
  const contrast = (a, b) => { const [x, y] = [luminance(a), luminance(b)].sort((m, n) => n - m);
                               return (x + 0.05) / (y + 0.05); };
  const layers = [];  // the backgrounds behind the text, down to the first opaque one
  for (let node = element; node; node = node.parentElement) {
    const color = rgb(getComputedStyle(node).backgroundColor), alpha = color.length < 4 ? 1 : color[3];
    if (alpha > 0) layers.unshift([color, alpha]);
    if (alpha >= 1) break;
  }
  // Composited from the bottom up over paper white (a striped row is a few percent of grey over the page).
  const behind = layers.reduce((under, [color, alpha]) => under.map((c, i) => color[i] * alpha + c * (1 - alpha)),
                               [255, 255, 255]);
  const style = getComputedStyle(element), words = document.createRange();
  words.selectNodeContents(element);
  return {text: contrast(rgb(style.color).slice(0, 3), behind),
          border: parseFloat(style.borderTopWidth) ? contrast(rgb(style.borderTopColor).slice(0, 3), behind) : 0,
          lines: new Set([...words.getClientRects()].map(box => Math.round(box.top))).size};
}"""


@dataclass
class LiveServer:
    url: str
    instance: Path
    log: Path
    settings: dict = field(default_factory=dict)  # the SMTPDESK_* variables it was started with

    @property
    def setup_code(self) -> str:
        return SETUP_CODE.search(self.log.read_text()).group(1)

    def add_admin(self, username: str) -> str:
        """Create an administrator who signs in with PASSWORD, through the command line; its username."""
        self.cli("users", "create", username, "--password", PASSWORD, "--role", "admin")
        return username

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """Run `smtpdesk ARGS` against this server's instance folder."""
        return subprocess.run([_smtpdesk(), *args], env={**_env(self.instance), **self.settings}, capture_output=True,
                              text=True, timeout=60, check=True)

    def seed(self, *args: str) -> None:
        """Write tests/e2e/seed.py's realistic data into this server's database (with an SMTP port: one account
        that sends to the test SMTP server there)."""
        subprocess.run([sys.executable, "-m", "tests.e2e.seed", *args], cwd=ROOT,
                       env={**_env(self.instance), **self.settings}, check=True, timeout=60)


def _smtpdesk() -> str:
    return str(Path(sys.executable).parent / "smtpdesk")


def _env(instance: Path) -> dict:
    return {**os.environ, "SMTPDESK_INSTANCE_PATH": str(instance), "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def live_server(tmp_path_factory, engine, request):
    """A fresh smtpdesk on a free loopback port, as `make run` starts it; stopped after the module. Browser tests run
    on SQLite (tests/conftest.py); on PostgreSQL, for a module marked so, the server migrates an empty database."""
    if engine != "postgresql":
        with serving(tmp_path_factory) as server:
            yield server
        return
    cluster = request.getfixturevalue("postgres_cluster")
    url = cluster.create_database()
    try:
        with serving(tmp_path_factory, SMTPDESK_DATABASE_URL=url) as server:
            yield server
    finally:
        cluster.drop_database(url)


@contextmanager
def serving(tmp_path_factory, **settings: str):
    """`smtpdesk serve` on a fresh instance and a free loopback port until the block ends; settings are extra
    SMTPDESK_* variables for it (a module that needs them overrides live_server with them)."""
    instance = tmp_path_factory.mktemp("instance")
    port = free_port()
    log = instance / "server.log"
    with open(log, "w") as out:
        process = subprocess.Popen([_smtpdesk(), "serve", "--port", str(port)], env={**_env(instance), **settings},
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port)
        yield LiveServer(url=f"http://127.0.0.1:{port}", instance=instance, log=log, settings=settings)
    finally:
        stop(process, timeout=10)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"],
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "locale": "pt-BR", "viewport": {"width": 1400, "height": 900}}


def complete_first_run(page, live_server: LiveServer, username: str = "admin") -> None:
    """Create the first admin through /auth/setup with the code the server printed, then switch to English.

    Fields are found by id: the setup page is still in Portuguese at that point.
    """
    from playwright.sync_api import expect

    page.goto(live_server.url)
    expect(page).to_have_url(re.compile(r"/auth/setup$"))
    page.locator("#code").fill(live_server.setup_code)
    page.locator("#username").fill(username)
    page.locator("#password").fill(PASSWORD)
    page.locator("#confirm").fill(PASSWORD)
    page.locator("main form button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/accounts/$"))
    page.get_by_role("button", name="EN", exact=True).click()
    expect(page.locator("html")).to_have_attribute("lang", "en")


def sign_in(page, base: str, username: str) -> None:
    """Sign in through the login form (a user made with `smtpdesk users create ... --password PASSWORD`); the
    report in Portuguese, the browser's language, follows."""
    from playwright.sync_api import expect

    page.goto(f"{base}/auth/login")
    page.locator("#username").fill(username)
    page.locator("#password").fill(PASSWORD)
    page.locator("main form button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/accounts/$"))


def keep_problems(page):
    """The page, keeping the browser's complaints (CSP refusals, script errors) in page.problems from now on."""
    page.problems = []
    page.on("console", lambda message: page.problems.append(message.text)
            if re.search(r"Content Security Policy|Refused to|Failed to load resource", message.text) else None)
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    return page


def add_account(page, base: str, name: str, host: str, port: int) -> None:
    """A plain-SMTP account made through the form, in Portuguese, with every address filled."""
    from playwright.sync_api import expect

    page.goto(f"{base}/accounts/new")
    page.get_by_label("Nome da conta").fill(name)
    page.get_by_label("E-mail do Remetente").fill("Ops <ops@example.com>")
    page.get_by_label("E-mail de resposta (Reply-To)").fill("reply@example.com")
    page.get_by_label("E-mail de retorno (Return-Path)").fill("bounces@example.com")
    page.get_by_label("E-mail de confirmação").fill("receipts@example.com")
    page.get_by_label("Host SMTP").fill(host)
    page.get_by_label("Porta", exact=True).fill(str(port))
    page.get_by_role("button", name="Enviar").click()
    expect(page).to_have_url(re.compile(r"/accounts/$"))
