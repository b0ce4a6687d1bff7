"""`make bench`: smtpdesk's throughput and latency figures against baselines measured in the same run.

Everything runs on 127.0.0.1: Postfix's smtp-sink (from the Debian package, extracted into build/bench/), stunnel in
front of it for implicit TLS, an aiosmtpd STARTTLS sink, `smtpdesk worker --until-idle` for the drains and
`smtpdesk serve --no-worker` for the HTTP figures; the PostgreSQL figures (bench/postgresql.py) run the same commands
on a throwaway PostgreSQL cluster of their own. The notifications are bench.workload's (pt-BR, one to three new
recipients each). The claims figures (bench/claim_backlog.py) time a claim past a rate-limited account's rows.
BENCH_QUICK=1 uses small counts (a smoke run); BENCH_ONLY=delivery, http, postgresql or claims runs one family. The
table is printed; a full run writes docs/BENCHMARKS.md, the others build/bench/BENCHMARKS-partial.md.
"""
import datetime
import json
import logging
import os
import platform
import re
import shutil
import smtplib
import socket
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from bench.workload import Workload, wrk_post_script

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "bench"
POSTFIX = BUILD / "postfix"
SINK = POSTFIX / "usr" / "sbin" / "smtp-sink"
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
# BENCH_ONLY=delivery, http, postgresql or claims runs one family of figures (while working on it); the report says so.
ONLY = os.environ.get("BENCH_ONLY", "")
BIN = Path(sys.executable).parent

COUNTS = dict(
    p1=1000 if QUICK else 10000,          # notifications drained (and sent by each P1 baseline)
    p2=300 if QUICK else 3000,            # per TLS mode (and sent by each P2 baseline)
    http_seconds=3 if QUICK else 10,      # per wrk run
    accounts=200,
    notifications=20000 if QUICK else 1000000,
    p5=10 if QUICK else 50,
)

# The delivering account of the drains' instances (the only one, the default): a sender with an accented name.
ACCOUNT = dict(name="Central de Notificações", sender="Central de Notificações <avisos@exemplo.com.br>",
               reply_to="Atendimento <atendimento@exemplo.com.br>", return_path="devolucoes@exemplo.com.br",
               confirmation_email="confirmacoes@exemplo.com.br", is_default=True)


@dataclass
class Row:
    figure: str
    value: str
    baseline: str
    ratio: str
    goal: str
    met: str


ROWS: list[Row] = []
NOTES: list[str] = []


def say(text: str) -> None:
    print(f"[bench] {text}", flush=True)


# --- Processes -------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def start(stack: ExitStack, args: list, port: int, log: Path, env: dict | None = None) -> subprocess.Popen:
    """Start a process, wait for its port, and stop it (SIGTERM, then SIGKILL) when the stack closes."""
    out = open(log, "w")
    process = subprocess.Popen([str(a) for a in args], stdout=out, stderr=subprocess.STDOUT, env=env)

    def stop():
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
        out.close()

    stack.callback(stop)
    wait_for_port(port)
    return process


def obtain_smtp_sink() -> None:
    """Postfix's smtp-sink, extracted from the Debian package without installing the MTA."""
    if SINK.exists():
        return
    BUILD.mkdir(parents=True, exist_ok=True)
    if not list(BUILD.glob("postfix_*.deb")):
        if subprocess.run(["apt-get", "download", "postfix"], cwd=BUILD).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            subprocess.run(["apt-get", "download", "postfix"], cwd=BUILD, check=True)
    deb = sorted(BUILD.glob("postfix_*.deb"))[-1]
    subprocess.run(["dpkg", "-x", str(deb), str(POSTFIX)], check=True)


def start_sink(stack: ExitStack, work: Path) -> int:
    """smtp-sink on a free loopback port (stopped with the stack); its port."""
    port = free_port()
    env = {**os.environ, "LD_LIBRARY_PATH": str(POSTFIX / "usr" / "lib" / "postfix")}
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    start(stack, [SINK, *user, f"127.0.0.1:{port}", "256"], port, work / "sink.log", env=env)
    return port


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost: (ca.pem, server.pem, server.key)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smtpdesk bench CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


# --- Raw smtplib baselines: the drain's own messages, byte for byte ---------------------------------------------


@dataclass
class Wire:
    """One composed notification as the worker sends it: build_wire()'s bytes, envelope sender and recipients."""

    data: bytes
    sender: str
    recipients: list[str]


def _client(port: int, mode: str, context: ssl.SSLContext | None) -> smtplib.SMTP:
    if mode == "ssl":
        client = smtplib.SMTP_SSL("127.0.0.1", port, context=context, timeout=30)
    else:
        client = smtplib.SMTP("127.0.0.1", port, timeout=30)
    client.ehlo()
    if mode == "tls":
        client.starttls(context=context)
        client.ehlo()
    return client


def _send(client: smtplib.SMTP, message: Wire) -> None:
    refused = client.sendmail(message.sender, message.recipients, message.data)
    if refused:
        raise RuntimeError(f"the sink refused {refused}")


def raw_reused(port: int, messages: list[Wire], mode: str = "plain", context=None) -> float:
    """Messages per second, every message over one connection."""
    client = _client(port, mode, context)
    try:
        began = time.perf_counter()
        for message in messages:
            _send(client, message)
        return len(messages) / (time.perf_counter() - began)
    finally:
        client.quit()


def raw_fresh(port: int, messages: list[Wire], mode: str = "plain", context=None) -> float:
    """Messages per second with a new connection (EHLO, the TLS handshake, QUIT) per message."""
    began = time.perf_counter()
    for message in messages:
        client = _client(port, mode, context)
        _send(client, message)
        client.quit()
    return len(messages) / (time.perf_counter() - began)


# --- Delivery figures (P1, P2, P5): enqueue here, drain with `smtpdesk worker --until-idle` --------------------------


class Drain:
    """A fresh instance folder with one account, its notifications enqueued by send_notification() in this process
    and composed with build_wire(); drain() runs the shipped worker command on it."""

    def __init__(self, work: Path, label: str, workload: Workload, count: int, database_url: str | None = None,
                 **account):
        self.label, self.count = label, count
        self.instance = work / f"instance-{label}"
        self.instance.mkdir()
        self.log = work / f"worker-{label}.log"
        # The SQLite file in the instance folder, or the PostgreSQL database named by database_url.
        self.database_url = database_url
        os.environ["SMTPDESK_INSTANCE_PATH"] = str(self.instance)
        if database_url:
            os.environ["SMTPDESK_DATABASE_URL"] = database_url
        else:
            os.environ.pop("SMTPDESK_DATABASE_URL", None)
        self.env = dict(os.environ)  # this process's create_app() and the worker processes read the same
        from webapp import create_app, db
        from webapp.models import Notification, SmtpAccount
        from webapp.outbox import build_wire, connection, send_notification

        self.app = create_app()
        # create_app() logs to stderr; this process's enqueue lines go to a file (same cost, a quiet console).
        logging.basicConfig(level=logging.INFO, force=True, filename=str(work / "enqueue.log"),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        fields = [workload.notification() for _ in range(count)]  # made before the clock starts
        with self.app.app_context():
            db.upgrade()
        with self.app.app_context(), connection():
            self.account = SmtpAccount.create(**ACCOUNT, **account)
            began = time.perf_counter()
            for each in fields:
                send_notification(**each)  # to the default account: this one
            self.enqueue_rate = count / (time.perf_counter() - began)
            began = time.perf_counter()
            self.messages = [Wire(*build_wire(notification, self.account))
                             for notification in Notification.select().order_by(Notification.id)]
            # What composing costs alone (the worker composes every message it sends, the same way).
            self.compose_rate = count / (time.perf_counter() - began)
        db.database.close()  # the worker process finds the database as an application leaves it

    def drain(self, workers: int = 1) -> float:
        """Seconds from starting `smtpdesk worker --until-idle` (in `workers` processes at once) to the exit of the
        last one; raises unless every notification ended "sent"."""
        with open(self.log, "a") as out:
            began = time.perf_counter()
            running = [subprocess.Popen([BIN / "smtpdesk", "worker", "--until-idle"], stdout=out,
                                        stderr=subprocess.STDOUT, env=self.env) for _ in range(workers)]
            try:
                codes = [process.wait(timeout=1800) for process in running]
            finally:
                for process in running:
                    if process.poll() is None:
                        process.kill()
                        process.wait()
            elapsed = time.perf_counter() - began
        if any(codes):
            raise RuntimeError(f"{self.label}: smtpdesk worker exited with {codes} (see {self.log.name})")
        counts = self.counts()
        if counts.get("sent") != self.count or sum(counts.values()) != self.count:
            raise RuntimeError(f"{self.label}: not every notification was sent: {counts}")
        return elapsed

    def counts(self) -> dict:
        from webapp import db
        from webapp.outbox import outbox_counts

        # This instance's database, whichever app came last.
        db.init_database(self.database_url or str(self.instance / "smtpdesk.db"))
        with self.app.app_context():
            counts = outbox_counts()
        db.database.close()
        return {status: total for status, total in counts.items() if total}

    def describe(self) -> str:
        """What the messages are, as sent: sizes and recipients."""
        sizes = [len(m.data) for m in self.messages]
        recipients = Counter(len(m.recipients) for m in self.messages)
        spread = ", ".join(f"{share * 100 / len(self.messages):.0f}% {n}" for n, share in sorted(recipients.items()))
        return (f"{len(self.messages):,} messages of {statistics.mean(sizes):,.0f} bytes on average as sent "
                f"(from {min(sizes):,} to {max(sizes):,}), "
                f"{statistics.mean(len(m.recipients) for m in self.messages):.2f} recipients each ({spread})")


def delivery_figures(stack: ExitStack, work: Path, sink_port: int, certs) -> None:
    """P1 and its baselines, P5, then P2 over implicit TLS and STARTTLS with theirs."""
    workload = Workload("delivery")
    everyone: list[str] = []

    say(f"P1: enqueueing {COUNTS['p1']:,} notifications with send_notification, composing them with build_wire")
    p1 = Drain(work, "p1", workload, COUNTS["p1"], host="127.0.0.1", port=sink_port)
    everyone += [r for m in p1.messages for r in m.recipients]
    say("P1 baselines: raw smtplib, one connection, then a connection per message")
    base_a = raw_reused(sink_port, p1.messages)
    base_b = raw_fresh(sink_port, p1.messages)
    say(f"P1: smtpdesk worker --until-idle draining {COUNTS['p1']:,} notifications")
    seconds = p1.drain()
    rate = p1.count / seconds
    idle = p1.drain()  # nothing left: what starting and stopping the command costs every drain
    ROWS.append(Row("(a) raw smtplib to smtp-sink, one reused connection, P1's messages", f"{base_a:,.0f} msg/s",
                    "", "", "", ""))
    ROWS.append(Row("(b) raw smtplib to smtp-sink, a new connection per message, P1's messages",
                    f"{base_b:,.0f} msg/s", "", "", "", ""))
    ROWS.append(Row(f"P1 `smtpdesk worker --until-idle` draining {p1.count:,} notifications to smtp-sink "
                    f"(alone: enqueue {p1.enqueue_rate:,.0f}/s, build_wire {p1.compose_rate:,.0f}/s)",
                    f"{rate:,.0f} msg/s ({seconds:.1f} s)",
                    f"(a) {base_a:,.0f} msg/s", f"{rate / base_a:.2f}", ">= 0.8", _met(rate / base_a >= 0.8)))
    NOTES.append(f"Messages (P1): {p1.describe()}; composed by build_wire as the worker does, the baselines send "
                 "these same bytes to the same envelope recipients.")
    NOTES.append(f"P1/P2 drains are timed from starting the command to its exit: {idle:.2f} s of it is the command "
                 "starting and stopping (the same command run again on the drained instance, nothing to send).")

    p5 = p5_figure(p1.app, p1.account, sink_port, p1.messages[0])  # while P1's instance is the app's

    try:
        everyone += p2_figures(stack, work, sink_port, certs, workload)
    finally:
        ROWS.append(p5)  # listed after P2, whatever happens to P2
    if len(set(everyone)) != len(everyone):
        raise RuntimeError(f"{len(everyone) - len(set(everyone))} recipient addresses were used twice")
    NOTES.append(f"Recipients: {len(everyone):,} envelope addresses in P1 and P2, each used once.")


def p2_figures(stack: ExitStack, work: Path, sink_port: int, certs, workload: Workload) -> list[str]:
    """P2 over implicit TLS and STARTTLS, each with its baselines; the envelope recipients of its messages."""
    ca_path, cert_path, key_path = certs
    recipients: list[str] = []
    # P2: implicit TLS through stunnel in front of smtp-sink, STARTTLS against aiosmtpd.
    context = ssl.create_default_context(cafile=str(ca_path))
    stunnel_port, starttls_port = free_port(), free_port()
    conf = work / "stunnel.conf"
    conf.write_text(f"foreground = yes\npid =\ndebug = 3\n[smtps]\naccept = 127.0.0.1:{stunnel_port}\n"
                    f"connect = 127.0.0.1:{sink_port}\ncert = {cert_path}\nkey = {key_path}\n")
    start(stack, [shutil.which("stunnel4") or shutil.which("stunnel"), conf], stunnel_port, work / "stunnel.log")
    start(stack, [sys.executable, "-m", "bench.starttls_sink", starttls_port, cert_path, key_path], starttls_port,
          work / "starttls.log", env={**os.environ, "PYTHONPATH": str(ROOT)})
    for mode, port, label in (("ssl", stunnel_port, "implicit TLS (stunnel + smtp-sink)"),
                              ("tls", starttls_port, "STARTTLS (aiosmtpd)")):
        say(f"P2 {label}: enqueueing and composing {COUNTS['p2']:,} notifications")
        p2 = Drain(work, f"p2-{mode}", workload, COUNTS["p2"], host="127.0.0.1", port=port, secure=True,
                   secure_type=mode, ca_cert=ca_path.read_text())
        recipients += [r for m in p2.messages for r in m.recipients]
        say(f"P2 {label}: baselines, a connection per message then one connection")
        fresh = raw_fresh(port, p2.messages, mode, context)
        reused = raw_reused(port, p2.messages, mode, context)
        say(f"P2 {label}: smtpdesk worker --until-idle draining {p2.count:,} notifications")
        seconds = p2.drain()
        rate = p2.count / seconds
        ROWS.append(Row(f"P2 `smtpdesk worker --until-idle` over {label}, {p2.count:,} notifications",
                        f"{rate:,.0f} msg/s ({seconds:.1f} s)",
                        f"new connection per message {fresh:,.0f} msg/s (one reused: {reused:,.0f})",
                        f"{rate / fresh:.1f}", ">= 5", _met(rate / fresh >= 5)))
    NOTES.append("P2 STARTTLS: aiosmtpd is the server (advertising PIPELINING, as smtp-sink does), and the ceiling "
                 "(its raw reused rate is shown beside it).")
    return recipients


def p5_figure(app, account, sink_port: int, message: Wire) -> Row:
    """The test dialog's send (webapp.accounts.testing.send_test) minus raw smtplib for the same dialogue."""
    from webapp.accounts.testing import send_test

    say(f"P5: {COUNTS['p5']} test sends, each paired with a raw smtplib dialogue")
    rcpt = message.recipients[0]
    differences, ours, theirs = [], [], []
    with app.test_request_context("/accounts/"):
        for _ in range(COUNTS["p5"]):
            began = time.perf_counter()
            outcome = send_test(account, to=rcpt, subject="smtpdesk test", body="This is a test message.")
            mine = time.perf_counter() - began
            if not outcome.ok:
                raise RuntimeError(f"test send failed: {outcome.summary}")
            began = time.perf_counter()
            client = smtplib.SMTP("127.0.0.1", sink_port, timeout=30)
            client.ehlo()
            client.sendmail(message.sender, [rcpt], message.data)
            client.quit()
            other = time.perf_counter() - began
            ours.append(mine * 1000)
            theirs.append(other * 1000)
            differences.append((mine - other) * 1000)
    p50 = statistics.median(differences)
    NOTES.append("P5 calls webapp.accounts.testing.send_test() in a request context (the route's work without HTTP, "
                 "CSRF or the audit write), over plain SMTP to smtp-sink, paired per iteration with raw smtplib "
                 "sending P1's first message to its first recipient.")
    return Row("P5 test dialog minus raw smtplib, same dialogue (p50)", f"{p50:.2f} ms",
               f"raw p50 {statistics.median(theirs):.2f} ms; send_test p50 {statistics.median(ours):.2f} ms", "",
               "< 15 ms", _met(p50 < 15))
# --- HTTP figures (P3, P4, P6) against `smtpdesk serve --no-worker` on a seeded instance ----------------------------


WRK_TIMEOUT = 30
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, clients: int, headers: dict, script: Path | None = None, seconds: int | None = None) -> dict:
    """`clients` connections for `seconds` (COUNTS["http_seconds"] unless given); requests/s, p50 and p99 in ms,
    errors.

    One wrk thread drives the connections: it keeps up with the server, and a second one would only take CPU from
    the server it measures (wrk and the server share the machine's CPUs)."""
    seconds = seconds or COUNTS["http_seconds"]
    args = ["wrk", "-t", "1", "-c", str(clients), "-d", f"{seconds}s", "--latency", "--timeout", f"{WRK_TIMEOUT}s"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    if script is not None:
        args += ["-s", str(script)]
    output = subprocess.run(args + [url], capture_output=True, text=True, timeout=seconds + WRK_TIMEOUT + 60,
                            check=True).stdout
    found = {p: re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M) for p in ("50", "99")}
    # No distribution when no request finished within wrk's timeout: the latency is then "more than the timeout".
    result = {f"p{p}": float(m.group(1)) * UNITS[m.group(2)] if m else float("inf") for p, m in found.items()}
    result["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    result["requests"] = int(re.search(r"(\d+) requests in", output).group(1))
    if not result["requests"]:  # wrk prints a distribution of zeros then: no latency was measured
        result["p50"] = result["p99"] = float("inf")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    result["non2xx"] = int(bad.group(1)) if bad else 0
    result["socket_errors"] = errors.group(1) if errors else ""
    result["clients"] = clients
    return result


def rss_mb(pid: int) -> float:
    """The server's resident memory (it serves from one process, its threads)."""
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    return int(re.search(r"^Rss:\s+(\d+) kB", rollup, re.M).group(1)) / 1024


def read(database: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of a read-only query on the served database (WAL: the server keeps writing meanwhile)."""
    reading = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return reading.execute(sql, params).fetchall()
    finally:
        reading.close()


@dataclass
class Page:
    """A page of the P4 figures and its goals (ms): p50 and p99 with one client, p99 with three."""

    label: str
    path: str
    p50: float
    p99: float
    p99_three: float = 60
    term: str = ""  # the recipient search
    results: dict = field(default_factory=dict)


def http_figures(stack: ExitStack, work: Path, sink_port: int) -> None:
    """Seed an instance, serve it (no worker), then P4, P6 and P3."""
    import requests

    instance = work / "server-instance"
    instance.mkdir()
    env = {**os.environ, "SMTPDESK_INSTANCE_PATH": str(instance), "PYTHONPATH": str(ROOT)}
    say(f"P4 seed: {COUNTS['accounts']} accounts, {COUNTS['notifications']:,} notifications (executemany)")
    seed, seed_seconds = seed_instance(env, sink_port)
    database = instance / "smtpdesk.db"
    pages = [
        Page(f"accounts report, {COUNTS['accounts']} accounts", "/accounts/", 10, 25),
        Page(f"deliveries, {COUNTS['notifications']:,} notifications, status=sent, recipient "
             f"\"{seed['search_name']}\" (part of a name)",
             "/deliveries/?" + urlencode({"status": "sent", "recipient": seed["search_name"]}), 20, 40,
             term=seed["search_name"]),
        Page(f"deliveries, {COUNTS['notifications']:,} notifications, status=sent, recipient "
             f"\"{seed['search_address']}\" (start of an address)",
             "/deliveries/?" + urlencode({"status": "sent", "recipient": seed["search_address"]}), 20, 40,
             term=seed["search_address"]),
    ]
    keys = read(database, 'SELECT COUNT(*) FROM "notification_search"')[0][0]
    statuses = dict(read(database, 'SELECT "status", "total" FROM "notification_tally"'))
    for each in pages:
        if each.term:
            found, sent = read(database, 'SELECT COUNT(*), SUM("status" = \'sent\') FROM "notification" WHERE "id" IN '
                               '(SELECT "notification_id" FROM "notification_search" WHERE "key" >= ? AND "key" < ?)',
                               (each.term, each.term + "\U0010ffff"))[0]
            NOTES.append(f"P4 search \"{each.term}\": {_plural(found, 'notification')} with a recipient whose name "
                         f"or address has a word starting so, {sent or 0:,} of them sent.")
    NOTES.append(
        f"P4 seed (bench/seed.py, {seed_seconds:.0f} s): {COUNTS['accounts']} accounts named by department and city; "
        f"{COUNTS['notifications']:,} notifications over a year ("
        + ", ".join(f"{total:,} {status}" for status, total in sorted(statuses.items(), key=lambda kv: -kv[1]))
        + f"), each to one to three recipients never used twice, two in three with a display name, pt-BR subjects "
        f"with accents, about 1 KB of text; {keys:,} recipient search keys.")

    port = free_port()
    server = start(stack, [BIN / "smtpdesk", "serve", "--port", port, "--no-worker"], port, work / "server.log",
                   env=env)
    base = f"http://127.0.0.1:{port}"
    agent = "smtpdesk-bench"
    page_headers = {"User-Agent": agent, "Accept-Language": "en"}
    with requests.Session() as browser:
        browser.headers.update(page_headers)
        page = browser.get(f"{base}/auth/login", timeout=30).text
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page) or \
            re.search(r'value="([^"]+)"[^>]*name="csrf_token"', page)
        answer = browser.post(f"{base}/auth/login", timeout=30, data={
            "csrf_token": token.group(1), "username": seed["username"], "password": seed["password"]})
        if "/auth/login" in answer.url:
            raise RuntimeError("could not sign in to the served app")
        # Each page answers, finds what it searches for, and is served a few times before wrk measures it (the
        # first answers warm SQLite's page cache and what the app builds on first use; wrk's figures are the
        # steady state).
        for each in pages:
            for _ in range(3):
                answer = browser.get(base + each.path, timeout=60)
            if answer.status_code != 200 or "No notification matches" in answer.text:
                raise RuntimeError(f"{each.path}: answered {answer.status_code}, or with no notification")
        page_headers["Cookie"] = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)

    say("trivial route, one client")
    trivial = wrk(f"{base}/static/css/app.css", 1, page_headers)
    ROWS.append(Row("trivial route /static/css/app.css (1 client)", _latency(trivial), "", "", "", ""))
    for clients in (1, 3):
        for each in pages:
            say(f"P4 {each.label}, {clients} client(s)")
            each.results[clients] = wrk(base + each.path, clients, page_headers)
    for clients in (1, 3):
        for each in pages:
            result = each.results[clients]
            _errors(f"P4 {each.label} ({clients} client{'s' if clients > 1 else ''})", result)
            if clients == 1:
                goal = f"p50 <= {each.p50:g} ms, p99 <= {each.p99:g} ms"
                ok = result["p50"] <= each.p50 and result["p99"] <= each.p99
            else:
                goal, ok = f"p99 <= {each.p99_three:g} ms", result["p99"] <= each.p99_three
            ROWS.append(Row(f"P4 {each.label} ({clients} client{'s' if clients > 1 else ''})", _latency(result),
                            f"app.css p50 {trivial['p50']:.2f} ms, p99 {trivial['p99']:.2f} ms",
                            f"p50 {result['p50'] / trivial['p50']:.1f} x, p99 {result['p99'] / trivial['p99']:.1f} x",
                            goal, _met(ok and _clean(result))))

    say("P6: server RSS after the pages")
    after_pages = rss_mb(server.pid)

    p3_figure("P3", base, work, seed["token"], lambda sql, params=(): read(database, sql, params))
    after_all = rss_mb(server.pid)
    ROWS.append(Row("P6 server RSS after the P4 runs", f"{after_pages:.0f} MB", f"after P3 too: {after_all:.0f} MB",
                    "", "< 100 MB", _met(after_pages < 100)))
    NOTES.append(f"P3/P4: `smtpdesk serve --no-worker` with its default threads on {os.cpu_count()} CPUs; wrk (one "
                 "thread) ran on the same CPUs.")


def seed_instance(env: dict, sink_port: int) -> tuple[dict, float]:
    """bench.seed run in its own process on the instance (and database) `env` names: what it printed, and its
    seconds."""
    began = time.perf_counter()
    seeded = subprocess.run([sys.executable, "-m", "bench.seed", str(COUNTS["accounts"]),
                             str(COUNTS["notifications"]), str(sink_port)], env=env, capture_output=True,
                            text=True, timeout=3600)
    if seeded.returncode != 0:
        raise RuntimeError("bench.seed failed: " + seeded.stderr[-2000:])
    return json.loads(seeded.stdout.strip().splitlines()[-1]), time.perf_counter() - began


def p3_figure(label: str, base: str, work: Path, token: str, read_served) -> None:
    """P3 against the server at `base`: wrk posting notifications with 8 clients, then the posted rows read back
    with read_served(sql, params) to check that no address repeats."""
    say(f"{label}: POST /api/v1/notifications, 8 clients")
    last_id = read_served('SELECT MAX("id") FROM "notification"')[0][0] or 0
    script = work / "post.lua"
    script.write_text(wrk_post_script(token), encoding="utf-8")
    result = wrk(f"{base}/api/v1/notifications", 8, {"User-Agent": "smtpdesk-bench"}, script)
    _errors(label, result)
    posted = [(to, len(text.encode())) for to, text in read_served(
        'SELECT "to_addrs", "body_text" FROM "notification" WHERE "id" > ?', (last_id,))]
    addresses = [address for to, _ in posted for address in json.loads(to)]
    NOTES.append(f"{label} posted {len(posted):,} notifications ({result['requests']:,} requests): "
                 f"{len(addresses) / max(1, len(posted)):.2f} recipients each, {len(set(addresses)):,} distinct of "
                 f"{len(addresses):,}; texts of {statistics.mean(n for _, n in posted) if posted else 0:,.0f} bytes "
                 f"on average (UTF-8); the wrk script is bench/workload.py's WRK_POST.")
    distinct = bool(addresses) and len(set(addresses)) == len(addresses)
    ROWS.append(Row(f"{label} POST /api/v1/notifications (8 clients, worker off)", _latency(result), "", "",
                    "p99 < 30 ms", _met(result["p99"] < 30 and _clean(result) and distinct)))


def _errors(label: str, result: dict) -> None:
    if result["non2xx"] or result["socket_errors"]:
        NOTES.append(f"{label}: {result['non2xx']} answers were not 2xx/3xx; socket errors: "
                     f"{result['socket_errors'] or 'none'} (wrk timeout {WRK_TIMEOUT} s).")


def _clean(result: dict) -> bool:
    return result["requests"] > 0 and not result["non2xx"] and not result["socket_errors"]


def _latency(result: dict) -> str:
    if not result["requests"]:
        return f"no request completed in {COUNTS['http_seconds']} s (wrk timeout {WRK_TIMEOUT} s)"
    return f"{result['rps']:,.0f} req/s, p50 {result['p50']:.2f} ms, p99 {result['p99']:.2f} ms"


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


# --- Report ----------------------------------------------------------------------------------------------------


def others_running() -> str:
    """Other test or server processes on this machine (other sessions' suites), read from /proc."""
    mine = {os.getpid()}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "pytest" in command or "playwright" in command or "chromium" in command:
            found.append(command.strip()[:80])
    return f"{len(found)} (e.g. {found[0]})" if found else "none"


def machine() -> list[str]:
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    memory = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
    return [
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- CPUs (nproc): {os.cpu_count()}; model: {cpu.group(1) if cpu else 'unknown'}",
        f"- Memory: {int(memory.group(1)) / 1024 / 1024:.1f} GiB",
        f"- Python {platform.python_version()} on {platform.platform()}",
        f"- Load average at the start: {START['load']}; at the end: {_load()}",
        f"- Other test processes (pytest, browsers) seen at the start: {START['others']}; at the end: "
        f"{others_running()}",
    ]


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


START: dict = {}


def table() -> str:
    lines = ["| figure | value | baseline | ratio | goal | met? |", "|---|---|---|---|---|---|"]
    lines += [f"| {r.figure} | {r.value} | {r.baseline} | {r.ratio} | {r.goal} | {r.met} |" for r in ROWS]
    return "\n".join(lines)


def write_report(elapsed: float) -> None:
    mode = "QUICK smoke run (BENCH_QUICK=1: small counts, not the issue's figures)" if QUICK else "full run"
    if ONLY:
        mode += f", only the {ONLY} figures (BENCH_ONLY)"
    text = "\n".join([
        "# smtpdesk benchmarks", "",
        "Produced by `make bench` (bench/run.py); every ratio compares figures measured in the same run on the same "
        "machine. Loopback only; Postfix's smtp-sink is the SMTP server unless said otherwise. Single runs on a shared "
        "machine: expect some noise.", "",
        f"## Run ({mode}, {elapsed:.0f} s)", "", *machine(), "", table(), "", "## Notes", "",
        *[f"- {note}" for note in NOTES], "",
        "## How the figures are taken", "",
        "- Workload (bench/workload.py, seeded): each notification goes to one to three recipients never used before "
        "in the run (two in three with a display name such as \"Ana Luíza Souza\"), with one of six kinds of pt-BR "
        "notification (invoice, order, request, maintenance, meeting, password change): an accented subject and "
        "about 1 KB of accented text. Enqueued with send_notification() to the instance's one account (the default), "
        "whose sender and Reply-To have display names.",
        "- P1: a fresh instance folder (SMTPDESK_INSTANCE_PATH) and database; the notifications are enqueued in this "
        "process, then `smtpdesk worker --until-idle` runs as a subprocess with its default OUTBOX_* settings and "
        "its normal logging (to a file), timed from starting the process to its exit, and the outbox is then checked: "
        "every notification \"sent\", nothing else. (a)/(b): every notification composed by build_wire() as the "
        "worker composes it (bytes, envelope sender, envelope recipients), and exactly those sent with raw smtplib "
        "to the same smtp-sink: (a) over one connection, (b) opening, EHLOing and QUITting per message. "
        "The goal compares P1 with (a).",
        "- P2: the same for a fresh instance per mode, the account trusting a throwaway CA through its ca_cert; the "
        "baseline is raw smtplib sending the same composed messages with a new connection (and TLS handshake) per "
        "message to the same server; raw smtplib over one connection is shown beside it.",
        "- P4: `smtpdesk serve --no-worker` on the seeded instance, signed in as an admin, in English; each page is "
        "requested three times, then wrk (one thread) loads it with 1, then 3 connections (for the time given "
        "below); p50/p99 are wrk's latency distribution. The trivial route (a static file through the same "
        "app, one connection) is the same run's floor: the ratios divide a page's p50 and p99 by its.",
        "- P3: wrk with 8 connections and bench/workload.py's Lua script: every request to new recipients (a counter, "
        "display names with accents), a pt-BR subject and about 1 KB of text, JSON-escaped by json.dumps; the "
        "posted rows are read back to check that no address repeats.",
        "- P5: see the note above. P6: the server process's Rss in /proc/<pid>/smaps_rollup after the P4 runs "
        "(compared to the goal) and after P3.",
        "- PostgreSQL (bench/postgresql.py): a throwaway cluster started for these figures and removed afterwards "
        "(tests/support/pg_cluster.py, as the tests start theirs), the app pointed at it by SMTPDESK_DATABASE_URL. "
        "P1 on PostgreSQL is P1's method on a fresh database: one `smtpdesk worker --until-idle`, compared with raw "
        "smtplib sending the same composed messages over one connection. Two workers: the same number of the same "
        "kind of notifications in another fresh database, two `smtpdesk worker --until-idle` processes started "
        "together and timed to the last exit, compared with the one-worker drain; the delivery attempts are then "
        "counted per worker. P3 on PostgreSQL: P3's method on a database seeded with the SQLite instance's data.",
        f"- Each wrk run lasts {COUNTS['http_seconds']} s.", "",
    ])
    # Only a full run of every figure replaces the published report; smoke and partial runs stay in build/.
    target = BUILD / "BENCHMARKS-partial.md" if QUICK or ONLY else ROOT / "docs" / "BENCHMARKS.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    say(f"report written to {target.relative_to(ROOT)}")


def main() -> int:
    """Run every figure, print the table, write docs/BENCHMARKS.md; processes are stopped whatever happens."""
    if ONLY not in ("", "delivery", "http", "postgresql", "claims"):
        print(f"BENCH_ONLY={ONLY}: use delivery, http, postgresql or claims (or leave it empty for every figure)",
              file=sys.stderr)
        return 2
    from bench import claim_backlog, postgresql

    # Each figure says which database it runs on: the SQLite file of its instance folder unless it names another.
    os.environ.pop("SMTPDESK_DATABASE_URL", None)
    began = time.perf_counter()
    START.update(load=_load(), others=others_running())
    obtain_smtp_sink()
    with tempfile.TemporaryDirectory(prefix="smtpdesk-bench-") as folder, ExitStack() as stack:
        work = Path(folder)
        sink_port = start_sink(stack, work)
        certs = make_certificates(work)
        failures = []
        for name, figures in (("delivery", lambda: delivery_figures(stack, work, sink_port, certs)),
                              ("http", lambda: http_figures(stack, work, sink_port)),
                              ("postgresql", lambda: postgresql.figures(work, sink_port)),
                              ("claims", claim_backlog.figures)):
            if ONLY and name != ONLY:
                continue
            try:
                figures()
            except Exception as error:  # a figure that breaks is reported, the others still run
                failures.append(f"{name} figures stopped: {type(error).__name__}: {error}")
                say(failures[-1])
                traceback.print_exc()
                for log in work.glob("*.log"):
                    say(f"--- {log.name} (tail)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:]))
        NOTES.extend(failures)
        # The servers' and workers' logs outlive the run's temporary folder, to look into a figure afterwards.
        kept = BUILD / "logs"
        shutil.rmtree(kept, ignore_errors=True)
        kept.mkdir(parents=True)
        for log in work.glob("*.log"):
            shutil.copy(log, kept)
        elapsed = time.perf_counter() - began
        write_report(elapsed)
    print()
    print(table())
    for note in NOTES:
        print(f"- {note}")
    return 1 if failures else 0


if __name__ == "__main__":
    # Run as the module bench.postgresql imports (`python -m` would make this file a second one, __main__): one ROWS,
    # one NOTES.
    from bench import run

    sys.exit(run.main())
