"""The audit log: who changed what, and when."""
from flask import Blueprint

bp = Blueprint("audit", __name__, url_prefix="/audit")

from webapp.audit import routes  # noqa: E402,F401
