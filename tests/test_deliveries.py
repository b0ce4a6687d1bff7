"""The deliveries screen: counts by status (refreshing only while needed), the filtered list, one notification's
attempts and headers, Retry for failed ones (operators and admins), and everything stored shown escaped."""
import re
from datetime import datetime

import pytest
from itsdangerous import URLSafeTimedSerializer

from tests.support.factories import make_account, make_client, make_notification
from webapp.models import AuditEntry, DeliveryAttempt, Notification, utcnow

POLLING = 'hx-trigger="every 3s"'


def rows(html: str) -> list[str]:
    """The ids of the notification rows on a page or fragment, in order."""
    return re.findall(r'<tr id="notification-(\d+)"', html)


def count_of(html: str, status: str) -> int:
    match = re.search(rf'class="status-count status-{status}">\s*<strong>(\d+)</strong>', html)
    return int(match.group(1))


# --- The list and the counts ----------------------------------------------------------------------------------


def test_everyone_who_can_view_sees_the_list_with_its_columns(app, auditor):
    account = make_account(name="Billing", is_default=True)
    sent = make_notification("sent", to=["ana@example.com", "bia@example.com"], cc="chefe@example.com",
                             subject="Invoice 42", attempts=1, last_code=250, last_reply="250 2.0.0 Ok: queued as X",
                             sent_at=utcnow())
    failed = make_notification("failed", subject="Reminder", attempts=3, last_code=550,
                               last_reply="550 5.1.1 no such user")
    html = auditor.get("/deliveries/").get_data(as_text=True)
    assert "<h1>Deliveries</h1>" in html
    assert rows(html) == [str(failed.id), str(sent.id)]  # newest first
    row = html[html.index(f'id="notification-{sent.id}"'):]  # the last row
    assert 'class="badge badge-ok status-sent">Sent<' in row
    assert account.name in row and "ana@example.com, bia@example.com" in row and "+1 in copy" in row
    assert "Invoice 42" in row and "250 2.0.0 Ok: queued as X" in row
    assert 'class="badge badge-bad status-failed">Failed<' in html and "550 5.1.1 no such user" in html
    assert f'href="/deliveries/{sent.id}?next=' in html
    assert "1 notification" not in html and "2 notifications" in html


def test_the_counts_show_every_status_and_refresh_only_while_something_is_on_its_way(app, auditor):
    make_account(is_default=True)
    make_notification("sent")
    make_notification("failed")
    idle = auditor.get("/deliveries/").get_data(as_text=True)
    assert (count_of(idle, "sent"), count_of(idle, "failed"), count_of(idle, "queued")) == (1, 1, 0)
    assert POLLING not in idle

    for status in ("queued", "sending", "retrying"):
        make_notification(status)
    busy = auditor.get("/deliveries/").get_data(as_text=True)
    assert (count_of(busy, "queued"), count_of(busy, "sending"), count_of(busy, "retrying")) == (1, 1, 1)
    counts_block = re.search(r'<section id="delivery-counts"[^>]*>', busy).group(0)
    assert POLLING in counts_block and 'hx-get="/deliveries/counts?seen=' in counts_block


def test_the_counts_refresh_is_a_fragment_that_tells_the_rows_when_the_outbox_changed(app, auditor):
    make_account(is_default=True)
    queued = make_notification("queued")
    page = auditor.get("/deliveries/").get_data(as_text=True)
    refresh_url = re.search(r'hx-get="(/deliveries/counts\?seen=[^"]+)"', page).group(1).replace("&amp;", "&")

    unchanged = auditor.htmx("get", refresh_url)
    assert unchanged.status_code == 200 and "<html" not in unchanged.get_data(as_text=True)
    assert "HX-Trigger" not in unchanged.headers
    assert POLLING in unchanged.get_data(as_text=True)

    Notification.update(status="sent", sent_at=utcnow(), updated_at=utcnow()).where(
        Notification.id == queued.id).execute()
    changed = auditor.htmx("get", refresh_url)
    assert changed.headers["HX-Trigger"] == "deliveries-changed"
    assert POLLING not in changed.get_data(as_text=True)  # nothing left on its way: the polling stops
    assert count_of(changed.get_data(as_text=True), "sent") == 1

    # The rows listen for that event and reload themselves with the same filters.
    assert 'hx-trigger="deliveries-changed from:body"' in page
    assert auditor.get("/deliveries/counts").status_code == 302


def test_an_empty_outbox_says_so(auditor):
    html = auditor.get("/deliveries/").get_data(as_text=True)
    assert "No notification yet." in html and rows(html) == []


# --- Filters ----------------------------------------------------------------------------------------------------


@pytest.fixture
def outbox(app):
    """Five notifications through two accounts, on two days."""
    billing = make_account(name="Billing", is_default=True)
    alerts = make_account(name="Alerts")
    made = {
        "ana": make_notification("sent", to="Ana <ana@example.com>", created_at=datetime(2025, 3, 1, 10)),
        "bia": make_notification("failed", to="bia@example.com", cc="ana.copy@example.com",
                                 created_at=datetime(2025, 3, 2, 23, 59)),
        "caio": make_notification("queued", account=alerts, to="caio@example.org", bcc="ANA.HIDDEN@example.com",
                                  created_at=datetime(2025, 3, 3, 0, 0)),
        "davi": make_notification("retrying", account=alerts, to="davi@example.org",
                                  created_at=datetime(2025, 3, 4, 12)),
        "joão": make_notification("sent", to="João <joao@example.com>", created_at=datetime(2025, 3, 4, 13)),
    }
    return billing, alerts, {name: str(n.id) for name, n in made.items()}


@pytest.mark.parametrize("query,expected", [
    ("status=sent", ["joão", "ana"]),
    ("status=failed", ["bia"]),
    ("recipient=ANA", ["caio", "bia", "ana"]),  # to, cc and bcc; any case
    ("recipient=example.org", ["davi", "caio"]),
    ("recipient=jo%C3%A3o", ["joão"]),  # a non-ASCII display name, any case
    ("date_from=2025-03-02&date_to=2025-03-03", ["caio", "bia"]),  # inclusive days
    ("date_from=2025-03-04", ["joão", "davi"]),
    ("status=sent&recipient=ana", ["ana"]),
])
def test_filters_narrow_the_list(outbox, auditor, query, expected):
    _billing, _alerts, ids = outbox
    html = auditor.get(f"/deliveries/?{query}").get_data(as_text=True)
    assert rows(html) == [ids[name] for name in expected]
    assert "filtered" in html


def test_the_account_filter(outbox, auditor):
    _billing, alerts, ids = outbox
    html = auditor.get(f"/deliveries/?account={alerts.id}").get_data(as_text=True)
    assert rows(html) == [ids["davi"], ids["caio"]]
    assert f'<option selected value="{alerts.id}">Alerts</option>' in html


def test_a_filter_from_the_form_swaps_only_the_rows_and_pushes_the_short_url(outbox, auditor):
    _billing, _alerts, ids = outbox
    response = auditor.htmx("get", "/deliveries/?status=failed&account=&recipient=&date_from=&date_to=",
                            headers={"HX-Trigger": "delivery-filters"})
    html = response.get_data(as_text=True)
    assert "<html" not in html and html.lstrip().startswith('<section id="delivery-rows"')
    assert rows(html) == [ids["bia"]]
    assert response.headers["HX-Push-Url"] == "/deliveries/?status=failed"
    assert response.headers["Vary"] == "HX-Request" or "HX-Request" in response.headers["Vary"]


def test_the_rows_refreshing_themselves_do_not_touch_the_address_bar(outbox, auditor):
    response = auditor.htmx("get", "/deliveries/?status=sent", headers={"HX-Trigger": "delivery-rows"})
    assert "HX-Push-Url" not in response.headers
    assert "<html" not in response.get_data(as_text=True)


def test_a_plain_get_with_filters_is_the_whole_page(outbox, auditor):
    _billing, _alerts, ids = outbox
    html = auditor.get("/deliveries/?status=failed").get_data(as_text=True)
    assert "<html" in html and rows(html) == [ids["bia"]]
    assert '<option selected value="failed">Failed</option>' in html


@pytest.mark.parametrize("query", ["date_from=yesterday", "account=zzz", "account=999", "status=lost",
                                   "page=abc", "page=-4"])
def test_bad_filter_values_are_ignored_not_an_error(outbox, auditor, query):
    response = auditor.get(f"/deliveries/?{query}")
    assert response.status_code == 200
    assert len(rows(response.get_data(as_text=True))) in (0, 5)


def test_thirty_a_page_then_older(app, auditor):
    make_account(is_default=True)
    made = [make_notification("sent") for _ in range(31)]
    first = auditor.get("/deliveries/").get_data(as_text=True)
    assert len(rows(first)) == 30 and "31 notifications" in first
    assert f'href="/deliveries/?before={made[1].id}"' in first and "Older" in first
    second = auditor.htmx("get", f"/deliveries/?before={made[1].id}").get_data(as_text=True)
    assert rows(second) == [str(made[0].id)] and "<html" not in second
    assert f'href="/deliveries/?after={made[0].id}"' in second and "Newer" in second


# --- Detail -----------------------------------------------------------------------------------------------------


def test_the_detail_shows_every_attempt_the_headers_sent_and_the_overrides(app, auditor):
    make_account(name="Billing", is_default=True)
    notification = make_notification("sent", to="ana@example.com", bcc="audit@example.com",
                                      reply_to="help@example.com", attempts=2, sent_at=utcnow(),
                                      headers_sent="From: Ops <ops@example.com>\nSubject: Your invoice")
    DeliveryAttempt.create(notification=notification, started_at=datetime(2025, 3, 1, 10, 0, 0), duration_ms=812,
                           ok=False, code=451, reply="451 4.3.0 try later", step="data", transient=True,
                           worker="host:1")
    DeliveryAttempt.create(notification=notification, started_at=datetime(2025, 3, 1, 10, 1, 0), duration_ms=95,
                           ok=True, code=250, reply="250 2.0.0 Ok", worker="host:1")
    html = auditor.get(f"/deliveries/{notification.id}").get_data(as_text=True)
    assert f"Notification #{notification.id}" in html
    attempts = html[html.index('class="report striped attempts"'):]
    assert attempts.index("451 4.3.0 try later") < attempts.index("250 2.0.0 Ok")
    assert "temporary failure" in attempts and "delivered" in attempts
    assert "message refused" in attempts  # the step "data" in the admin's words
    assert "812 ms" in attempts and "95 ms" in attempts
    assert '<pre class="headers-sent">From: Ops &lt;ops@example.com&gt;\nSubject: Your invoice</pre>' in html
    assert "help@example.com" in html and "Applied: they replace the account" in html
    assert "audit@example.com" in html and "envelope only, never in the headers" in html
    assert "Retry" not in html  # sent, and auditors cannot retry anyway


def test_the_detail_says_when_overrides_were_ignored(app, auditor):
    make_account(is_default=True, force_settings=True)
    notification = make_notification("queued", return_path="other@example.com")
    assert notification.overrides_ignored
    html = auditor.get(f"/deliveries/{notification.id}").get_data(as_text=True)
    assert "Ignored: the account forces its own settings" in html and "other@example.com" in html
    assert "No attempt yet." in html and "Nothing was sent yet." in html


def test_an_unknown_notification_is_404(auditor):
    assert auditor.get("/deliveries/999").status_code == 404


# --- Retry ------------------------------------------------------------------------------------------------------


def test_the_filter_form_and_results_follow_the_data(app, operator):
    account = make_account(name="Billing", is_default=True)
    for n in range(3):
        make_notification("sent", subject=f"Invoice {n}")
    app.config["PAGE_SIZE"] = 2

    def page(url: str) -> str:
        response = operator.get(url)
        assert response.status_code == 200
        return response.get_data(as_text=True)

    assert "Not a valid date value." in page(f"/deliveries/?account={account.id}&date_from=2025-13-01")
    before = page("/deliveries/?status=sent")
    assert ">Billing<" in before and "3 notifications" in before
    account.name = "Invoices"
    account.save()
    make_notification("sent", subject="Invoice 3")
    after = page("/deliveries/?status=sent")
    assert f'<option selected value="{account.id}">' not in after and f'<option value="{account.id}">Invoices<' in after
    assert "4 notifications" in after and "Invoice 3" in after and "Invoice 1" not in after


@pytest.mark.parametrize("role", ["operator", "admin"])
def test_operators_and_admins_retry_a_failed_notification(app, role):
    client = make_client(app, role)
    make_account(is_default=True)
    failed = make_notification("failed", attempts=8, last_code=451, next_attempt_at=datetime(2025, 1, 1))
    page = client.get("/deliveries/").get_data(as_text=True)
    assert f'hx-post="/deliveries/{failed.id}/retry?next=/deliveries/"' in page
    assert f'<form method="post" action="/deliveries/{failed.id}/retry?next=/deliveries/"' in page

    response = client.post(f"/deliveries/{failed.id}/retry", data={"next": "/deliveries/?status=failed"})
    assert response.status_code == 303 and response.headers["Location"] == "/deliveries/?status=failed"
    again = Notification.get_by_id(failed.id)
    assert again.status == "queued" and (utcnow() - again.next_attempt_at).total_seconds() < 5
    assert again.message_id == failed.message_id  # the same message, the same Message-ID
    entry = AuditEntry.get(AuditEntry.action == "retry")
    assert entry.actor_name == client.user.username and entry.object_id == failed.id
    assert entry.object_name == f"#{failed.id} Your invoice"
    assert entry.changes == {"status": ["failed", "queued"]}
    assert "is queued again" in client.get("/deliveries/").get_data(as_text=True)


def test_a_retry_button_without_javascript_returns_to_the_list_it_was_clicked_in(app, operator):
    # The list's Retry form posts its CSRF token alone to a URL that carries next=.
    make_account(is_default=True)
    failed = make_notification("failed")
    response = operator.post(f"/deliveries/{failed.id}/retry?next=/deliveries/?status%3Dfailed")
    assert response.status_code == 303 and response.headers["Location"] == "/deliveries/?status=failed"
    assert Notification.get_by_id(failed.id).status == "queued"
    assert operator.post(f"/deliveries/{failed.id}/retry?next=https://evil.example/").headers[
        "Location"] == f"/deliveries/{failed.id}"  # not retried twice (refused), and never off the site


def test_a_retry_from_the_list_swaps_the_row_and_starts_the_counts_refreshing(app, operator):
    make_account(is_default=True)
    failed = make_notification("failed")
    response = operator.htmx("post", f"/deliveries/{failed.id}/retry", data={"next": "/deliveries/"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html
    assert html.lstrip().startswith(f'<tr id="notification-{failed.id}"') and "status-queued" in html
    assert 'id="delivery-counts"' in html and 'hx-swap-oob="true"' in html and POLLING in html


def test_only_failed_notifications_can_be_retried(app, operator):
    make_account(is_default=True)
    sent = make_notification("sent")
    response = operator.htmx("post", f"/deliveries/{sent.id}/retry")
    assert response.status_code == 409 and "Only a failed notification can be retried" in response.get_data(
        as_text=True)
    plain = operator.post(f"/deliveries/{sent.id}/retry")
    assert plain.status_code == 303
    assert Notification.get_by_id(sent.id).status == "sent"
    assert not AuditEntry.select().where(AuditEntry.action == "retry").exists()


def test_auditors_cannot_retry_and_see_no_retry_button(app, auditor):
    make_account(is_default=True)
    failed = make_notification("failed")
    assert "/retry" not in auditor.get("/deliveries/").get_data(as_text=True)
    assert "/retry" not in auditor.get(f"/deliveries/{failed.id}").get_data(as_text=True)
    assert auditor.post(f"/deliveries/{failed.id}/retry").status_code == 403
    assert Notification.get_by_id(failed.id).status == "failed"


def test_retry_needs_the_csrf_token(app, operator):
    make_account(is_default=True)
    failed = make_notification("failed")
    assert operator.post(f"/deliveries/{failed.id}/retry", csrf=False).status_code == 400
    assert Notification.get_by_id(failed.id).status == "failed"


# --- SECURITY 24: stored text is shown escaped ----------------------------------------------------------------------


def test_markup_in_subject_recipients_and_replies_is_escaped_everywhere(app, admin):
    make_account(name="<b>acct</b>", is_default=True)
    notification = make_notification(
        "failed", subject="<script>alert(1)</script>", to='"<img src=x onerror=alert(2)>" <x@example.com>',
        text="</pre><script>alert(3)</script>", last_reply="<script>alert(4)</script>",
        headers_sent="Subject: <script>alert(5)</script>")
    DeliveryAttempt.create(notification=notification, reply='"><img onerror=alert(6)>', ok=False)
    for html in (admin.get("/deliveries/").get_data(as_text=True),
                 admin.htmx("get", "/deliveries/?status=failed").get_data(as_text=True),
                 admin.get(f"/deliveries/{notification.id}").get_data(as_text=True)):
        assert "<script>alert" not in html and "<img src=x" not in html and "<img onerror" not in html
        assert "<b>acct</b>" not in html and "&lt;b&gt;acct&lt;/b&gt;" in html
    detail = admin.get(f"/deliveries/{notification.id}").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail
    assert "&lt;img src=x onerror=alert(2)&gt;" in detail
    assert "&lt;/pre&gt;&lt;script&gt;alert(3)" in detail


def test_rows_follow_every_change_and_retry_posts_this_sessions_token(app, operator, auditor):
    make_account(name="Billing", is_default=True)
    notification = make_notification("retrying", subject="Invoice 42", attempts=1, last_code=451,
                                     last_reply="451 4.3.0 try later")
    assert "451 4.3.0 try later" in operator.get("/deliveries/").get_data(as_text=True)

    Notification.update(status="sent", attempts=2, last_code=250, last_reply="250 2.0.0 Ok: queued as Y",
                        sent_at=utcnow()).where(Notification.id == notification.id).execute()
    sent = operator.get("/deliveries/").get_data(as_text=True)
    assert 'status-sent">Sent<' in sent and "250 2.0.0 Ok: queued as Y" in sent and "451 4.3.0" not in sent

    Notification.update(status="failed").where(Notification.id == notification.id).execute()
    for client in (operator, make_client(app, "operator")):
        html = client.get("/deliveries/").get_data(as_text=True)
        with client.session_transaction() as session:
            raw = session["csrf_token"]
        row = html[html.index(f'<tr id="notification-{notification.id}"'):html.index("</tbody>")]
        token = re.search(r'<form method="post" action="[^"]*/retry[^"]*"[^>]*>\s*'
                          r'<input type="hidden" name="csrf_token" value="([^"]+)">', row).group(1)
        assert URLSafeTimedSerializer(app.secret_key, salt="wtf-csrf-token").loads(token) == raw
    listed = auditor.get("/deliveries/").get_data(as_text=True)
    assert ">Retry<" not in listed and "/retry" not in listed
