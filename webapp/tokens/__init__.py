"""The API tokens screen: admins create bearer tokens for the HTTP API and revoke them."""
from flask import Blueprint

bp = Blueprint("tokens", __name__, url_prefix="/tokens")

from webapp.tokens import routes  # noqa: E402,F401
