import os

import pytest

from tests.support.apps import running_app
from tests.support.factories import make_client

# oauth before smtp, which imports it: a plugin module imported before its turn escapes assertion rewriting.
pytest_plugins = ["tests.fixtures.certs", "tests.fixtures.oauth", "tests.fixtures.smtp", "tests.fixtures.proxies",
                  "tests.fixtures.http", "tests.fixtures.postgres"]
ENGINES = ("sqlite", "postgresql")


def pytest_addoption(parser):
    parser.addoption("--engine", choices=ENGINES, default=os.environ.get("SMTPDESK_TEST_ENGINE") or "sqlite",
                     help="the database of tests not marked engines(...): sqlite (default) or postgresql; "
                          "also SMTPDESK_TEST_ENGINE")


def pytest_generate_tests(metafunc):
    # A test or module marked engines("sqlite", "postgresql") runs once on each; the others on --engine.
    marker = metafunc.definition.get_closest_marker("engines")
    if marker is not None and "engine" in metafunc.fixturenames:
        metafunc.parametrize("engine", marker.args)


@pytest.fixture
def engine(request) -> str:
    return request.config.getoption("engine")


@pytest.fixture
def database_config(engine, request) -> dict:
    """The app settings naming this test's database: a fresh migrated PostgreSQL database, or (none needed) the
    SQLite file in tmp_path."""
    if engine == "postgresql":
        return {"DATABASE_URL": request.getfixturevalue("postgres_database")}
    return {}


@pytest.fixture
def empty_database_config(engine, request) -> dict:
    """For a test that makes its own app on an empty database: an empty PostgreSQL database's URL, or nothing (the
    test names its SQLite file)."""
    if engine == "postgresql":
        return {"DATABASE_URL": request.getfixturevalue("empty_postgres_database")}
    return {}


@pytest.fixture
def app(tmp_path, database_config):
    # Tests wait seconds, not the production 10 s / 30 s, for the test dialog's SMTP dialogue.
    with running_app(tmp_path, SMTP_TIMEOUT=2, SMTP_DEADLINE=4, **database_config) as app:
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
