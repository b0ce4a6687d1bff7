"""The credential vault: logins that SMTP accounts authenticate with."""
from flask import Blueprint

bp = Blueprint("credentials", __name__, url_prefix="/credentials")

from webapp.credentials import routes  # noqa: E402,F401
