"""The settings screen: system-wide values admins edit, such as the footer of every notification."""
from flask import Blueprint

bp = Blueprint("settings", __name__, url_prefix="/settings")

from webapp.settings import routes  # noqa: E402,F401
