"""Network connectors: proxy hops (SOCKS5, SOCKS4, HTTP CONNECT) that accounts may go through."""
from flask import Blueprint

bp = Blueprint("connectors", __name__, url_prefix="/connectors")

from webapp.connectors import routes  # noqa: E402,F401
