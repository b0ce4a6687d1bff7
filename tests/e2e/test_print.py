"""The accounts report and the deliveries printed, in a real browser: on landscape A4 every column fits the page,
and the badges ("Padrão" first, Retrying's warning colour) stay readable in ink.

The print media is emulated in a window as wide as A4 landscape's printable area, so the layout Chromium prints is
the one measured; the PDF is made once to be sure the page prints at all.
"""
import pytest
from playwright.sync_api import Page

from tests.e2e.conftest import INK, sign_in

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

@pytest.fixture(scope="module")
def printer(live_server) -> str:
    """An admin, and realistic accounts: long Portuguese names, the default one, every yes/no column filled."""
    live_server.add_admin("printer")
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
    badges_read_in_ink(page.locator("table.report .badge").all())

    pdf = page.pdf(format="A4", landscape=True)
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000


def test_printed_deliveries_fit_landscape_a4_with_every_status_in_ink(live_server, printer, page: Page):
    """A row in every status, their counts above the list: in print the warning colour of Retrying turns to ink."""
    sign_in(page, live_server.url, printer)
    page.set_viewport_size(PRINTABLE)
    page.emulate_media(media="print")
    page.goto(f"{live_server.url}/deliveries/")

    assert page.evaluate(CUT_OFF) == []
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PRINTABLE["width"]
    assert page.locator("table.report .badge.status-retrying").count() == 1
    badges_read_in_ink(page.locator("table.report .badge").all())
    for count in page.locator(".delivery-counts strong").all():
        assert count.evaluate(INK)["text"] >= 4.5, count.evaluate("strong => strong.parentElement.innerText")


def badges_read_in_ink(badges) -> None:
    """Each badge's text is at least 4.5:1, its outline shows, and a one-word badge keeps its word on one line."""
    for badge in badges:
        ink = badge.evaluate(INK)
        assert ink["text"] >= 4.5, f"{badge.inner_text()}: {ink}"
        assert ink["border"] >= 3, f"{badge.inner_text()} has no visible outline: {ink}"
        if " " not in badge.inner_text().strip():
            assert ink["lines"] == 1, f"{badge.inner_text()} breaks inside its word"
