"""People who sign in, and their roles (admins only)."""
from flask import Blueprint

bp = Blueprint("users", __name__, url_prefix="/users")

from webapp.users import routes  # noqa: E402,F401
