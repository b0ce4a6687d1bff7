"""The HTTP API (JSON, bearer tokens): other systems send notifications and follow their delivery."""
from flask import Blueprint

from webapp.extensions import csrf

bp = Blueprint("api", __name__, url_prefix="/api/v1")
# Authenticated by a bearer token in a header that a browser never adds by itself, never by the session cookie,
# so a cross-site request cannot ride on a signed-in browser: CSRF tokens have nothing to protect here.
csrf.exempt(bp)

from webapp.api import routes  # noqa: E402,F401
