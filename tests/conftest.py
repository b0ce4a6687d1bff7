import pytest
from cryptography.fernet import Fernet

from tests.support.client import Client
from tests.support.factories import make_client
from webapp import create_app, db
from webapp.db import database

pytest_plugins = ["tests.fixtures.certs", "tests.fixtures.smtp", "tests.fixtures.proxies"]


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
