"""CSV downloads that spreadsheets open safely (audit log, accounts report, ...).

    return csv_response("smtp-accounts.csv", [_("ID"), _("Account name")],
                        ([account.id, account.name] for account in query))

Every cell goes through safe_cell(), so a stored value such as `=HYPERLINK(...)` arrives as text
and is not run as a formula by a spreadsheet. Never pass a secret: there is nothing here to scrub one.
"""
import csv
import io

from flask import Response

# A cell starting with one of these is read as a formula by Excel/LibreOffice/Sheets
# (OWASP "CSV injection"); a leading apostrophe makes the spreadsheet show it as text.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

# Excel only detects UTF-8 when the file starts with a byte order mark.
BOM = "\ufeff"


def safe_cell(value) -> str:
    """The value as CSV cell text: None becomes "", formula-like text gets a leading apostrophe."""
    if value is None:
        return ""
    text = str(value)
    if text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


def csv_bytes(header, rows) -> bytes:
    """header + rows (iterables of cells) as CSV: UTF-8 with BOM, CRLF, every cell neutralised."""
    buffer = io.StringIO()
    buffer.write(BOM)
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([safe_cell(cell) for cell in header])
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
    return buffer.getvalue().encode("utf-8")


def csv_response(filename: str, header, rows) -> Response:
    """An attachment download of header + rows (iterables of cells), UTF-8 with BOM, every cell neutralised."""
    response = Response(csv_bytes(header, rows), mimetype="text/csv")
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers.set("Content-Disposition", "attachment", filename=filename)
    return response
