"""Sign-in lock-out: too many recent failures for a username or from an address.

Failures are counted from the audit log's login_failed entries, so every process and thread sees the same
counts and a restart forgets nothing. A success resets nobody's count: the lock ends only when the window
has passed over the failures.
"""
from datetime import timedelta

from flask import current_app

from webapp.models import AuditEntry, utcnow

FAILED = "login_failed"


def window_seconds() -> int:
    """How long a failure counts towards a lock-out."""
    return int(current_app.config["LOGIN_WINDOW_SECONDS"])


def login_locked(username: str, remote_addr: str) -> bool:
    """Whether sign-in is refused now for this (normalised) username or from this client address."""
    config = current_app.config
    since = utcnow() - timedelta(seconds=window_seconds())
    recent = AuditEntry.select().where(AuditEntry.action == FAILED, AuditEntry.at >= since)
    by_user = recent.where(AuditEntry.object_name == username).limit(config["LOGIN_MAX_FAILURES_PER_USER"])
    if by_user.count() >= config["LOGIN_MAX_FAILURES_PER_USER"]:
        return True
    by_address = recent.where(AuditEntry.remote_addr == (remote_addr or "")[:64])
    by_address = by_address.limit(config["LOGIN_MAX_FAILURES_PER_ADDRESS"])
    return by_address.count() >= config["LOGIN_MAX_FAILURES_PER_ADDRESS"]
