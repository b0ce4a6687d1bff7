"""The accounts report printed, in a real browser: on landscape A4 every column fits the page, and the badges
("Padrão" first) stay readable in ink.

The print media is emulated in a window as wide as A4 landscape's printable area, so the layout Chromium prints is
the one measured; the PDF is made once to be sure the page prints at all.
"""
import pytest
from playwright.sync_api import Page

from tests.e2e.conftest import PASSWORD, sign_in

pytestmark = pytest.mark.e2e

# A4 landscape (297 mm) less the 10 mm margins of app.css's @page, in CSS pixels (96 to the inch).
PRINTABLE = {"width": round((297 - 2 * 10) / 25.4 * 96), "height": round((210 - 2 * 10) / 25.4 * 96)}
HEADINGS = ("Usa configuração", "Confirmação de leitura", "Rodapé", "Último teste")

# Every heading and cell of the report that ends past the page's right edge, or is clipped by its scrolling wrapper.
CUT_OFF = """() => {
  const width = document.documentElement.clientWidth, cut = [];
  for (const cell of document.querySelectorAll('table.report :is(th, td)')) {
    const box = cell.getBoundingClientRect(), wrap = cell.closest('.table-wrap');
    const right = wrap ? Math.min(width, wrap.getBoundingClientRect().right) : width;
    if (box.width > 0 && box.right > right + 1) {
      cut.push(`${cell.innerText.trim().slice(0, 30) || cell.tagName} ends at ${Math.round(box.right)}px of ${right}`);
    }
  }
  return cut;
}"""

# The badge's text contrast against what is behind it, and how its edge shows (WCAG 2.1 relative luminance).
BADGE_INK = """badge => {
  const rgb = value => value.match(/[\\d.]+/g).map(Number);
  const luminance = ([r, g, b]) => [r, g, b].map(c => c / 255)
    .map(c => c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4)
    .reduce((sum, c, i) => sum + c * [0.2126, 0.7152, 0.0722][i], 0);
  const contrast = (a, b) => { const [x, y] = [luminance(a), luminance(b)].sort((m, n) => n - m);
                               return (x + 0.05) / (y + 0.05); };
  let behind = [255, 255, 255];  // paper
  for (let node = badge; node; node = node.parentElement) {
    const color = rgb(getComputedStyle(node).backgroundColor);
    if (color.length < 4 || color[3] > 0) { behind = color.slice(0, 3); break; }
  }
  const style = getComputedStyle(badge), words = document.createRange();
  words.selectNodeContents(badge);
  return {text: contrast(rgb(style.color).slice(0, 3), behind),
          border: parseFloat(style.borderTopWidth) ? contrast(rgb(style.borderTopColor).slice(0, 3), behind) : 0,
          lines: new Set([...words.getClientRects()].map(box => Math.round(box.top))).size};
}"""


@pytest.fixture(scope="module")
def printer(live_server) -> str:
    """An admin, and realistic accounts: long Portuguese names, the default one, every yes/no column filled."""
    live_server.cli("users", "create", "printer", "--password", PASSWORD, "--role", "admin")
    live_server.seed()
    return "printer"


@pytest.mark.parametrize("path", ["/accounts/print", "/accounts/"])
def test_printed_report_fits_landscape_a4_with_readable_badges(live_server, printer, page: Page, path):
    """The print view, and the report printed as it is (Ctrl+P), at A4 landscape's printable width."""
    sign_in(page, live_server.url, printer)
    page.set_viewport_size(PRINTABLE)
    page.emulate_media(media="print")
    page.goto(live_server.url + path)

    headings = page.locator("table.report thead th").all_inner_texts()
    for heading in HEADINGS:
        assert any(heading in text for text in headings), f"no {heading} column in {headings}"
    assert page.evaluate(CUT_OFF) == []
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PRINTABLE["width"]

    default = page.locator("table.report .badge", has_text="Padrão")
    assert default.count() == 1
    for badge in page.locator("table.report .badge").all():
        ink = badge.evaluate(BADGE_INK)
        assert ink["text"] >= 4.5, f"{badge.inner_text()}: {ink}"
        assert ink["border"] >= 3, f"{badge.inner_text()} has no visible outline: {ink}"
        if " " not in badge.inner_text().strip():
            assert ink["lines"] == 1, f"{badge.inner_text()} breaks inside its word"

    pdf = page.pdf(format="A4", landscape=True)
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000
