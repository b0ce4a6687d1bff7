"""Issue 16's scale test: two hosts on one PostgreSQL as the README's "Scaling out" runs them (each gunicorn with an
instance folder of its own and the shared keys in files, tests/support/hosts.py) and three `smtpdesk worker` processes,
two on the first host, one on the second. Eight clients post 3,000 notifications through the API, alternating between
the two apps; one worker is killed with SIGKILL midway, while it holds claims; a real SMTP server receives every
notification, each once by its Message-ID, apart from the window the README documents: a worker killed after the
server accepted messages but before it recorded them sends them again once their lease ends (at most RECORD_EVERY for
each account it was delivering)."""
import email.parser
import email.policy
import http.client
import json
import signal
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from bench.workload import Workload
from tests.support.factories import make_user
from tests.support.hosts import Host, host_env, launch
from tests.support.outbox import account_for, statuses
from tests.support.processes import SMTPDESK, stop, wait_for
from webapp.models import ApiToken, DeliveryAttempt, Notification
from webapp.outbox.settings import ACTIVE, LEASE_EXPIRED, RECORD_EVERY

# Several processes on one database server: PostgreSQL's case by nature (SQLite is one host's file).
pytestmark = pytest.mark.engines("postgresql")

NOTIFICATIONS = 3000
CLIENTS = 8
KEYED_EVERY = 10       # every tenth notification has an idempotency key and is posted again on the other app
KILL_AFTER = 1000      # messages the server has received when one worker is killed
# Leases short enough for the killed worker's claims to come back within seconds; each message's dialogue well
# within them (lease >= 2 x (deadline + 1)), with room for a busy machine: a live worker must never lose its lease.
WORKER_CONFIG = dict(OUTBOX_LEASE_SECONDS=8, OUTBOX_SMTP_TIMEOUT=3, OUTBOX_SMTP_DEADLINE=3, OUTBOX_POLL_SECONDS=0.25,
                     OUTBOX_BATCH_SIZE=100, OUTBOX_BACKOFF_BASE_SECONDS=0.05, OUTBOX_BACKOFF_MAX_SECONDS=0.2)
USERS = {"mailer@example.com": "s3cr3t-Pa55word!"}  # AUTH with a vault secret: every process needs the same key
HEADERS = email.parser.BytesHeaderParser(policy=email.policy.compat32)


@pytest.fixture
def processes():
    """The processes a test starts: each stopped at its end, even when it fails (killed if SIGTERM is not enough)."""
    started = []
    yield started
    for process in started:
        stop(process, timeout=30)


def post(port: int, token: str, body: dict) -> tuple[int, dict]:
    """POST /api/v1/notifications to the app on this port: (status, JSON answer)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", "/api/v1/notifications", body=json.dumps(body, ensure_ascii=False).encode(),
                           headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def payloads() -> list[dict]:
    """3,000 notifications as users send them (bench/workload.py: new recipients each, accented pt-BR subjects and
    texts); every KEYED_EVERY-th with an idempotency key."""
    workload = Workload("api")
    bodies = [workload.notification() for _ in range(NOTIFICATIONS)]
    for n in range(0, NOTIFICATIONS, KEYED_EVERY):
        bodies[n]["idempotency_key"] = f"scale-{n}-ação"
    return bodies


def client_calls(bodies: list[dict], ports: list[int]) -> list[list[tuple[int, int]]]:
    """Each client's calls, (notification, port) in order: notifications dealt round the clients, alternating between
    the apps. A keyed notification is posted again on the other app by the next client, at about the same moment
    (a retry racing the first call)."""
    calls = [[] for _ in range(CLIENTS)]
    for n, body in enumerate(bodies):
        calls[n % CLIENTS].append((n, ports[n % 2]))
        if "idempotency_key" in body:
            calls[(n + 1) % CLIENTS].append((n, ports[(n + 1) % 2]))
    return calls


def message_id(content: bytes) -> str:
    return HEADERS.parsebytes(content)["Message-ID"]


def test_two_hosts_and_three_workers_deliver_3000_api_notifications_once_despite_a_killed_worker(
        app, smtp_server, processes, tmp_path):
    server = smtp_server(users=USERS)
    account_for(server, users=USERS)
    _row, token = ApiToken.issue("scale test", created_by=make_user("admin"))
    envs = {name: host_env(tmp_path / name, app.config["DATABASE_URL"], app.config["VAULT_KEYS"], **WORKER_CONFIG)
            for name in ("a", "b")}
    logs = [tmp_path / name / f"worker{n}.log" for n, name in enumerate("aab")]
    workers = [launch([str(SMTPDESK), "worker"], envs[log.parent.name], log) for log in logs]
    processes.extend(workers)
    hosts = Host.start_all({name: (tmp_path / name, env) for name, env in envs.items()})
    processes.extend(host.process for host in hosts)
    ports = [host.port for host in hosts]

    bodies = payloads()
    answers: dict[int, list[tuple[int, dict]]] = {n: [] for n in range(NOTIFICATIONS)}

    def client(calls):
        for n, port in calls:
            answers[n].append(post(port, token, bodies[n]))

    victim = workers[0]
    # Worker names are host:pid:random; the victim's claims and attempts carry its name.
    leased_to_victim = Notification.lease_owner.contains(f":{victim.pid}:") & (Notification.status == "sending")

    held = Counter()  # the victim's claims when it is killed, by its name

    def paused_holding_claims() -> bool:
        """Midway (a good part delivered, some by the victim), pause the victim (SIGSTOP): True if it holds claims
        now (counted in held); if not, let it go on."""
        if len(server.received) < KILL_AFTER or not DeliveryAttempt.select().where(
                DeliveryAttempt.worker.contains(f":{victim.pid}:"), DeliveryAttempt.ok).exists():
            return False
        victim.send_signal(signal.SIGSTOP)  # its claims stay as they are now, until it is killed
        held.update(n.lease_owner for n in Notification.select(Notification.lease_owner).where(leased_to_victim))
        if held:
            return True
        victim.send_signal(signal.SIGCONT)
        return False

    with ThreadPoolExecutor(CLIENTS) as pool:
        posting = [pool.submit(client, calls) for calls in client_calls(bodies, ports)]
        wait_for(paused_holding_claims, 120, "a good part delivered, some by the worker to kill, which holds claims")
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        for future in posting:
            future.result()  # a client's exception, if any
    [(victim_name, claims)] = held.items()

    for n, body in enumerate(bodies):
        codes = sorted(code for code, _answer in answers[n])
        ids = {answer.get("id") for _code, answer in answers[n]}
        if "idempotency_key" in body:
            # Posted on both apps at about the same time: one notification; the later call, unless the two raced
            # past the lookup, is told it was there already.
            assert codes in ([200, 202], [202, 202]) and len(ids) == 1, answers[n]
        else:
            assert codes == [202], answers[n]
    assert len({answer["id"] for calls in answers.values() for _code, answer in calls}) == NOTIFICATIONS

    active = Notification.status.in_(ACTIVE)
    try:
        wait_for(lambda: not Notification.select().where(active).exists(), 180,
                 "the two workers left to deliver every notification")
    except AssertionError as error:
        raise AssertionError(f"{error}: {dict(statuses())}") from None
    survivors = [*workers[1:], *(host.process for host in hosts)]
    for process in survivors:
        process.send_signal(signal.SIGTERM)  # graceful stop
    assert [process.wait(30) for process in survivors] == [0] * len(survivors)
    for log in (*logs[1:], *(host.log for host in hosts)):
        assert "Traceback" not in log.read_text(), log

    notifications = {n.message_id: n for n in Notification.select()}
    assert len(notifications) == NOTIFICATIONS and statuses() == {"sent": NOTIFICATIONS}
    received = Counter(message_id(message.content) for message in server.received)
    assert set(received) == set(notifications)  # every one arrived, nothing else did
    # Twice only in the documented window: the killed worker had sent it and not yet recorded that; its lease
    # expired and another worker sent it again.
    lost = {attempt.notification_id: attempt.worker for attempt in
            DeliveryAttempt.select().where(DeliveryAttempt.step == LEASE_EXPIRED)}
    twice = {mid: count for mid, count in received.items() if count > 1}
    assert all(count == 2 and lost.get(notifications[mid].id) == victim_name for mid, count in twice.items()), (
        {mid: (count, lost.get(notifications[mid].id)) for mid, count in twice.items()})
    assert len(twice) <= RECORD_EVERY  # one account: one recording's worth at most
    delivered_by = {attempt.worker for attempt in DeliveryAttempt.select().where(DeliveryAttempt.ok)}
    assert len(delivered_by) == 3 and victim_name in delivered_by
    print(f"{sum(received.values())} messages received for {NOTIFICATIONS} notifications, {len(twice)} of them "
          f"twice; the killed worker held {claims} claims")
