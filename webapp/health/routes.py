"""GET /healthz (the process answers), /readyz (it can do its work) and /metrics (Prometheus, with its token).

No sign-in, no CSRF, no page layout: JSON or Prometheus text, never cached. They open the database connection
themselves (webapp.db.OWN_CONNECTION_BLUEPRINTS), so that /healthz answers while the database is down and /readyz
and /metrics say it is down instead of failing.
"""
import hashlib
import hmac

from flask import current_app, jsonify, request
from peewee import PeeweeException

from webapp.health import bp, readiness
from webapp.metrics import exposition

NO_STORE = {"Cache-Control": "no-store"}


@bp.get("/healthz")
def healthz():
    """200 while this process answers requests; reads nothing."""
    return jsonify(status="ok"), 200, NO_STORE


@bp.get("/readyz")
def readyz():
    """200 when the database is reachable and migrated and a worker's heartbeat is recent, else 503; JSON either
    way, with the outbox's counts (numbers and states only: it answers anyone)."""
    report = readiness.report(current_app.config)
    return jsonify(report), 200 if report["ready"] else 503, NO_STORE


@bp.get("/metrics")
def metrics():
    """The Prometheus metrics, for a scraper sending METRICS_TOKEN as a bearer token."""
    refusal = _refusal()
    if refusal is not None:
        return refusal
    report = readiness.report(current_app.config)
    if report["database"]["status"] not in ("current", "ahead"):
        return _text(f"The database is {report['database']['status']}: no metrics.\n", 503)
    try:
        body, content_type = exposition(report, request.headers.get("Accept"))
    except PeeweeException:
        current_app.logger.exception("metrics: the database could not be read")
        return _text("The database could not be read: no metrics.\n", 503)
    return body, 200, {"Content-Type": content_type, **NO_STORE}


def _refusal():
    """None when the request carries the metrics token; else 403 (no token configured: metrics are off) or 401."""
    expected = current_app.config.get("METRICS_TOKEN")
    if not expected:
        return _text("Metrics are off: set METRICS_TOKEN (SMTPDESK_METRICS_TOKEN) and send it as "
                     "Authorization: Bearer <token>.\n", 403)
    scheme, _space, given = request.headers.get("Authorization", "").strip().partition(" ")
    # Compared as digests: in constant time whatever the lengths.
    if scheme.lower() != "bearer" or not hmac.compare_digest(_digest(given.strip()), _digest(str(expected))):
        return _text("Send the metrics token: Authorization: Bearer <token>.\n", 401,
                     {"WWW-Authenticate": 'Bearer realm="smtpdesk metrics"'})
    return None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


def _text(message: str, status: int, headers: dict | None = None):
    return message, status, {"Content-Type": "text/plain; charset=utf-8", **NO_STORE, **(headers or {})}
