"""Prometheus metrics (GET /metrics), read from the database when scraped.

Every number comes from the database: the delivery counters (notifications by final status, delivery durations, SMTP
failures by step, failovers) are added to in the transaction that records the outcomes (outcomes.record() calls
count_outcomes(); a claim failing notifications whose lease expired too often calls count_gave_up()), and the gauges
(queue depth, oldest queued age, last test per account, readiness) are read as they are. So whichever process
answers the scrape (waitress, any gunicorn worker) gives the same numbers, and deliveries made by any worker, in the
server or in `smtpdesk worker` processes on this host or another, are counted exactly once; nothing is lost when a
process restarts, and no multiprocess directory is needed (PROMETHEUS_MULTIPROC_DIR plays no part). A scrape reads a
few rows per account, the tally and one index step: its cost does not grow with the number of notifications.
"""
from collections import Counter
from datetime import timezone

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import choose_encoder

from webapp import db
from webapp.db import database
from webapp.models import DeliveryMetric, SmtpAccount

# Upper bounds, in seconds, of the delivery duration histogram's buckets (+Inf is added). Changing them splits the
# history: the stored counts are per bucket.
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
FINAL = ("sent", "failed")
QUEUE = ("queued", "retrying", "sending")
LISTED = ("failures", "failovers")  # counters shown as stored: by step, by backup


# --- Counting: called where things happen ------------------------------------------------------------------------


def count_outcomes(rows, held) -> None:
    """Add recorded attempts to the counters, inside outcomes.record()'s transaction (so they count once, with the
    attempt rows). rows: (Outcome, the notification's new values) pairs; held: ids of the notifications still
    leased to the recording worker (another worker's final status is the other worker's to count, except a
    delivery, which is a fact)."""
    counts = Counter()
    for outcome, values in rows:
        account, result = outcome.account.id, outcome.result
        status = values.get("status")
        if status in FINAL and (outcome.notification.id in held or result.ok):
            counts[account, "notifications", status] += 1
        if result.ok:
            counts[account, "duration_le", _bucket(result.elapsed)] += 1
            counts[account, "duration_ms", "sum"] += round(result.elapsed * 1000)
        elif result.error is not None:
            counts[account, "failures", result.error.step.value] += 1
    DeliveryMetric.add(counts)


def count_gave_up(account_ids) -> None:
    """Count notifications failed because their worker's lease expired once too often (a claim taking them back:
    queue._reclaim_expired), one per account id listed, inside that claim's transaction. Counted there only: the
    worker that held the lease records its late outcome without counting a final status it no longer holds
    (count_outcomes), and only one claim takes back each expired lease."""
    DeliveryMetric.add(Counter((account_id, "notifications", "failed") for account_id in account_ids))


def failover(primary, backup, notifications: int = 1) -> None:
    """Count notifications of the primary account sent through its backup because the primary failed (accounts or
    their ids). Inside a transaction (outcomes.record()'s), it adds to it; otherwise it commits on its own."""
    from webapp.outbox.queue import connection, retry_locked  # here: webapp.outbox.outcomes imports this module

    counts = Counter({(_id(primary), "failovers", str(_id(backup))): notifications})

    def work():
        with database.atomic():
            DeliveryMetric.add(counts)

    with connection():
        retry_locked(work)


def _id(account) -> int:
    return getattr(account, "id", account)


def _bucket(seconds: float) -> str:
    return next((_label(bound) for bound in BUCKETS if seconds <= bound), "+Inf")


def _label(bound: float) -> str:
    return f"{bound:g}"


# --- Reading: the scrape -----------------------------------------------------------------------------------------


def exposition(readiness: dict, accept: str | None = None) -> tuple[bytes, str]:
    """(the metrics, their content type): Prometheus's text format, or OpenMetrics when the Accept header asks for
    it, as prometheus_client's own server chooses. readiness: webapp.health.readiness.report() of this scrape, whose
    database was reachable."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(readiness))
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


class _Collector:
    """The metric families of one scrape, read from the database."""

    def __init__(self, readiness: dict):
        self.readiness = readiness

    def collect(self):
        yield from self._service()
        accounts = {a.id: a for a in SmtpAccount.select(SmtpAccount.id, SmtpAccount.name, SmtpAccount.last_test_at,
                                                        SmtpAccount.last_test_ok).order_by(SmtpAccount.name)}
        # Plain rows: peewee's conversion of each value cost more than the rest of the scrape.
        stored = Counter({(account_id, name, label): value for account_id, name, label, value in db.execute(
            'SELECT "account_id", "name", "label", "value" FROM "delivery_metric"')})
        yield from self._deliveries(accounts, stored)
        yield from self._last_tests(accounts)

    def _service(self):
        worker, outbox = self.readiness["worker"] or {}, self.readiness["outbox"] or {}
        yield _gauge("smtpdesk_ready", "1 when /readyz answers 200: the database is reachable and migrated, and a "
                     "worker's heartbeat is recent; else 0.", value=int(bool(self.readiness["ready"])))
        age = worker.get("last_heartbeat_age_seconds")
        if age is not None:
            yield _gauge("smtpdesk_worker_heartbeat_age_seconds", "Seconds since an outbox worker last wrote its "
                         "heartbeat (the most recent of them).", value=age)
        depth = GaugeMetricFamily("smtpdesk_queue_depth", "Notifications waiting or being sent, by status.",
                                  labels=["status"])
        for status in QUEUE:
            depth.add_metric([status], outbox.get("counts", {}).get(status, 0))
        yield depth
        yield _gauge("smtpdesk_queue_oldest_age_seconds", "Seconds since the oldest notification still queued "
                     "(never tried yet) was created; 0 when none is.",
                     value=outbox.get("oldest_queued_age_seconds") or 0)

    def _deliveries(self, accounts, stored):
        notifications = CounterMetricFamily("smtpdesk_notifications", "Notifications that reached a final status "
                                            "(sent, failed), by account.", labels=["account", "status"])
        durations = HistogramMetricFamily("smtpdesk_delivery_duration_seconds", "How long one successful "
                                          "delivery's SMTP dialogue took, by account.", labels=["account"])
        failures = CounterMetricFamily("smtpdesk_smtp_failures", "Failed delivery attempts (each retry counts), by "
                                       "account and the step that failed.", labels=["account", "step"])
        failovers = CounterMetricFamily("smtpdesk_failovers", "Notifications sent through a backup account because "
                                        "their account failed, by account and backup.", labels=["account", "backup"])
        for account_id, account in accounts.items():
            for status in FINAL:
                notifications.add_metric([account.name, status], stored[account_id, "notifications", status])
            buckets, total = [], 0
            for bound in (*map(_label, BUCKETS), "+Inf"):
                total += stored[account_id, "duration_le", bound]
                buckets.append((bound, total))
            durations.add_metric([account.name], buckets, stored[account_id, "duration_ms", "sum"] / 1000)
        for (account_id, name, label), value in sorted(item for item in stored.items() if item[0][1] in LISTED):
            if account_id not in accounts:  # created after the accounts were read
                continue
            if name == "failures":
                failures.add_metric([accounts[account_id].name, label], value)
            elif name == "failovers":
                backup = accounts.get(int(label))
                failovers.add_metric([accounts[account_id].name, backup.name if backup else f"#{label}"], value)
        yield from (notifications, durations, failures, failovers)

    def _last_tests(self, accounts):
        ok = GaugeMetricFamily("smtpdesk_account_last_test_success", "1 when the account's last test (or a delivery "
                               "finding its login refused) succeeded, 0 when it failed; absent if never tested.",
                               labels=["account"])
        at = GaugeMetricFamily("smtpdesk_account_last_test_timestamp_seconds", "When the account was last tested "
                               "(Unix time).", labels=["account"])
        for account in accounts.values():
            if account.last_test_ok is not None:
                ok.add_metric([account.name], int(account.last_test_ok))
            if account.last_test_at is not None:
                at.add_metric([account.name], _unix(account.last_test_at))
        yield from (ok, at)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _unix(naive_utc) -> float:
    return naive_utc.replace(tzinfo=timezone.utc).timestamp()
