"""SECURITY 29 over HTTP: 1,000 concurrent POST /api/v1/notifications against a real `smtpdesk serve` (waitress, with
its outbox worker) give 1,000 notifications, each delivered once (checked at the SMTP server by Message-ID).

tests/test_outbox_durability.py proves the same through the Python function; this one adds the web layer: token
authentication, JSON parsing and waitress's threads all writing to the database at once.
"""
import http.client
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.factories import make_user
from tests.support.net import free_port, wait_for_port
from tests.support.outbox import account_for, message_ids, statuses
from tests.support.processes import instance_env, stop
from webapp.models import ApiToken, Notification

SMTPDESK = Path(sys.executable).with_name("smtpdesk")
CALLS = 1000


@pytest.fixture
def served(app, tmp_path):
    """`smtpdesk serve` (web + outbox worker) on the test's database and keys: serve(**config) -> port."""
    processes = []

    def serve(**config) -> int:
        port = free_port()
        env = instance_env(app, **config)  # the test's database, PostgreSQL's included
        with open(tmp_path / "serve.log", "w") as log:
            processes.append(subprocess.Popen([str(SMTPDESK), "serve", "--port", str(port), "--threads", "16"],
                                              env=env, stdout=log, stderr=subprocess.STDOUT))
        wait_for_port(port)
        return port

    yield serve
    for process in processes:
        stop(process, timeout=30)


def post_notification(port: int, token: str, n: int) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        body = json.dumps({"to": f"user{n}@example.org", "subject": f"n{n}", "text": "hello",
                           "idempotency_key": f"http-{n}"})
        connection.request("POST", "/api/v1/notifications", body=body,
                           headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_security_29_a_thousand_concurrent_api_calls_give_a_thousand_notifications_each_delivered_once(
        app, smtp_server, served):
    server = smtp_server()
    account_for(server)
    _row, token = ApiToken.issue("load test", created_by=make_user("admin"))
    port = served(OUTBOX_POLL_SECONDS=0.05, OUTBOX_BATCH_SIZE=200)

    with ThreadPoolExecutor(max_workers=100) as pool:
        answers = list(pool.map(lambda n: post_notification(port, token, n), range(CALLS)))

    assert {status for status, _body in answers} == {202}
    ids = {body["id"] for _status, body in answers}
    assert len(ids) == CALLS
    assert Notification.select().count() == CALLS

    deadline = time.monotonic() + 120
    while Notification.select().where(Notification.status == "sent").count() < CALLS:
        assert time.monotonic() < deadline, f"not delivered in time: {statuses()}"
        time.sleep(0.2)
    assert statuses() == {"sent": CALLS}
    received = message_ids(server)
    assert set(received.values()) == {1}
    assert set(received) == {n.message_id for n in Notification.select()}
