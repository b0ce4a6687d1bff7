"""GET /healthz and /readyz: up while the process answers; ready with a reachable, migrated database and a live
worker (its heartbeat), 503 otherwise; for anyone, so nothing in them names anything."""
import json
import os
import signal
import socket
from contextlib import contextmanager

import pytest

from tests.support.factories import make_account, make_connector, make_credential, make_notification, make_user
from tests.support.net import free_port, wait_for_port
from tests.support.processes import instance_env, start, stop, wait_for
from webapp import db, postgresql
from webapp.db import database
from webapp.models import WorkerHeartbeat

pytestmark = pytest.mark.engines("sqlite", "postgresql")

# The only words a readiness report may contain: every other value is a number, a boolean or null.
STATES = {"current", "behind", "ahead", "missing", "unreachable", "ok"}


@contextmanager
def database_gone(app, engine):
    """The database out of reach while the block runs: the SQLite file deleted (with its WAL), or the PostgreSQL
    URL pointing at a port where nothing listens."""
    if engine == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(app.config["DATABASE"] + suffix):
                os.remove(app.config["DATABASE"] + suffix)
        yield
        return
    url = app.config["DATABASE_URL"]
    closed = f"postgresql://smtpdesk@127.0.0.1:{free_port()}/smtpdesk?connect_timeout=5"
    app.config["DATABASE_URL"] = closed
    db.init_database(closed)
    try:
        yield
    finally:
        app.config["DATABASE_URL"] = url
        db.init_database(url)


def readyz(client):
    response = client.get("/readyz")
    assert response.headers["Cache-Control"] == "no-store" and response.mimetype == "application/json"
    return response.status_code, response.get_json()


def test_healthz_answers_while_the_process_is_up_even_without_its_database(app, client, engine):
    with database_gone(app, engine):
        response = client.get("/healthz")
        assert response.status_code == 200 and response.get_json() == {"status": "ok"}
        assert response.headers["Cache-Control"] == "no-store"
        assert "Set-Cookie" not in response.headers
    if engine == "sqlite":
        assert not os.path.exists(app.config["DATABASE"])


def test_readyz_is_503_without_a_worker_heartbeat(app, client):
    make_notification()
    status, report = readyz(client)
    assert status == 503 and report["ready"] is False
    assert report["database"] == {"ok": True, "status": "current", "schema_version": db.latest_version(),
                                  "expected_schema_version": db.latest_version()}
    assert report["worker"] == {"ok": False, "last_heartbeat_age_seconds": None, "heartbeat_max_age_seconds": 120,
                                "workers": 0}
    assert report["outbox"]["counts"] == {"queued": 1, "sending": 0, "sent": 0, "retrying": 0, "failed": 0}
    assert report["outbox"]["oldest_queued_age_seconds"] >= 0


def test_readyz_is_200_with_a_recent_heartbeat_then_503_once_it_is_older_than_the_threshold(app, client):
    WorkerHeartbeat.beat("host:1:abc")
    status, report = readyz(client)
    assert status == 200 and report["ready"] is True
    assert report["worker"]["ok"] is True and report["worker"]["workers"] == 1
    assert report["outbox"] == {"counts": dict.fromkeys(("queued", "sending", "sent", "retrying", "failed"), 0),
                                "oldest_queued_age_seconds": None}
    app.config["READY_HEARTBEAT_MAX_AGE_SECONDS"] = 0.2
    wait_for(lambda: readyz(client)[0] == 503, 10, "the heartbeat to grow older than the threshold")
    assert readyz(client)[1]["worker"]["ok"] is False


def test_readyz_is_503_when_the_database_is_unreachable(app, client, engine):
    WorkerHeartbeat.beat("host:1:abc")
    assert readyz(client)[0] == 200
    with database_gone(app, engine):
        status, report = readyz(client)
        assert status == 503
        assert report == {"ready": False, "database": {"ok": False, "status": "missing" if engine == "sqlite"
                                                       else "unreachable"}, "worker": None, "outbox": None}
        assert client.get("/healthz").status_code == 200
    if engine == "sqlite":
        assert not os.path.exists(app.config["DATABASE"]), "a readiness probe must not create an empty database"


@pytest.mark.engines("postgresql")
def test_readyz_replaces_a_connection_the_server_ended(app, client, engine):
    WorkerHeartbeat.beat("host:1:abc")
    assert readyz(client)[0] == 200  # this thread's connection is kept for the next request
    backend = database.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
    other = postgresql.PostgresqlDatabase(app.config["DATABASE_URL"])
    with other.connection_context():
        other.execute_sql("SELECT pg_terminate_backend(%s)", (backend,))
    status, report = readyz(client)
    assert status == 503 and report["database"] == {"ok": False, "status": "unreachable"}
    assert readyz(client)[0] == 200


def test_readyz_is_503_while_migrations_are_missing(app, client, engine):
    WorkerHeartbeat.beat("host:1:abc")
    behind = db.latest_version() - 1
    if engine == "postgresql":
        postgresql.set_schema_version(database, behind)
    else:
        database.execute_sql(f"PRAGMA user_version = {behind:d}")
    status, report = readyz(client)
    assert status == 503 and report["database"] == {"ok": False, "status": "behind", "schema_version": behind,
                                                    "expected_schema_version": db.latest_version()}


def test_readyz_and_healthz_reveal_no_name_address_host_or_secret(app, client, engine, smtp_server):
    """They answer anyone: the report holds numbers and a few fixed words, whatever the database holds."""
    make_user("admin", username="alice-admin")
    credential = make_credential(name="Relay login", username="relay-user@corp.example", secret="Pa55-w0rd-secret")
    connector = make_connector(name="Office proxy", host="proxy.corp.example", password="proxy-pa55word")
    account = make_account(name="Billing relay", host="smtp.corp.example", sender="Billing <billing@corp.example>",
                           credential=credential, use_auth=True, connector=connector, use_connector=True,
                           is_default=True)
    make_notification(account=account, to="ana.silva@client.example", subject="Invoice 42")
    worker_name = f"{socket.gethostname()}:{os.getpid()}:f00d42"
    WorkerHeartbeat.beat(worker_name)
    forbidden = ["alice-admin", "Relay login", "relay-user", "Pa55-w0rd-secret", "Office proxy", "proxy.corp",
                 "proxy-pa55word", "Billing", "smtp.corp", "billing@", "ana.silva", "client.example", "Invoice",
                 socket.gethostname(), "f00d42", app.instance_path, "127.0.0.1"]
    if engine == "postgresql":
        forbidden += [app.config["DATABASE_URL"].rsplit("/", 1)[-1], "postgres"]
    else:
        forbidden.append(app.config["DATABASE"])
    for path in ("/healthz", "/readyz"):
        body = client.get(path).get_data(as_text=True)
        assert not [word for word in forbidden if word.lower() in body.lower()], (path, body)
        assert_only_numbers_and_states(json.loads(body))
    with database_gone(app, engine):
        body = client.get("/readyz").get_data(as_text=True)
        assert not [word for word in forbidden if word.lower() in body.lower()], body


def assert_only_numbers_and_states(value, key=None):
    if isinstance(value, dict):
        for name, item in value.items():
            assert name.replace("_", "").isalpha() and name.islower(), name
            assert_only_numbers_and_states(item, name)
    elif isinstance(value, str):
        assert value in STATES, (key, value)
    else:
        assert value is None or isinstance(value, (bool, int, float)), (key, value)


def test_health_needs_no_sign_in_and_no_csrf_token(app, client):
    """Answered to anonymous requests, htmx or not, and to HEAD; never a login redirect or a page."""
    for path in ("/healthz", "/readyz"):
        for headers in ({}, {"HX-Request": "true"}):
            response = client.get(path, headers=headers)
            assert response.status_code in (200, 503) and response.is_json, path
            assert "Location" not in response.headers and "HX-Redirect" not in response.headers
        assert client.head(path).status_code in (200, 503)
        assert client.post(path).status_code == 405  # read-only: not even a CSRF check to fail


# --- Against real processes: `smtpdesk serve` (make run) and `smtpdesk worker` -------------------------------------


def http_get(port: int, path: str) -> tuple[int, dict]:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_serve_with_its_worker_thread_is_ready(app, tmp_path):
    """`make run`'s way: waitress and the worker thread in one process; the thread's heartbeat makes it ready."""
    port = free_port()
    process = start(["serve", "--port", str(port)], instance_env(app, OUTBOX_POLL_SECONDS=0.05,
                                                                  WORKER_HEARTBEAT_SECONDS=0.2), tmp_path, "serve")
    try:
        wait_for_port(port, timeout=60)
        assert http_get(port, "/healthz") == (200, {"status": "ok"})
        wait_for(lambda: http_get(port, "/readyz")[0] == 200, 20, "the worker thread's first heartbeat")
        assert http_get(port, "/readyz")[1]["worker"]["workers"] == 1
    finally:
        stop(process, timeout=30)


def test_readyz_turns_503_after_the_worker_process_stops(app, client, tmp_path):
    app.config["READY_HEARTBEAT_MAX_AGE_SECONDS"] = 1
    worker = start(["worker"], instance_env(app, OUTBOX_POLL_SECONDS=0.05, WORKER_HEARTBEAT_SECONDS=0.1), tmp_path,
                   "worker")
    try:
        wait_for(lambda: readyz(client)[0] == 200, 20, "the worker's first heartbeat")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    finally:
        stop(worker)
    wait_for(lambda: readyz(client)[0] == 503, 20, "the heartbeat to be older than READY_HEARTBEAT_MAX_AGE_SECONDS")
    report = readyz(client)[1]
    assert report["worker"]["ok"] is False and report["worker"]["workers"] == 0
    assert report["worker"]["last_heartbeat_age_seconds"] > 1
    assert report["database"]["ok"] is True
