"""Health and metrics for monitoring systems: GET /healthz, /readyz and /metrics (README "Monitoring")."""
from flask import Blueprint

from webapp.extensions import csrf

bp = Blueprint("health", __name__)
# No session, no form: nothing for CSRF to protect (and they only read).
csrf.exempt(bp)

from webapp.health import routes  # noqa: E402,F401
