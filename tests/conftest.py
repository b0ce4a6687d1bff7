import pytest

from tests.support.apps import running_app
from tests.support.factories import make_client

# oauth before smtp, which imports it: a plugin module imported before its turn escapes assertion rewriting.
pytest_plugins = ["tests.fixtures.certs", "tests.fixtures.oauth", "tests.fixtures.smtp", "tests.fixtures.proxies",
                  "tests.fixtures.http"]


@pytest.fixture
def app(tmp_path):
    # Tests wait seconds, not the production 10 s / 30 s, for the test dialog's SMTP dialogue.
    with running_app(tmp_path, SMTP_TIMEOUT=2, SMTP_DEADLINE=4) as app:
        yield app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def admin(app):
    """A client signed in as an administrator (admin.user), browsing in English."""
    return make_client(app, "admin", username="alice")


@pytest.fixture
def operator(app):
    """A client signed in as an operator (operator.user), browsing in English."""
    return make_client(app, "operator", username="oscar")


@pytest.fixture
def auditor(app):
    """A client signed in as an auditor (auditor.user), browsing in English."""
    return make_client(app, "auditor", username="audrey")
