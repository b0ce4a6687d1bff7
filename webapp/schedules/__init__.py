"""Scheduled reports: the SMTP accounts report e-mailed as CSV, daily, weekly or monthly.

The screen (admins) creates, lists and removes schedules; run_due_schedules() is what the outbox worker calls.
"""
from flask import Blueprint

from webapp.schedules.runner import next_run, run_due_schedules

bp = Blueprint("schedules", __name__, url_prefix="/schedules")

from webapp.schedules import routes  # noqa: E402,F401

__all__ = ["bp", "next_run", "run_due_schedules"]
