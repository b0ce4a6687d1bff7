"""`make bench`'s delivery figures (BENCH_ONLY=delivery): P1, P2 and P5, each against raw smtplib sending the same
composed messages, and the servers they deliver to: Postfix's smtp-sink (extracted from the Debian package into
build/bench/), stunnel in front of it for implicit TLS, an aiosmtpd STARTTLS sink (bench/starttls_sink.py), with a
throwaway CA's certificate. Drain and raw_reused serve the PostgreSQL figures too (bench/postgresql.py).
"""
import datetime
import logging
import os
import shutil
import smtplib
import ssl
import statistics
import subprocess
import sys
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench.run import BIN, BUILD, COUNTS, NOTES, ROOT, ROWS, Row, _met, free_port, say, start
from bench.workload import Workload

POSTFIX = BUILD / "postfix"
SINK = POSTFIX / "usr" / "sbin" / "smtp-sink"

# The delivering account of the drains' instances (the only one, the default): a sender with an accented name.
ACCOUNT = dict(name="Central de Notificações", sender="Central de Notificações <avisos@exemplo.com.br>",
               reply_to="Atendimento <atendimento@exemplo.com.br>", return_path="devolucoes@exemplo.com.br",
               confirmation_email="confirmacoes@exemplo.com.br", is_default=True)


# --- The servers: smtp-sink and a throwaway CA --------------------------------------------------------------------


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


def figures(stack: ExitStack, work: Path, sink_port: int, certs) -> None:
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
