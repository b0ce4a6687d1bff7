import os

import pytest

from tests.support.apps import running_app
from tests.support.factories import make_client

# oauth before smtp, which imports it: a plugin module imported before its turn escapes assertion rewriting.
pytest_plugins = ["tests.fixtures.certs", "tests.fixtures.oauth", "tests.fixtures.smtp", "tests.fixtures.proxies",
                  "tests.fixtures.http", "tests.fixtures.postgres"]
ENGINES = ("sqlite", "postgresql")
# Browser tests drive screens, which are the same on either engine, and each costs seconds: they run on SQLite, and
# a module marked engines("sqlite", "postgresql") (the configuration flow) proves the served app on PostgreSQL.
BROWSER_TESTS = "tests.e2e."


def pytest_addoption(parser):
    parser.addoption("--engine", choices=("both", *ENGINES), default=os.environ.get("SMTPDESK_TEST_ENGINE") or "both",
                     help="the databases the tests run on: both (default), or only sqlite or postgresql; "
                          "also SMTPDESK_TEST_ENGINE")


def engines_of(metafunc) -> tuple[str, ...]:
    """The engines a test runs on: those its closest engines(...) marker names, SQLite alone when marked
    sqlite_only(reason) or a browser test, else both."""
    for marker in metafunc.definition.iter_markers():  # the test's own first, then its class's and module's
        if marker.name == "engines":
            return marker.args
        if marker.name == "sqlite_only":
            if not (marker.args and isinstance(marker.args[0], str) and marker.args[0].strip()):
                raise pytest.UsageError(f"{metafunc.definition.nodeid}: sqlite_only() needs the reason, as text")
            return ("sqlite",)
    if metafunc.module.__name__.startswith(BROWSER_TESTS):
        return ("sqlite",)
    return ENGINES


def pytest_generate_tests(metafunc):
    # Every test that takes a database (the engine fixture, through app, database_config, ...) runs once on each
    # engine. Module scope: a module's SQLite runs come first, and a module-wide fixture (a served app) may take it.
    if "engine" in metafunc.fixturenames:
        metafunc.parametrize("engine", engines_of(metafunc), scope="module")


def pytest_collection_modifyitems(config, items):
    # --engine sqlite (or postgresql) leaves out the other engine's runs.
    chosen = config.getoption("engine")
    if chosen == "both":
        return
    kept, left_out = [], []
    for item in items:
        params = getattr(item, "callspec", None) and item.callspec.params
        (left_out if params and params.get("engine", chosen) != chosen else kept).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


@pytest.fixture
def engine(request) -> str:
    """The database engine of this test (pytest_generate_tests parametrises it; this is for a test that asks for it
    by name at run time)."""
    chosen = request.config.getoption("engine")
    return "sqlite" if chosen == "both" else chosen


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> bytes:
    """A SQLite database with every migration applied, as bytes, copied for each test as PostgreSQL's template
    database is (migrating a new file each time cost more than the rest of a typical test's setup)."""
    from webapp import db

    path = tmp_path_factory.mktemp("template") / "smtpdesk.db"
    db.init_database(str(path))
    db.upgrade()  # its connection closed: the WAL is folded into the file
    return path.read_bytes()


@pytest.fixture
def database_config(engine, request, tmp_path) -> dict:
    """The app settings naming this test's database: a fresh migrated PostgreSQL database; or none needed, the
    migrated SQLite file put where running_app() opens it (tmp_path/smtpdesk.db, owner-only as upgrade() makes it)."""
    if engine == "postgresql":
        return {"DATABASE_URL": request.getfixturevalue("postgres_database")}
    template = request.getfixturevalue("sqlite_template")
    with open(os.open(tmp_path / "smtpdesk.db", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as file:
        file.write(template)
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
