"""CSV downloads that spreadsheets open safely (audit log, accounts report, ...).

    return csv_response(_("smtp-accounts.csv"), [_("ID"), _("Account name")],
                        ([account.id, account.name] for account in query))

Every cell goes through safe_cell(), so a stored value such as `=HYPERLINK(...)` arrives as text
and is not run as a formula by a spreadsheet. Never pass a secret: there is nothing here to scrub one.

The file follows the language in force the way Excel reads it there: where numbers are written with a decimal comma
(pt-BR), Excel splits a CSV's cells at ";" and reads "1,5" as a number, so cells are separated by ";" and decimals
written with a comma; elsewhere "," and a decimal point.
"""
import csv
import io
from decimal import Decimal

from babel.numbers import get_decimal_symbol
from flask import Response
from flask_babel import get_locale

# A cell starting with one of these is read as a formula by Excel/LibreOffice/Sheets
# (OWASP "CSV injection"); a leading apostrophe makes the spreadsheet show it as text.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

# Excel only detects UTF-8 when the file starts with a byte order mark.
BOM = "\ufeff"


def separators() -> tuple[str, str]:
    """The cell separator and the decimal mark of a CSV in the language in force."""
    decimal = get_decimal_symbol(get_locale() or "en")
    return (";" if decimal == "," else ","), decimal


def safe_cell(value, decimal: str = ".") -> str:
    """The value as CSV cell text: None becomes "", a fractional number takes the decimal mark, formula-like text
    gets a leading apostrophe."""
    if value is None:
        return ""
    if isinstance(value, (float, Decimal)):
        return str(value).replace(".", decimal)
    text = str(value)
    if text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


def csv_bytes(header, rows) -> bytes:
    """header + rows (iterables of cells) as CSV in the language in force: UTF-8 with BOM, CRLF, its separators,
    every cell neutralised."""
    delimiter, decimal = separators()
    buffer = io.StringIO()
    buffer.write(BOM)
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow([safe_cell(cell, decimal) for cell in header])
    for row in rows:
        writer.writerow([safe_cell(cell, decimal) for cell in row])
    return buffer.getvalue().encode("utf-8")


def csv_response(filename: str, header, rows) -> Response:
    """An attachment download of header + rows (iterables of cells), UTF-8 with BOM, every cell neutralised."""
    response = Response(csv_bytes(header, rows), mimetype="text/csv")
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers.set("Content-Disposition", "attachment", filename=filename)
    return response
