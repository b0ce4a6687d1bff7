"""The request gate (webapp/gate.py): requests take turns running Python, and one waiting on the network (a test
dialog against a real, stalling aiosmtpd server) lets the others through meanwhile."""
import threading
import time

from tests.factories import make_account, make_client
from webapp import gate
from webapp.db import database


def test_requests_take_turns(app):
    running, most = [], []

    @app.get("/_probe")
    def probe():
        running.append(1)
        most.append(len(running))
        time.sleep(0.05)
        running.pop()
        return "ok"

    clients = [make_client(app, "auditor") for _ in range(4)]
    statuses = []
    threads = [threading.Thread(target=lambda c=c: statuses.append(c.get("/_probe").status_code)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 4
    assert max(most) == 1


def test_a_test_dialog_waiting_on_a_slow_server_lets_other_requests_through(app, smtp_server):
    server = smtp_server("plain", stall={"DATA": 1})  # within the tests' 2 s SMTP timeout
    account = make_account(name="Slow relay", host=server.host, port=server.port)
    tester, viewer = make_client(app, "admin"), make_client(app, "auditor")
    finished = {}

    def test_dialog():
        response = tester.htmx("post", f"/accounts/{account.id}/test", data={
            "to": "rita@example.org", "subject": "Check", "body": "Hello.", "next": "/accounts/"})
        finished["dialog"] = (time.monotonic(), response.status_code)

    dialog = threading.Thread(target=test_dialog)
    dialog.start()
    while not server.handler.connections:  # the dialog has reached the server, and waits on it
        time.sleep(0.01)
    report = viewer.get("/accounts/")
    finished["report"] = time.monotonic()
    dialog.join()
    assert report.status_code == 200 and "Slow relay" in report.text
    assert finished["dialog"][1] == 200 and len(server.received) == 1
    assert finished["report"] < finished["dialog"][0]


def test_released_lets_go_of_the_gate_only_outside_a_transaction(app):
    turn = gate.RequestGate(app.wsgi_app)
    with app.app_context(), database.connection_context():
        turn.lock.acquire()
        gate._held.gate = turn
        try:
            with gate.released():
                assert not turn.lock.locked()
            assert turn.lock.locked()
            with database.atomic(), gate.released():
                assert turn.lock.locked()  # another request could otherwise wait on our SQLite lock, holding it
        finally:
            gate._held.gate = None
            turn.lock.release()


def test_outside_a_request_released_does_nothing():
    with gate.released():
        pass
