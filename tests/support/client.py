"""The test client: CSRF tokens sent like a browser's page sends them, a fresh app context per request, htmx."""
import re
from urllib.parse import urlsplit

from flask.testing import FlaskClient

from tests.support.factories import PASSWORD

CSRF_IN_PAGE = re.compile(r'"X-CSRFToken": "([^"]+)"')
# Signing in or out starts a new session (webapp.auth.routes), whose pages carry another CSRF token.
SESSION_STARTS = {"/auth/login", "/auth/setup", "/auth/logout"}


class Client(FlaskClient):
    """A test client that sends the CSRF token with every state-changing request unless csrf=False."""

    csrf_token = None

    def open(self, *args, csrf=True, **kwargs):
        method = (kwargs.get("method") or "GET").upper()
        if csrf and method not in ("GET", "HEAD", "OPTIONS"):
            headers = dict(kwargs.pop("headers", None) or {})
            headers.setdefault("X-CSRFToken", self.fetch_csrf_token())
            kwargs["headers"] = headers
        # A fresh app context per request: the fixture's long-lived one would share `g` (signed-in user,
        # CSRF token, locale) between requests and clients.
        with self.application.app_context():
            response = super().open(*args, **kwargs)
        if method == "POST" and urlsplit(str(args[0] if args else "")).path in SESSION_STARTS:
            # A new session has a new CSRF secret: read the next page's token, as a browser does.
            self.csrf_token = None
        return response

    def fetch_csrf_token(self) -> str:
        if self.csrf_token is None:
            with self.application.app_context():
                page = super().open("/auth/login", follow_redirects=True).get_data(as_text=True)
            self.csrf_token = CSRF_IN_PAGE.search(page).group(1)
        return self.csrf_token

    def login(self, user, password=PASSWORD):
        response = self.post("/auth/login", data={"username": user.username, "password": password})
        assert response.status_code == 302, response.get_data(as_text=True)
        return user

    def use_language(self, code):
        """Browse in this language (the cookie the language switch sets); pt_BR is the default."""
        self.set_cookie("lang", code)
        return self

    def htmx(self, method, url, **kwargs):
        """A request as htmx sends it."""
        headers = dict(kwargs.pop("headers", None) or {})
        headers.setdefault("HX-Request", "true")
        return self.open(url, method=method.upper(), headers=headers, **kwargs)
