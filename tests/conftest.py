import re

import pytest
from cryptography.fernet import Fernet
from flask.testing import FlaskClient

from tests.factories import PASSWORD, make_user
from webapp import create_app, db
from webapp.db import database

pytest_plugins = ["tests.fixtures.certs", "tests.fixtures.smtp", "tests.fixtures.proxies"]

CSRF_IN_PAGE = re.compile(r'"X-CSRFToken": "([^"]+)"')


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
            return super().open(*args, **kwargs)

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


@pytest.fixture
def app(tmp_path):
    app = create_app({
        "TESTING": True,
        "SECRET_KEY": "test-secret-key",
        "VAULT_KEYS": Fernet.generate_key().decode(),
        "DATABASE": str(tmp_path / "smtpdesk.db"),
        # Tests wait seconds, not the production 10 s / 30 s, for the test dialog's SMTP dialogue.
        "SMTP_TIMEOUT": 2,
        "SMTP_DEADLINE": 4,
    })
    app.instance_path = str(tmp_path)
    app.test_client_class = Client
    db.upgrade()
    with app.app_context():
        database.connect(reuse_if_open=True)
        yield app
        if not database.is_closed():
            database.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def admin(app):
    return make_user("admin", username="alice")


@pytest.fixture
def admin_client(client, admin):
    client.login(admin)
    return client


@pytest.fixture
def operator_client(app):
    client = app.test_client()
    client.login(make_user("operator", username="oscar"))
    return client


@pytest.fixture
def auditor_client(app):
    client = app.test_client()
    client.login(make_user("auditor", username="audrey"))
    return client
