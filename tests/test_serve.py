"""`smtpdesk serve` with several serving processes: they share the port and the data, stop together, and a serving
process that dies stops the server with an error instead of leaving it half there."""
import http.client
import json
import os
import signal
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.factories import make_account, make_user
from tests.netutil import free_port, wait_for_port
from tests.test_outbox_durability import instance_env, start, wait_for
from webapp.models import ApiToken, Notification


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def get(port: int, path: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.fixture
def serve(app, tmp_path):
    """Start `smtpdesk serve --processes N` on the test's instance: serve(processes) -> (process, port)."""
    started = []

    def run(processes: int, *extra: str):
        port = free_port()
        process = start(["serve", "--port", str(port), "--processes", str(processes), *extra],
                        instance_env(app, OUTBOX_POLL_SECONDS=0.05), tmp_path, "serve")
        started.append(process)
        wait_for_port(port)
        return process, port

    yield run
    for process in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()  # its serving processes follow it (test_serving_processes_end_with_a_killed_server)
                process.wait()


def test_serving_processes_share_the_port_and_stop_with_the_server(app, serve, tmp_path):
    make_user("admin")  # past first-run setup: the sign-in page answers
    process, port = serve(3)
    wait_for(lambda: len(children(process.pid)) == 3, 10, "three serving processes")
    servers = children(process.pid)
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(lambda _: get(port, "/auth/login"), range(60))) == {200}

    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    assert not any(alive(pid) for pid in servers)
    output = (tmp_path / "serve.log").read_text()
    assert "(3 processes; Ctrl+C to stop)" in output and "Stopping the outbox worker" in output
    assert "Traceback" not in output


def test_a_serving_process_that_dies_stops_the_server_with_an_error(app, serve, tmp_path):
    process, port = serve(2)
    wait_for(lambda: len(children(process.pid)) == 2, 10, "two serving processes")
    first, second = children(process.pid)
    os.kill(first, signal.SIGKILL)
    assert process.wait(30) == 1
    assert not alive(second)
    output = (tmp_path / "serve.log").read_text()
    assert f"serving process {first} ended (killed by signal 9); stopping smtpdesk." in output
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_serving_processes_end_with_a_killed_server(app, serve):
    process, port = serve(2)
    wait_for(lambda: len(children(process.pid)) == 2, 10, "two serving processes")
    servers = children(process.pid)
    process.kill()  # no clean-up runs in it: its children see its end of their pipe close
    process.wait()
    wait_for(lambda: not any(alive(pid) for pid in servers), 10, "the serving processes to end")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_port_in_use_is_a_clear_error(app, tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        process = start(["serve", "--port", str(port), "--processes", "2"], instance_env(app), tmp_path, "serve")
        assert process.wait(30) == 1
    output = (tmp_path / "serve.log").read_text()
    assert f"Error: cannot listen on 127.0.0.1 port {port}: Address already in use" in output
    assert "Traceback" not in output and "serving on" not in output


def test_one_process_serves_in_the_process_itself(app, serve):
    process, port = serve(1)
    assert get(port, "/auth/setup") == 200
    assert children(process.pid) == []
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0


def test_ctrl_c_stops_every_process(app, serve):
    process, port = serve(2)
    wait_for(lambda: len(children(process.pid)) == 2, 10, "two serving processes")
    servers = children(process.pid)
    for pid in [process.pid, *servers]:  # what a terminal's Ctrl+C does: SIGINT to the whole process group
        os.kill(pid, signal.SIGINT)
    assert process.wait(30) == 0
    assert not any(alive(pid) for pid in servers)


def test_serving_processes_enqueue_together_through_the_api(app, serve):
    """Two processes writing at once: every call is answered and queued once."""
    process, port = serve(2, "--no-worker")
    _row, token = ApiToken.issue("two processes")

    def post(n: int) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            connection.request("POST", "/api/v1/notifications", headers={
                "Content-Type": "application/json", "Authorization": f"Bearer {token}"},
                body=json.dumps({"to": f"user{n}@example.org", "subject": f"n{n}", "text": "hello"}))
            return connection.getresponse().status
        finally:
            connection.close()

    make_account(is_default=True)
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(post, range(300)))
    assert set(statuses) == {202}, statuses
    assert Notification.select().count() == 300
