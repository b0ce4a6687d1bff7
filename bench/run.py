"""`make bench`: smtpdesk's throughput and latency figures against baselines measured in the same run.

Everything runs on 127.0.0.1: Postfix's smtp-sink (from the Debian package, extracted into build/bench/), stunnel in
front of it for implicit TLS, an aiosmtpd STARTTLS sink, and `smtpdesk serve --no-worker` for the HTTP figures.
BENCH_QUICK=1 uses small counts (a smoke run). The table is printed and written to docs/BENCHMARKS.md.
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
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "bench"
POSTFIX = BUILD / "postfix"
SINK = POSTFIX / "usr" / "sbin" / "smtp-sink"
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
# BENCH_ONLY=delivery or BENCH_ONLY=http runs one family of figures (while working on it); the report says so.
ONLY = os.environ.get("BENCH_ONLY", "")
BIN = Path(sys.executable).parent

COUNTS = dict(
    raw=1000 if QUICK else 10000,         # baseline (a), reused connection
    fresh=300 if QUICK else 2000,         # baseline (b), a connection per message
    p1=1000 if QUICK else 10000,
    tls_fresh=100 if QUICK else 500,      # new-connection baselines over TLS
    p2=500 if QUICK else 3000,
    http_seconds=3 if QUICK else 10,
    accounts=200,
    notifications=20000 if QUICK else 1000000,
    p5=10 if QUICK else 50,
)


# The message: a 1 KB text body (one recipient).
BODY = ("Your report is ready. " * 46)[:1000]
ADDRESSES = dict(sender="Ops <ops@example.com>", reply_to="reply@example.com", return_path="bounces@example.com",
                 confirmation_email="receipts@example.com")


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


# --- Raw smtplib baselines -------------------------------------------------------------------------------------


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


def raw_reused(port: int, count: int, message: bytes, sender: str, rcpt: str, mode: str = "plain",
               context=None) -> float:
    """Messages per second over one connection (baseline a)."""
    client = _client(port, mode, context)
    try:
        began = time.perf_counter()
        for _ in range(count):
            client.sendmail(sender, [rcpt], message)
        return count / (time.perf_counter() - began)
    finally:
        client.quit()


def raw_fresh(port: int, count: int, message: bytes, sender: str, rcpt: str, mode: str = "plain",
              context=None) -> float:
    """Messages per second with a new connection (and TLS handshake) per message (baseline b)."""
    began = time.perf_counter()
    for _ in range(count):
        client = _client(port, mode, context)
        client.sendmail(sender, [rcpt], message)
        client.quit()
    return count / (time.perf_counter() - began)


# --- Delivery figures (P1, P2, P5) in this process -------------------------------------------------------------


def delivery_figures(stack: ExitStack, work: Path, sink_port: int, certs) -> None:
    """Baselines, P1, P2 and P5 against a fresh instance database in this process."""
    ca_path, cert_path, key_path = certs
    instance = work / "delivery-instance"
    instance.mkdir()
    os.environ["SMTPDESK_INSTANCE_PATH"] = str(instance)
    from webapp import create_app, db
    from webapp.mail.outbox import OutboxSettings, Worker, build_wire, outbox_counts, send_notification
    from webapp.models import Notification, SmtpAccount

    app = create_app()
    # The worker logs a line per message, as `smtpdesk worker` does: kept (same cost) but in a file, not the console.
    logging.basicConfig(level=logging.INFO, force=True, filename=str(work / "worker.log"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx = app.app_context()
    ctx.push()
    stack.callback(ctx.pop)
    db.upgrade()
    database = db.database
    database.connect(reuse_if_open=True)
    stack.callback(lambda: database.is_closed() or database.close())
    ca_pem = ca_path.read_text()
    plain = SmtpAccount.create(name="sink", **ADDRESSES, host="127.0.0.1", port=sink_port,
                               is_default=True)

    def enqueue(count: int, account) -> float:
        began = time.perf_counter()
        for i in range(count):
            send_notification(to="user@example.com", subject=f"Bench {i}", text=BODY, account=account)
        return count / (time.perf_counter() - began)

    def drain(expected: int) -> tuple[float, dict]:
        worker = Worker(OutboxSettings.from_config(app.config), name="bench-worker")
        began = time.perf_counter()
        try:
            worker.run_until_idle(timeout=1800)
        finally:
            worker.close()
        rate = expected / (time.perf_counter() - began)
        return rate, outbox_counts()

    say(f"P1: enqueueing {COUNTS['p1']} notifications with send_notification")
    enqueue_rate = enqueue(COUNTS["p1"], plain)
    first = Notification.select().order_by(Notification.id).first()
    raw, sender, recipients = build_wire(first, plain)
    NOTES.append(f"Message: {len(raw)} bytes as sent (1,000-byte text body, one recipient), composed by "
                 f"webapp.mail.outbox.build_wire as the worker does; the baselines send these same bytes.")

    say("baselines (a) and (b) against smtp-sink")
    base_a = raw_reused(sink_port, COUNTS["raw"], raw, sender, recipients[0])
    base_b = raw_fresh(sink_port, COUNTS["fresh"], raw, sender, recipients[0])
    ROWS.append(Row("(a) raw smtplib, one reused connection", f"{base_a:,.0f} msg/s", "", "", "", ""))
    ROWS.append(Row("(b) raw smtplib, new connection per message", f"{base_b:,.0f} msg/s", "", "", "", ""))

    say(f"P1: one Worker draining {COUNTS['p1']} notifications")
    p1, counts = drain(COUNTS["p1"])
    sent = counts.get("sent", 0)
    ok = sent == COUNTS["p1"]
    ROWS.append(Row(f"P1 outbox drain, {COUNTS['p1']:,} notifications (enqueue alone: {enqueue_rate:,.0f}/s)",
                    f"{p1:,.0f} msg/s", f"(a) {base_a:,.0f} msg/s", f"{p1 / base_a:.2f}", ">= 0.70",
                    _met(p1 / base_a >= 0.7 and ok)))
    if not ok:
        NOTES.append(f"P1: not every notification was sent: {counts}")

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
        account = SmtpAccount.create(name=f"bench-{mode}", **ADDRESSES, host="127.0.0.1",
                                     port=port, secure=True, secure_type=mode, ca_cert=ca_pem)
        say(f"P2 {label}: baselines")
        fresh = raw_fresh(port, COUNTS["tls_fresh"], raw, sender, recipients[0], mode, context)
        reused = raw_reused(port, COUNTS["tls_fresh"] * 4, raw, sender, recipients[0], mode, context)
        say(f"P2 {label}: enqueue {COUNTS['p2']} and drain")
        enqueue(COUNTS["p2"], account)
        rate, counts = drain(COUNTS["p2"])
        sent_here = Notification.select().where(Notification.account == account, Notification.status == "sent")
        ok = sent_here.count() == COUNTS["p2"]
        ROWS.append(Row(f"P2 outbox drain over {label}, {COUNTS['p2']:,} notifications", f"{rate:,.0f} msg/s",
                        f"new conn/msg {fresh:,.0f} msg/s (raw reused: {reused:,.0f})", f"{rate / fresh:.1f}",
                        ">= 5", _met(rate / fresh >= 5 and ok)))
        if not ok:
            NOTES.append(f"P2 {label}: not every notification was sent: {counts}")
    NOTES.append("P2 STARTTLS: aiosmtpd is the server (advertising PIPELINING, as smtp-sink does), and the ceiling "
                 "(its raw reused rate is shown beside it).")

    p5_figure(app, plain, sink_port, raw, sender, recipients[0])


def p5_figure(app, account, sink_port: int, raw: bytes, sender: str, rcpt: str) -> None:
    """The test dialog's send (webapp.accounts.testing.send_test) minus raw smtplib for the same dialogue."""
    from webapp.accounts.testing import send_test

    say(f"P5: {COUNTS['p5']} test sends, each paired with a raw smtplib dialogue")
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
            client.sendmail(sender, [rcpt], raw)
            client.quit()
            other = time.perf_counter() - began
            ours.append(mine * 1000)
            theirs.append(other * 1000)
            differences.append((mine - other) * 1000)
    p50 = statistics.median(differences)
    ROWS.append(Row("P5 test dialog minus raw smtplib, same dialogue (p50)", f"{p50:.2f} ms",
                    f"raw p50 {statistics.median(theirs):.2f} ms; send_test p50 {statistics.median(ours):.2f} ms", "",
                    "< 15 ms", _met(p50 < 15)))
    NOTES.append("P5 calls webapp.accounts.testing.send_test() in a request context (the route's work without HTTP, "
                 "CSRF or the audit write), over plain SMTP to smtp-sink, paired per iteration with raw smtplib.")


# --- HTTP figures (P3, P4, P6) against `smtpdesk serve --no-worker` ---------------------------------------------


WRK_POST = """wrk.method = "POST"
wrk.body = '{"to": "user@example.com", "subject": "Bench", "text": "%s"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
"""
WRK_TIMEOUT = 30
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, seconds: int, headers: dict, script: Path | None = None) -> dict:
    """8 connections for `seconds`; requests/s, p50 and p99 in ms, errors.

    One wrk thread drives the 8 connections: it keeps up with a few thousand requests a second, and a second one
    only took CPU from the server it measures on a machine of two (the server's pages and wrk share the CPUs)."""
    args = ["wrk", "-t", "1", "-c", "8", "-d", f"{seconds}s", "--latency", "--timeout", f"{WRK_TIMEOUT}s"]
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
    return result


def memory_mb(pid: int) -> dict:
    """The server's processes (it and its serving children): the largest RSS, the RSS summed, and the PSS summed
    (shared pages counted once across them: what the server as a whole takes)."""
    pids = [pid] + [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    rss, pss = [], []
    for each in pids:
        rollup = Path(f"/proc/{each}/smaps_rollup").read_text()
        rss.append(int(re.search(r"^Rss:\s+(\d+) kB", rollup, re.M).group(1)) / 1024)
        pss.append(int(re.search(r"^Pss:\s+(\d+) kB", rollup, re.M).group(1)) / 1024)
    return {"processes": len(pids), "largest": max(rss), "rss": sum(rss), "pss": sum(pss)}


def http_figures(stack: ExitStack, work: Path, sink_port: int) -> None:
    """Seed an instance, serve it (no worker), then P3, P4 and P6."""
    import requests

    instance = work / "server-instance"
    instance.mkdir()
    env = {**os.environ, "SMTPDESK_INSTANCE_PATH": str(instance), "PYTHONPATH": str(ROOT)}
    say(f"P4 seed: {COUNTS['accounts']} accounts, {COUNTS['notifications']:,} notifications (executemany)")
    began = time.perf_counter()
    seeded = subprocess.run([sys.executable, "-m", "bench.seed", str(COUNTS["accounts"]),
                             str(COUNTS["notifications"]), str(sink_port)], env=env, capture_output=True,
                            text=True, timeout=900)
    if seeded.returncode != 0:
        raise RuntimeError("bench.seed failed: " + seeded.stderr[-2000:])
    seed = json.loads(seeded.stdout.strip().splitlines()[-1])
    NOTES.append(f"P4 seed: {COUNTS['notifications']:,} notifications and {COUNTS['accounts']} accounts inserted in "
                 f"{time.perf_counter() - began:.0f} s.")
    port = free_port()
    server = start(stack, [BIN / "smtpdesk", "serve", "--port", port, "--no-worker"], port, work / "server.log",
                   env=env)
    base = f"http://127.0.0.1:{port}"
    agent = "smtpdesk-bench"
    with requests.Session() as browser:
        browser.headers["User-Agent"] = agent
        page = browser.get(f"{base}/auth/login", timeout=30).text
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page) or \
            re.search(r'value="([^"]+)"[^>]*name="csrf_token"', page)
        answer = browser.post(f"{base}/auth/login", timeout=30, data={
            "csrf_token": token.group(1), "username": seed["username"], "password": seed["password"]})
        if "/auth/login" in answer.url:
            raise RuntimeError("could not sign in to the served app")
        cookie = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)
    page_headers = {"Cookie": cookie, "User-Agent": agent, "Accept-Language": "en"}
    seconds = COUNTS["http_seconds"]

    say("trivial routes")
    trivial = wrk(f"{base}/static/css/app.css", seconds, page_headers)
    login_page = wrk(f"{base}/auth/login", seconds, {"User-Agent": agent})
    ROWS.append(Row("trivial route /static/css/app.css (8 clients)", _latency(trivial), "", "", "", ""))
    ROWS.append(Row("trivial route GET /auth/login (8 clients)", _latency(login_page), "", "", "", ""))

    say("P3: POST /api/v1/notifications")
    script = work / "post.lua"
    script.write_text(WRK_POST % ("Your report is ready. " * 4, seed["token"]))
    result = wrk(f"{base}/api/v1/notifications", seconds, {"User-Agent": agent}, script)
    if result["non2xx"]:
        NOTES.append(f"P3: {result['non2xx']} answers were not 2xx (socket errors: {result['socket_errors']}).")
    ROWS.append(Row("P3 POST /api/v1/notifications (8 clients, worker off)", _latency(result), "", "",
                    "p99 < 30 ms", _met(result["requests"] > 0 and result["p99"] < 30 and not result["non2xx"])))

    say("P4: accounts report and deliveries page")
    for label, path, goal in (
            (f"P4 accounts report, {COUNTS['accounts']} accounts", "/accounts/", 30),
            (f"P4 deliveries, {COUNTS['notifications']:,} notifications, status=sent & recipient filter",
             "/deliveries/?status=sent&recipient=user4321%40example.com", 50)):
        result = wrk(base + path, seconds, page_headers)
        if result["non2xx"] or result["socket_errors"]:
            NOTES.append(f"{label}: {result['non2xx']} answers were not 2xx/3xx; socket errors: "
                         f"{result['socket_errors'] or 'none'} (wrk timeout {WRK_TIMEOUT} s).")
        ROWS.append(Row(label + " (8 clients)", _latency(result), f"app.css p99 {trivial['p99']:.1f} ms",
                        f"{result['p99'] / trivial['p99']:.1f} x app.css; "
                        f"{result['p99'] / login_page['p99']:.1f} x login",
                        f"p99 < {goal} ms",
                        _met(result["requests"] > 0 and result["p99"] < goal and not result["non2xx"])))

    say("P6: server RSS")
    memory = memory_mb(server.pid)
    processes = f" ({memory['processes']} processes: the server and its serving processes)" \
        if memory["processes"] > 1 else ""
    NOTES.append(f"P3/P4: `smtpdesk serve` ran {memory['processes']} process(es) on {os.cpu_count()} CPUs, "
                 "8 waitress threads each; wrk (one thread, 8 connections) ran on the same CPUs.")
    value = f"{memory['largest']:.0f} MB" if memory["processes"] == 1 else \
        f"largest {memory['largest']:.0f} MB; together {memory['pss']:.0f} MB PSS ({memory['rss']:.0f} MB RSS summed)"
    ROWS.append(Row(f"P6 server RSS after P4{processes}", value, "", "", "< 100 MB",
                    _met(memory["pss"] < 100 and memory["largest"] < 100)))


def _latency(result: dict) -> str:
    if not result["requests"]:
        return f"no request completed in {COUNTS['http_seconds']} s (wrk timeout {WRK_TIMEOUT} s)"
    return f"{result['rps']:,.0f} req/s, p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms"


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
        "- (a)/(b): smtplib to smtp-sink, the same bytes the worker sends; (b) opens, EHLOs and QUITs per message.",
        "- P1: send_notification() into a fresh instance database, then one `Worker` with the default OUTBOX_* "
        "settings (`run_until_idle`), timed until every notification is recorded as sent.",
        "- P2: same worker, one account per mode trusting a throwaway CA through the account's ca_cert; baseline is "
        "smtplib with a new connection (and handshake) per message to the same server.",
        "- P3/P4: `smtpdesk serve --no-worker` with its default SERVE_PROCESSES and SERVE_THREADS (see the notes) "
        "loaded by wrk with 8 connections (one wrk thread); p50/p99 are "
        "wrk's latency distribution. P4 pages are requested signed in as an admin, in English.",
        "- P5: see the note above. P6: from /proc/<pid>/smaps_rollup after P4, for the server and each serving "
        "process: the largest RSS, and the PSS summed (shared pages counted once), which is compared to the goal.", "",
    ])
    # Only a full run of every figure replaces the published report; smoke and partial runs stay in build/.
    target = BUILD / "BENCHMARKS-partial.md" if QUICK or ONLY else ROOT / "docs" / "BENCHMARKS.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    say(f"report written to {target.relative_to(ROOT)}")


def main() -> int:
    """Run every figure, print the table, write docs/BENCHMARKS.md; processes are stopped whatever happens."""
    began = time.perf_counter()
    START.update(load=_load(), others=others_running())
    obtain_smtp_sink()
    with tempfile.TemporaryDirectory(prefix="smtpdesk-bench-") as folder, ExitStack() as stack:
        work = Path(folder)
        sink_port = start_sink(stack, work)
        certs = make_certificates(work)
        failures = []
        for name, figures in (("delivery", lambda: delivery_figures(stack, work, sink_port, certs)),
                              ("http", lambda: http_figures(stack, work, sink_port))):
            if ONLY and name != ONLY:
                continue
            try:
                figures()
            except Exception as error:  # a figure that breaks is reported, the others still run
                failures.append(f"{name} figures stopped: {type(error).__name__}: {error}")
                say(failures[-1])
                for log in work.glob("*.log"):
                    say(f"--- {log.name} (tail)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:]))
        NOTES.extend(failures)
        elapsed = time.perf_counter() - began
        write_report(elapsed)
    print()
    print(table())
    for note in NOTES:
        print(f"- {note}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
