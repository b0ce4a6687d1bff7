"""The deliveries screen: every notification, where its delivery stands, each attempt, and Retry."""
from flask import Blueprint

bp = Blueprint("deliveries", __name__, url_prefix="/deliveries")

from webapp.deliveries import routes  # noqa: E402,F401
