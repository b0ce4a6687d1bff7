"""GET /metrics: Prometheus text read from the database, only with the metrics token; parsed here with
prometheus-client's own parser after real deliveries to aiosmtpd servers."""
import http.client
import json
import math
import re
import shutil
import signal
import subprocess
import sys
from datetime import timedelta, timezone
from pathlib import Path

import pytest
import yaml
from cryptography.fernet import Fernet
from prometheus_client.parser import text_string_to_metric_families

from tests.support.factories import make_account, make_notification, make_user
from tests.support.net import free_port, wait_for_port
from tests.support.outbox import FAST, account_for, drain
from tests.support.processes import instance_env, start, stop, wait_for
from webapp import create_app, metrics
from webapp.config import ConfigError
from webapp.db import database
from webapp.mail.errors import MailError, Step
from webapp.mail.transport import SendResult
from webapp.models import ApiToken, DeliveryAttempt, Notification, SmtpAccount, WorkerHeartbeat, utcnow
from webapp.outbox import OutboxSettings, claim, send_notification
from webapp.outbox.outcomes import Outcome, record

pytestmark = pytest.mark.engines("sqlite", "postgresql")

TOKEN = "metrics-token-for-the-tests-0123456789"
DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture
def scrape(app, client):
    """scrape() -> {(sample name, ((label, value), ...)): value}, with the metrics token configured and sent."""
    app.config["METRICS_TOKEN"] = TOKEN

    def scrape():
        response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert response.headers["Cache-Control"] == "no-store"
        return samples_of(response.get_data(as_text=True))

    return scrape


def samples_of(text: str) -> dict:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: dict, name: str, **labels):
    """The sample's value, None when it is not in the scrape."""
    return samples.get((name, tuple(sorted(labels.items()))))


def histogram(samples: dict, name: str, **labels) -> list[tuple[float, float]]:
    """[(le, cumulative count)] of a histogram, in bucket order."""
    buckets = [(float(dict(key)["le"]), count) for (sample, key), count in samples.items()
               if sample == f"{name}_bucket" and {k: v for k, v in key if k != "le"} == labels]
    return sorted(buckets)


# --- Access ---------------------------------------------------------------------------------------------------


def test_metrics_are_off_until_a_token_is_configured(app, client, admin):
    response = client.get("/metrics", headers={"Authorization": "Bearer anything-at-all-0123456789"})
    assert response.status_code == 403 and "METRICS_TOKEN" in response.get_data(as_text=True)
    assert "smtpdesk_" not in response.get_data(as_text=True)
    assert admin.get("/metrics").status_code == 403  # a signed-in session counts for nothing


def test_metrics_need_the_metrics_token(app, client, admin):
    app.config["METRICS_TOKEN"] = TOKEN
    _row, api_token = ApiToken.issue("ci", created_by=make_user("admin", username="owner"))
    for headers in ({}, {"Authorization": f"Bearer {TOKEN[:-1]}"}, {"Authorization": f"Bearer {TOKEN}x"},
                    {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN},
                    {"Authorization": f"Bearer {api_token}"}, {"Authorization": "Bearer "}):
        for anyone in (client, admin):
            response = anyone.get("/metrics", headers=headers)
            assert response.status_code == 401, headers
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert "smtpdesk_" not in response.get_data(as_text=True) and TOKEN not in response.get_data(as_text=True)
    assert client.get(f"/metrics?token={TOKEN}").status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"bearer  {TOKEN} "}).status_code == 200


def test_a_short_metrics_token_stops_the_app_at_start(tmp_path):
    with pytest.raises(ConfigError, match="METRICS_TOKEN must be at least 24 characters"):
        create_app({"TESTING": True, "SECRET_KEY": "k", "VAULT_KEYS": Fernet.generate_key().decode(),
                    "DATABASE": str(tmp_path / "x.db"), "METRICS_TOKEN": "short"})


def test_metrics_are_503_when_the_database_is_unreachable(app, scrape, client, engine):
    from tests.test_health import database_gone

    scrape()
    with database_gone(app, engine):
        response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 503 and "smtpdesk_" not in response.get_data(as_text=True)


# --- What is counted ---------------------------------------------------------------------------------------------


def test_deliveries_sent_and_failed_are_counted_by_account_status_and_step(app, scrape, smtp_server, closed_port):
    alerts = account_for(smtp_server(), name="Alerts")
    billing = account_for(smtp_server(replies={"RCPT": "550 5.1.1 no such user"}), name="Billing", is_default=False)
    down = make_account(name="Down", host="127.0.0.1", port=closed_port)
    for n in range(3):
        send_notification(to=[f"ops{n}@example.org"], subject="Disk", text="91%", account=alerts.name)
    for n in range(2):
        send_notification(to=[f"nobody{n}@example.org"], subject="Invoice", text="Ready", account=billing.name)
    send_notification(to=["ops@example.org"], subject="Disk", text="91%", account=down.name)
    drain(max_attempts=2)

    samples = scrape()
    assert value(samples, "smtpdesk_notifications_total", account="Alerts", status="sent") == 3
    assert value(samples, "smtpdesk_notifications_total", account="Alerts", status="failed") == 0
    assert value(samples, "smtpdesk_notifications_total", account="Billing", status="failed") == 2
    assert value(samples, "smtpdesk_notifications_total", account="Down", status="failed") == 1
    assert value(samples, "smtpdesk_smtp_failures_total", account="Billing", step="recipient") == 2
    assert value(samples, "smtpdesk_smtp_failures_total", account="Down", step="connect") == 2  # each attempt
    assert value(samples, "smtpdesk_smtp_failures_total", account="Alerts", step="recipient") is None

    buckets = histogram(samples, "smtpdesk_delivery_duration_seconds", account="Alerts")
    assert [le for le, _count in buckets] == [*metrics.BUCKETS, math.inf]
    assert [count for _le, count in buckets] == sorted(count for _le, count in buckets)  # cumulative
    assert buckets[-1][1] == value(samples, "smtpdesk_delivery_duration_seconds_count", account="Alerts") == 3
    assert value(samples, "smtpdesk_delivery_duration_seconds_sum", account="Alerts") > 0
    assert value(samples, "smtpdesk_delivery_duration_seconds_count", account="Billing") == 0

    # Counters only grow: a second round adds to them.
    send_notification(to=["ops@example.org"], subject="Disk", text="95%", account=alerts.name)
    drain()
    assert value(scrape(), "smtpdesk_notifications_total", account="Alerts", status="sent") == 4


def test_a_retried_notification_counts_each_attempts_failure_and_its_final_status_once(app, scrape, smtp_server):
    server = smtp_server(replies={"DATA": "451 4.3.0 try again later"})
    account_for(server, name="Flaky")
    make_notification(to="ana@example.org")
    drain(max_attempts=3)
    samples = scrape()
    assert value(samples, "smtpdesk_smtp_failures_total", account="Flaky", step="data") == 3
    assert value(samples, "smtpdesk_notifications_total", account="Flaky", status="failed") == 1
    assert Notification.get().status == "failed"


def test_a_notification_failed_when_its_lease_expired_once_too_often_is_counted_failed_once(app, scrape, smtp_server):
    """A worker dies mid-send: the claim that takes its expired lease back past the attempt limit fails the
    notification and counts it, once; not again when the dead worker's late outcome comes in, nor by later claims."""
    server = smtp_server()
    account = account_for(server, name="Orphaned")
    notification = make_notification(account=account, attempts=1)  # its last attempt at OUTBOX_MAX_ATTEMPTS=2
    settings = OutboxSettings(**{**FAST, "max_attempts": 2})
    [claimed] = claim("dead-worker", settings)
    Notification.update(lease_until=utcnow() - timedelta(seconds=1)).execute()

    assert claim("next-worker", settings) == []  # took it back: the lost attempt was its last
    assert value(scrape(), "smtpdesk_notifications_total", account="Orphaned", status="failed") == 1
    # The dead worker was only stalled: it records a failure of its own, after the fact.
    late = SendResult.refusal(MailError(Step.DATA, True, "Try again later.", "", code=451, reply="try again"))
    record("dead-worker", [Outcome(claimed, account, late, utcnow(), None, final=True)], settings)
    drain(max_attempts=2)

    samples = scrape()
    assert value(samples, "smtpdesk_notifications_total", account="Orphaned", status="failed") == 1
    assert value(samples, "smtpdesk_notifications_total", account="Orphaned", status="sent") == 0
    # The delivery log agrees: one failed notification, with its lost attempt (and the late one) in its log.
    assert [(n.id, n.status, n.attempts) for n in Notification.select()] == [(notification.id, "failed", 2)]
    assert DeliveryAttempt.select().where(DeliveryAttempt.step == "lease_expired").count() == 1
    assert server.received == []


def test_queue_depth_and_the_oldest_queued_age(app, scrape):
    account = make_account(is_default=True, name="Queue")
    make_notification(account=account, created_at=utcnow() - timedelta(minutes=12))
    make_notification(account=account)
    make_notification(account=account, status="retrying")
    make_notification(account=account, status="sent")
    samples = scrape()
    assert value(samples, "smtpdesk_queue_depth", status="queued") == 2
    assert value(samples, "smtpdesk_queue_depth", status="retrying") == 1
    assert value(samples, "smtpdesk_queue_depth", status="sending") == 0
    assert 12 * 60 <= value(samples, "smtpdesk_queue_oldest_age_seconds") < 13 * 60
    Notification.update(status="sent").execute()
    assert value(scrape(), "smtpdesk_queue_oldest_age_seconds") == 0


def test_the_last_test_result_of_each_account(app, scrape):
    tested_at = utcnow().replace(microsecond=0)
    make_account(name="Good", last_test_ok=True, last_test_at=tested_at)
    make_account(name="Bad", last_test_ok=False, last_test_at=tested_at)
    make_account(name="Never")
    samples = scrape()
    assert value(samples, "smtpdesk_account_last_test_success", account="Good") == 1
    assert value(samples, "smtpdesk_account_last_test_success", account="Bad") == 0
    assert value(samples, "smtpdesk_account_last_test_success", account="Never") is None
    assert value(samples, "smtpdesk_account_last_test_timestamp_seconds", account="Good") == \
        tested_at.replace(tzinfo=timezone.utc).timestamp()
    assert value(samples, "smtpdesk_account_last_test_timestamp_seconds", account="Never") is None


def test_failovers_are_counted_by_account_and_backup(app, scrape):
    primary, backup = make_account(name="Primary"), make_account(name="Backup")
    metrics.failover(primary, backup)
    with database.atomic():  # inside the caller's transaction, as the worker's record would be
        metrics.failover(primary.id, backup.id, notifications=4)
    samples = scrape()
    assert value(samples, "smtpdesk_failovers_total", account="Primary", backup="Backup") == 5
    assert value(samples, "smtpdesk_failovers_total", account="Backup", backup="Primary") is None


def test_readiness_is_a_metric_too(app, scrape):
    samples = scrape()
    assert value(samples, "smtpdesk_ready") == 0
    assert value(samples, "smtpdesk_worker_heartbeat_age_seconds") is None
    WorkerHeartbeat.beat("host:1:abc")
    samples = scrape()
    assert value(samples, "smtpdesk_ready") == 1
    assert 0 <= value(samples, "smtpdesk_worker_heartbeat_age_seconds") < 60


def test_a_deleted_account_takes_its_counters_with_it(app, scrape, smtp_server):
    account = account_for(smtp_server(), name="Short-lived")
    make_notification(account=account)
    drain()
    assert value(scrape(), "smtpdesk_notifications_total", account="Short-lived", status="sent") == 1
    Notification.delete().execute()
    SmtpAccount.delete().where(SmtpAccount.id == account.id).execute()
    assert not [key for key in scrape() if ("account", "Short-lived") in key[1]]


# --- The examples in docs/ --------------------------------------------------------------------------------------

METRIC_NAME = re.compile(r"\bsmtpdesk_[a-z_]+\b")


def test_the_dashboard_and_the_alert_rules_use_only_metrics_that_exist(app, scrape, smtp_server):
    account = account_for(smtp_server(), name="Alerts", last_test_ok=True, last_test_at=utcnow())
    refusing = account_for(smtp_server(replies={"RCPT": "550 5.1.1 no such user"}), name="Refusing",
                           is_default=False)
    make_notification(account=account)
    make_notification(account=refusing)
    drain()
    metrics.failover(account, make_account(name="Backup"))
    WorkerHeartbeat.beat("host:1:abc")
    exposed = {name for name, _labels in scrape()}

    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    expressions = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            expressions.append(target["expr"])
    expressions += [variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
                    for variable in variables.values() if variable["type"] == "query"]

    rules = yaml.safe_load((DOCS / "prometheus-alerts.yml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert {"SmtpdeskQueueStuck", "SmtpdeskAccountFailing", "SmtpdeskNotReady"} <= {rule["alert"] for rule in alerts}
    for rule in alerts:
        assert rule["expr"] and rule["labels"]["severity"] and rule["annotations"]["summary"], rule["alert"]
        expressions.append(rule["expr"])

    used = {name for expression in expressions for name in METRIC_NAME.findall(str(expression))}
    assert used and used <= exposed, used - exposed
    assert {"smtpdesk_queue_oldest_age_seconds", "smtpdesk_ready", "smtpdesk_notifications_total"} <= used


# --- Across processes: gunicorn's workers and `smtpdesk worker` --------------------------------------------------


def scrape_over_http(port: int) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        response = connection.getresponse()
        assert response.status == 200
        return samples_of(response.read().decode())
    finally:
        connection.close()


def test_gunicorn_workers_show_what_a_separate_worker_process_delivered(app, tmp_path, smtp_server):
    """Deliveries by a `smtpdesk worker` process are counted in the database, so each of gunicorn's processes
    answers the scrape with the same numbers."""
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent))
    server = smtp_server()
    account = account_for(server, name="Alerts")
    for n in range(6):
        make_notification(account=account, to=f"ops{n}@example.org")
    env = instance_env(app, METRICS_TOKEN=TOKEN, OUTBOX_POLL_SECONDS=0.05, WORKER_HEARTBEAT_SECONDS=0.2)
    port = free_port()
    with open(tmp_path / "gunicorn.log", "w") as log:
        web = subprocess.Popen([gunicorn, "--preload", "--workers", "2", "--threads", "2", "--bind",
                                f"127.0.0.1:{port}", "webapp:create_app_or_exit()"], env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    worker = start(["worker"], env, tmp_path, "worker")
    try:
        wait_for_port(port, timeout=60)  # a busy machine takes its time to start two processes
        wait_for(lambda: len(server.received) == 6, 60, "the worker process to deliver")
        sent = ("smtpdesk_notifications_total", (("account", "Alerts"), ("status", "sent")))
        wait_for(lambda: scrape_over_http(port).get(sent) == 6, 30, "the deliveries to be recorded")
        scrapes = [scrape_over_http(port) for _ in range(12)]  # gunicorn hands them to both of its processes
        assert {scraped[sent] for scraped in scrapes} == {6}
        assert {scraped[("smtpdesk_ready", ())] for scraped in scrapes} == {1}
    finally:
        stop(worker)
        web.send_signal(signal.SIGTERM)
        assert web.wait(30) == 0
    assert "Traceback" not in (tmp_path / "gunicorn.log").read_text()
    assert "Traceback" not in (tmp_path / "worker.log").read_text()
