"""The SMTP accounts report and the account form."""
from flask import Blueprint

bp = Blueprint("accounts", __name__, url_prefix="/accounts")

from webapp.accounts import routes  # noqa: E402,F401
