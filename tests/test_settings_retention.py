"""The settings screen's retention (admins): how long deliveries and the audit log are kept, config's defaults until
saved, whole days from 1 to 3650 with the error beside the field, audited."""
import pytest

from tests.support.factories import make_client
from webapp.models import AuditEntry, Setting
from webapp.outbox import retention

pytestmark = pytest.mark.engines("sqlite", "postgresql")

KEEP = {"retention_delivery_days": "30", "retention_audit_days": "730"}


def saved() -> tuple[str, str]:
    return Setting.get_value(retention.DELIVERY_DAYS), Setting.get_value(retention.AUDIT_DAYS)


def test_the_page_shows_the_defaults_from_config_and_what_is_pruned(admin, app):
    html = admin.get("/settings/").get_data(as_text=True)
    assert "<h2>Retention</h2>" in html and 'action="/settings/retention"' in html
    assert '<label for="retention_delivery_days">Keep deliveries for (days)</label>' in html
    assert 'name="retention_delivery_days" type="text" value="90"' in html
    assert 'name="retention_audit_days" type="text" value="365"' in html
    assert "Queued, sending and retrying notifications are never deleted, however old." in html
    app.config["RETENTION_DELIVERY_DAYS"] = 60
    assert 'name="retention_delivery_days" type="text" value="60"' in admin.get("/settings/").get_data(as_text=True)


def test_saving_stores_both_periods_and_audits_the_change(admin):
    response = admin.post("/settings/retention", data=KEEP)
    assert response.status_code == 303 and response.headers["Location"] == "/settings/"
    assert saved() == ("30", "730")
    entry = AuditEntry.get(AuditEntry.object_type == "setting")
    assert (entry.action, entry.object_name, entry.actor_name) == ("update", "retention", "alice")
    assert entry.changes == {"retention_delivery_days": [90, 30], "retention_audit_days": [365, 730]}
    html = admin.get("/settings/").get_data(as_text=True)
    assert "Settings saved." in html and 'name="retention_delivery_days" type="text" value="30"' in html
    audit_log = admin.get("/audit/").get_data(as_text=True)
    assert "Keep deliveries for (days): 90 → 30" in audit_log and "Keep audit log for (days): 365 → 730" in audit_log


def test_saving_the_same_periods_changes_nothing(admin):
    admin.post("/settings/retention", data={"retention_delivery_days": "90", "retention_audit_days": " 365 "})
    assert saved() == ("", "") and not AuditEntry.select().where(AuditEntry.object_type == "setting").exists()
    assert "Nothing changed." in admin.get("/settings/").get_data(as_text=True)


def test_only_what_changed_is_stored_and_audited(admin):
    admin.post("/settings/retention", data={"retention_delivery_days": "7", "retention_audit_days": "365"})
    assert saved() == ("7", "")
    assert AuditEntry.get(AuditEntry.object_type == "setting").changes == {"retention_delivery_days": [90, 7]}


@pytest.mark.parametrize("value", ["0", "3651", "", "abc", "1.5", "-3", "90d", "١٢"])
def test_a_period_must_be_whole_days_from_1_to_3650_with_the_error_beside_the_field(admin, value):
    response = admin.post("/settings/retention", data={**KEEP, "retention_delivery_days": value})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert ('<small class="field-error" id="retention_delivery_days-error">Enter a whole number of days from 1 to '
            "3650.</small>") in html
    assert 'id="retention_audit_days-error"' not in html
    assert saved() == ("", "")
    assert 'id="footer_text" name="footer_text"' in html  # the rest of the page as it was


def test_the_limits_themselves_are_accepted(admin):
    admin.post("/settings/retention", data={"retention_delivery_days": "1", "retention_audit_days": "3650"})
    assert saved() == ("1", "3650")


def test_an_htmx_save_redirects_and_an_invalid_one_swaps_the_form_with_422(admin):
    ok = admin.htmx("post", "/settings/retention", data=KEEP)
    assert ok.headers["HX-Redirect"] == "/settings/"
    bad = admin.htmx("post", "/settings/retention", data={**KEEP, "retention_audit_days": "0"})
    html = bad.get_data(as_text=True)
    assert bad.status_code == 422 and "<html" not in html and html.lstrip().startswith('<form id="retention-form"')
    assert 'id="retention_audit_days-error"' in html and 'aria-invalid="true"' in html
    assert saved() == ("30", "730")


def test_a_footer_with_errors_keeps_the_saved_periods_on_the_page(admin):
    admin.post("/settings/retention", data=KEEP)
    response = admin.post("/settings/", data={"footer_text": "bell\x07"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'name="retention_delivery_days" type="text" value="30"' in html


@pytest.mark.parametrize("role", ["operator", "auditor"])
def test_only_admins_change_the_periods(app, role):
    client = make_client(app, role)
    assert client.post("/settings/retention", data=KEEP).status_code == 403
    assert saved() == ("", "")


def test_saving_needs_the_csrf_token(admin):
    assert admin.post("/settings/retention", data=KEEP, csrf=False).status_code == 400
    assert saved() == ("", "")


def test_the_worker_prunes_by_the_saved_periods(admin, app):
    admin.post("/settings/retention", data={"retention_delivery_days": "5", "retention_audit_days": "20"})
    kept = retention.Retention.from_config(app.config)
    assert (kept.delivery_days, kept.audit_days) == (5, 20)
