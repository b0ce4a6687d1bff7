"""Whether the service can do its work: the database (reachable, every migration applied), an outbox worker (a
recent heartbeat) and the outbox (counts by status, the oldest queued notification's age).

The report holds numbers and states only, never a name, address, host or path: /readyz answers anyone.
"""
import logging
import os

from peewee import PeeweeException

from webapp import db, postgresql
from webapp.models import Notification, WorkerHeartbeat, utcnow
from webapp.outbox import outbox_counts

log = logging.getLogger(__name__)


def report(config) -> dict:
    """{"ready": bool, "database": {...}, "worker": {...}, "outbox": {...}}; worker and outbox are None when the
    database cannot be read."""
    database = _database(config)
    if not database["ok"]:
        return {"ready": False, "database": database, "worker": None, "outbox": None}
    try:
        worker = _worker(float(config["READY_HEARTBEAT_MAX_AGE_SECONDS"]))
        outbox = {"counts": outbox_counts(), "oldest_queued_age_seconds": oldest_queued_age()}
    except PeeweeException as error:
        return {"ready": False, "database": _unreachable(error), "worker": None, "outbox": None}
    return {"ready": worker["ok"], "database": database, "worker": worker, "outbox": outbox}


def _database(config) -> dict:
    location = db.location(config)
    if not postgresql.is_url(location) and location != ":memory:" and not os.path.exists(location):
        # Opening it would create an empty database in its place.
        log.error("readiness: the SQLite database file is missing")
        return {"ok": False, "status": "missing"}
    try:
        db.keep_connection()
        version = db.schema_version()
    except PeeweeException as error:
        return _unreachable(error)
    latest = db.latest_version()
    status = "current" if version == latest else "behind" if version < latest else "ahead"
    # Ahead: a newer smtpdesk migrated it (a rolling upgrade); this one still works on the tables it knows.
    return {"ok": version >= latest, "status": status, "schema_version": version, "expected_schema_version": latest}


def _unreachable(error: Exception) -> dict:
    log.error("readiness: the database cannot be reached: %s", error)
    # A connection that failed is not kept for the next request of this thread: it opens a new one.
    try:
        db.database.close()
    except PeeweeException:
        pass
    return {"ok": False, "status": "unreachable"}


def _worker(max_age: float) -> dict:
    age, alive = WorkerHeartbeat.ages(max_age)
    return {"ok": age is not None and age <= max_age, "last_heartbeat_age_seconds": _rounded(age),
            "heartbeat_max_age_seconds": max_age, "workers": alive}


def oldest_queued_age() -> float | None:
    """Seconds since the oldest notification still queued (never tried, or put back untried) was created; None
    when none is. One step along the (status, created_at) index, whatever the size of the outbox."""
    oldest = (Notification.select(Notification.created_at).where(Notification.status == "queued")
              .order_by(Notification.created_at).limit(1).scalar())
    return None if oldest is None else _rounded((utcnow() - oldest).total_seconds())


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(max(0.0, seconds), 3)
