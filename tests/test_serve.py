"""Serving: `smtpdesk serve` (waitress threads and the outbox worker in one process) and gunicorn for more CPUs."""
import http.client
import json
import shutil
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.factories import make_account, make_user
from tests.support.net import free_port, wait_for_port
from tests.support.processes import instance_env, start, stop, wait_for
from webapp.models import ApiToken, Notification


def get(port: int, path: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


def post_notification(port: int, token: str, n: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", "/api/v1/notifications", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            body=json.dumps({"to": f"user{n}@example.org", "subject": f"n{n}", "text": "hello"}))
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.fixture
def serve(app, tmp_path):
    """Start `smtpdesk serve` on the test's instance: serve(*extra) -> (process, port)."""
    started = []

    def run(*extra: str):
        port = free_port()
        process = start(["serve", "--port", str(port), *extra], instance_env(app, OUTBOX_POLL_SECONDS=0.05),
                        tmp_path, "serve")
        started.append(process)
        wait_for_port(port)
        return process, port

    yield run
    for process in started:
        stop(process, timeout=30)


def test_serve_answers_and_stops_the_worker_gracefully_on_sigterm(app, serve, tmp_path):
    make_user("admin")  # past first-run setup: the sign-in page answers
    process, port = serve()
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(lambda _: get(port, "/auth/login"), range(40))) == {200}
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    output = (tmp_path / "serve.log").read_text()
    assert f"smtpdesk serving on http://127.0.0.1:{port} (Ctrl+C to stop)" in output
    assert "Stopping the outbox worker" in output and "Traceback" not in output


def test_first_run_prints_the_setup_code(app, serve, tmp_path):
    process, port = serve()
    assert get(port, "/auth/setup") == 200
    code = (Path(app.instance_path) / "setup_code").read_text().strip()
    wait_for(lambda: code in (tmp_path / "serve.log").read_text(), 10, "the setup code on the console")


def test_ctrl_c_stops_the_server(app, serve):
    process, port = serve()
    process.send_signal(signal.SIGINT)  # what a terminal's Ctrl+C does
    assert process.wait(30) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_port_in_use_is_a_clear_error(app, tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        process = start(["serve", "--port", str(port)], instance_env(app), tmp_path, "serve")
        assert process.wait(30) == 1
    output = (tmp_path / "serve.log").read_text()
    assert f"Error: cannot listen on 127.0.0.1 port {port}: Address already in use" in output
    assert "Traceback" not in output and "serving on" not in output


def test_concurrent_api_calls_are_each_queued_once(app, serve):
    process, port = serve("--no-worker")
    _row, token = ApiToken.issue("many clients", created_by=make_user("admin"))
    make_account(is_default=True)
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda n: post_notification(port, token, n), range(300)))
    assert set(statuses) == {202}, statuses
    assert Notification.select().count() == 300


def test_gunicorn_serves_the_app_with_several_processes(app, tmp_path):
    """For more CPUs than one waitress process uses: gunicorn's workers share the database and the keys."""
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent))
    assert gunicorn, "gunicorn is installed with the test extras (pip install -e '.[test]')"
    _row, token = ApiToken.issue("gunicorn", created_by=make_user("admin"))
    make_account(is_default=True)
    port = free_port()
    with open(tmp_path / "gunicorn.log", "w") as log:
        command = [gunicorn, "--preload", "--no-control-socket", "--workers", "2", "--threads", "4",
                   "--bind", f"127.0.0.1:{port}", "webapp:create_app_or_exit()"]
        process = subprocess.Popen(command, env=instance_env(app), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port)
        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(lambda _: get(port, "/auth/login"), range(20))) == {200}
            assert set(pool.map(lambda n: post_notification(port, token, n), range(40))) == {202}
        assert Notification.select().count() == 40
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    assert "Traceback" not in (tmp_path / "gunicorn.log").read_text()
