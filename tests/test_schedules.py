"""Scheduled reports: from the accounts report's "Schedule report" (its filters carried along) to the CSV e-mail
the worker queues through the default account; listed and removable by admins; each run sent once."""
import base64
import csv
import io
import json
import threading
from datetime import datetime, timedelta

import pytest

from tests.support.factories import make_account, make_client, make_credential, make_user
from tests.support.outbox import account_for, drain
from webapp import db
from webapp.models import AuditEntry, Notification, ScheduledReport, utcnow
from webapp.schedules import next_run, run_due_schedules


def schedule_form(**overrides) -> dict:
    data = {"recipients": "ops@example.com", "frequency": "daily", "first_run": "2099-01-01T07:00",
            "filters": ""}
    data.update(overrides)
    return data


def make_schedule(**overrides) -> ScheduledReport:
    fields = dict(recipients="ops@example.com", frequency="daily", next_run_at=utcnow() - timedelta(minutes=1))
    fields.update(overrides)
    return ScheduledReport.create(**fields)


def attachment_rows(notification: Notification, language: str = "en") -> list[list[str]]:
    """The CSV attached to a queued report in this language (its file name and separator), parsed."""
    (attachment,) = json.loads(notification.attachments)
    prefix, separator = {"en": ("smtp-accounts-", ","), "pt_BR": ("contas-smtp-", ";")}[language]
    assert (attachment["filename"].startswith(prefix), attachment["mimetype"]) == (True, "text/csv")
    text = base64.b64decode(attachment["data"]).decode("utf-8-sig")
    return list(csv.reader(io.StringIO(text), delimiter=separator))


# --- The screen -------------------------------------------------------------------------------------------------


def test_the_report_offers_schedule_report_to_admins_with_its_filters(app, admin):
    html = admin.get("/accounts/?name=prod&enabled=yes").get_data(as_text=True)
    assert '<a href="/schedules/new?name=prod&amp;enabled=yes" role="button" class="secondary outline">' \
           'Schedule report</a>' in html
    operator = make_client(app, "operator")
    assert "/schedules/new" not in operator.get("/accounts/").get_data(as_text=True)


def test_the_form_carries_the_reports_filters_and_says_them_in_words(admin):
    html = admin.get("/schedules/new?name=prod&enabled=yes&page=3&bogus=1").get_data(as_text=True)
    assert '<input id="filters" name="filters" type="hidden" value="name=prod&amp;enabled=yes">' in html
    assert "<strong>Filters:</strong> Name: prod; Enabled: Yes" in html
    assert "all accounts" in admin.get("/schedules/new").get_data(as_text=True)
    assert 'type="datetime-local"' in html and "Time zone: UTC." in html


def test_scheduling_saves_recipients_frequency_filters_and_first_run_and_audits_it(admin):
    response = admin.post("/schedules/new", data=schedule_form(
        recipients="ops@example.com\r\nBoss <boss@example.com>, ops@example.com; \"Doe, Jane\" <jane@example.com>",
        frequency="weekly", first_run="2099-03-01T07:30", filters="name=prod"))
    assert response.status_code == 303 and response.headers["Location"] == "/schedules/"
    schedule = ScheduledReport.get()
    assert schedule.recipient_list == ["ops@example.com", "Boss <boss@example.com>", '"Doe, Jane" <jane@example.com>']
    assert (schedule.frequency, schedule.filters) == ("weekly", "name=prod")
    assert schedule.next_run_at == datetime(2099, 3, 1, 7, 30)
    assert schedule.created_by.username == "alice"
    entry = AuditEntry.get(AuditEntry.object_type == "scheduled_report")
    assert entry.action == "create" and entry.object_name.startswith("weekly: ops@example.com, Boss")
    listing = admin.get("/schedules/").get_data(as_text=True)
    assert "Report scheduled." in listing and "Weekly" in listing and "Name: prod" in listing
    assert "Boss &lt;boss@example.com&gt;" in listing and "not yet" in listing


@pytest.mark.parametrize("overrides,message", [
    ({"recipients": ""}, "This field is required."),
    ({"recipients": "not an address"}, "Enter a valid e-mail address"),
    ({"recipients": "ok@example.com\nBcc: x@example.com\r\nbad@"}, "Enter a valid e-mail address"),
    ({"recipients": "\n".join(f"p{n}@example.com" for n in range(51))}, "At most 50 recipients."),
    ({"frequency": "hourly"}, "Not a valid choice"),
    ({"first_run": "2001-01-01T07:00"}, "Choose a moment from now on."),
    ({"first_run": "tomorrow"}, "Not a valid datetime value."),
    ({"filters": "name=x&secret=1"}, "These report filters are not understood."),
])
def test_invalid_schedules_are_422_and_nothing_is_saved(admin, overrides, message):
    response = admin.htmx("post", "/schedules/new", data=schedule_form(**overrides))
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and "<html" not in html
    assert message in html
    assert ScheduledReport.select().count() == 0


def test_a_refused_recipient_is_quoted_back_as_text(admin):
    response = admin.htmx("post", "/schedules/new", data=schedule_form(recipients="<script>alert(1)</script>"))
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;:" in html


def test_removing_asks_first_and_audits(admin):
    schedule = make_schedule(created_by=make_user("admin"))
    listing = admin.get("/schedules/").get_data(as_text=True)
    assert 'data-confirm="Remove this scheduled report?' in listing
    response = admin.post(f"/schedules/{schedule.id}/delete")
    assert response.status_code == 303
    assert ScheduledReport.select().count() == 0
    assert AuditEntry.get(AuditEntry.object_type == "scheduled_report").action == "delete"
    assert "Scheduled report removed." in admin.get("/schedules/").get_data(as_text=True)
    assert admin.post(f"/schedules/{schedule.id}/delete").status_code == 404


@pytest.mark.parametrize("role", ["operator", "auditor"])
def test_only_admins_schedule_list_or_remove(app, role):
    schedule = make_schedule()
    client = make_client(app, role)
    assert client.get("/schedules/").status_code == 403
    assert client.get("/schedules/new").status_code == 403
    assert client.post("/schedules/new", data=schedule_form()).status_code == 403
    assert client.post(f"/schedules/{schedule.id}/delete").status_code == 403
    assert ScheduledReport.select().count() == 1


def test_changes_need_the_csrf_token(admin):
    schedule = make_schedule()
    assert admin.post("/schedules/new", data=schedule_form(), csrf=False).status_code == 400
    assert admin.post(f"/schedules/{schedule.id}/delete", csrf=False).status_code == 400
    assert ScheduledReport.select().count() == 1


# --- When the next run is -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("frequency,after,now,expected", [
    ("daily", datetime(2025, 3, 1, 7), datetime(2025, 3, 1, 7), datetime(2025, 3, 2, 7)),
    ("weekly", datetime(2025, 3, 1, 7), datetime(2025, 3, 1, 7), datetime(2025, 3, 8, 7)),
    ("monthly", datetime(2025, 1, 31, 7), datetime(2025, 1, 31, 7), datetime(2025, 2, 28, 7)),
    ("monthly", datetime(2024, 1, 31, 7), datetime(2024, 1, 31, 7), datetime(2024, 2, 29, 7)),
    ("monthly", datetime(2025, 12, 15, 7), datetime(2025, 12, 15, 7), datetime(2026, 1, 15, 7)),
    # Stopped for ten days: the runs missed meanwhile are skipped, not sent in a burst.
    ("daily", datetime(2025, 3, 1, 7), datetime(2025, 3, 11, 9), datetime(2025, 3, 12, 7)),
])
def test_next_run(frequency, after, now, expected):
    assert next_run(frequency, after, now) == expected


# --- Running due schedules ------------------------------------------------------------------------------------------


def test_a_due_schedule_queues_the_filtered_report_as_csv_through_the_default_account(app, admin):
    default = make_account(name="Main", is_default=True)
    make_account(name="prod-eu", credential=make_credential(secret="Sup3r-Secret!"), use_auth=True)
    make_account(name="=HYPERLINK(\"http://evil\")-prod")
    make_account(name="staging")
    due = datetime(2025, 3, 1, 7)
    schedule = make_schedule(recipients="ops@example.com\nboss@example.com", filters="name=prod",
                             next_run_at=due, created_by=make_user("admin", locale="en"))

    assert run_due_schedules(now=due + timedelta(seconds=5)) == 1
    notification = Notification.get()
    assert notification.account_id == default.id
    assert notification.to_list == ["ops@example.com", "boss@example.com"]
    assert (notification.source, notification.created_by) == ("schedule", schedule.created_by.username)
    assert notification.subject == "SMTP accounts report, 2025-03-01"
    assert "attached as CSV: 2 accounts" in notification.body_text and "Filters: Name: prod." in notification.body_text
    table = attachment_rows(notification)
    assert table[0][:2] == ["ID", "Name"]
    assert [row[1] for row in table[1:]] == ["prod-eu", "'=HYPERLINK(\"http://evil\")-prod"]
    assert "Sup3r-Secret!" not in str(table)

    schedule = ScheduledReport.get_by_id(schedule.id)
    assert schedule.next_run_at == datetime(2025, 3, 2, 7) and schedule.last_run_at == due + timedelta(seconds=5)
    listing = admin.get("/schedules/").get_data(as_text=True)
    assert f"Queued as notification #{notification.id}." in listing


def test_the_report_speaks_the_language_of_whoever_scheduled_it(app):
    make_account(name="Main", is_default=True)
    make_schedule(created_by=make_user("admin", locale="pt_BR"))
    run_due_schedules()
    notification = Notification.get()
    assert notification.subject.startswith("Relatório")
    assert attachment_rows(notification, "pt_BR")[0][:2] == ["ID", "Nome"]


def test_schedules_not_yet_due_do_not_run(app):
    make_account(is_default=True)
    schedule = make_schedule(next_run_at=utcnow() + timedelta(hours=1))
    assert run_due_schedules() == 0
    assert Notification.select().count() == 0
    assert ScheduledReport.get_by_id(schedule.id).last_run_at is None


def test_a_run_without_a_default_account_is_recorded_and_the_schedule_moves_on(app, admin):
    due = datetime(2025, 3, 1, 7)
    schedule = make_schedule(next_run_at=due)
    assert run_due_schedules(now=due) == 0
    schedule = ScheduledReport.get_by_id(schedule.id)
    assert schedule.next_run_at == datetime(2025, 3, 2, 7)
    assert "Not sent: no enabled default account is set." in admin.get("/schedules/").get_data(as_text=True)


def test_running_twice_at_the_same_moment_sends_once(app):
    make_account(is_default=True)
    make_schedule()
    now = utcnow()
    assert run_due_schedules(now=now) == 1
    assert run_due_schedules(now=now) == 0
    assert Notification.select().count() == 1


def test_two_workers_running_schedules_together_queue_each_run_once(app):
    make_account(is_default=True)
    for n in range(5):
        make_schedule(recipients=f"ops{n}@example.com")
    now = utcnow()
    barrier = threading.Barrier(4)
    errors = []

    def worker():
        try:
            with app.app_context(), db.database.connection_context():
                barrier.wait()
                run_due_schedules(now=now)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert Notification.select().count() == 5
    assert sorted(n.to_list[0] for n in Notification.select()) == [f"ops{n}@example.com" for n in range(5)]


def test_the_worker_delivers_the_report_with_its_csv_attachment(app, smtp_server):
    server = smtp_server("plain")
    account_for(server, name="Main")
    make_schedule(recipients="ops@example.com")  # nobody's language: the default one, pt-BR
    run_due_schedules()
    drain()
    (received,) = server.received
    assert received.rcpt_tos == ["ops@example.com"]
    (attachment,) = list(received.message.iter_attachments())
    assert attachment.get_content_type() == "text/csv"
    assert attachment.get_filename().startswith("contas-smtp-")
    assert "Main" in attachment.get_content()
