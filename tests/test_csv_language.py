"""CSV downloads as Excel opens them in the reader's language: in pt-BR ";" between cells and a decimal comma, in
English "," and a decimal point; always the BOM, and a file name in that language."""
import base64
import csv
import io
import json
import re
from datetime import timedelta

import pytest
from flask_babel import force_locale

from tests.support.factories import make_account, make_user
from webapp.csv_export import csv_bytes
from webapp.models import Notification, ScheduledReport, utcnow
from webapp.schedules import run_due_schedules

LANGUAGES = [  # language, separator, accounts file, audit file pattern, "Name" heading
    ("pt_BR", ";", "contas-smtp.csv", r"log-de-auditoria-[\d-]+\.csv", "Nome"),
    ("en", ",", "smtp-accounts.csv", r"audit-log-[\d-]+\.csv", "Name"),
]


def read_table(data: bytes, separator: str) -> list[list[str]]:
    text = data.decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:]), delimiter=separator))


def filename(response) -> str:
    return re.search(r"filename\*?=(?:UTF-8'')?\"?([^\";]+)", response.headers["Content-Disposition"]).group(1)


@pytest.mark.parametrize("language,separator,accounts_file,_audit_file,name", LANGUAGES)
def test_the_accounts_csv_follows_the_language(admin, language, separator, accounts_file, _audit_file, name):
    make_account(name="Main; relay, eu")
    response = admin.use_language(language).get("/accounts/export.csv")
    assert filename(response) == accounts_file
    header, row = read_table(response.get_data(), separator)
    assert header[:2] == ["ID", name] and row[1] == "Main; relay, eu"
    assert separator in response.get_data(as_text=True).splitlines()[0]


@pytest.mark.parametrize("language,separator,_accounts_file,audit_file,_name", LANGUAGES)
def test_the_audit_csv_follows_the_language(admin, language, separator, _accounts_file, audit_file, _name):
    make_account(name="Main")
    admin.post("/accounts/1/disable")  # at least one entry besides the sign-in
    response = admin.use_language(language).get("/audit/export.csv")
    assert re.fullmatch(audit_file, filename(response))
    header, *rows = read_table(response.get_data(), separator)
    assert len(header) == 7 and rows and all(len(row) == 7 for row in rows)


@pytest.mark.parametrize("language,separator,accounts_file,_audit_file,name", LANGUAGES)
def test_the_scheduled_report_csv_follows_its_creators_language(app, language, separator, accounts_file,
                                                                 _audit_file, name):
    make_account(name="Main", is_default=True)
    ScheduledReport.create(recipients="ops@example.com", frequency="daily",
                           next_run_at=utcnow() - timedelta(minutes=1),
                           created_by=make_user("admin", locale=language))
    assert run_due_schedules() == 1
    (attachment,) = json.loads(Notification.get().attachments)
    assert re.fullmatch(accounts_file.replace(".csv", r"-\d{8}\.csv"), attachment["filename"])
    header, row = read_table(base64.b64decode(attachment["data"]), separator)
    assert header[:2] == ["ID", name] and row[1] == "Main"


@pytest.mark.parametrize("language,cell", [("pt_BR", "1,5"), ("en", "1.5")])
def test_fractional_numbers_take_the_languages_decimal_mark(app, language, cell):
    with app.test_request_context(), force_locale(language):
        data = csv_bytes(["n"], [[1.5]])
    separator = ";" if language == "pt_BR" else ","
    assert read_table(data, separator) == [["n"], [cell]]
