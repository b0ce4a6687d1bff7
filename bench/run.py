"""`make bench`: smtpdesk's throughput and latency figures against baselines measured in the same run.

Everything runs on 127.0.0.1: Postfix's smtp-sink (from the Debian package, extracted into build/bench/), stunnel in
front of it for implicit TLS, an aiosmtpd STARTTLS sink, `smtpdesk worker --until-idle` for the drains
(bench/delivery.py) and `smtpdesk serve --no-worker` for the HTTP figures (bench/http.py); the PostgreSQL figures
(bench/postgresql.py) run the same commands on a throwaway PostgreSQL cluster of their own. The notifications are
bench.workload's (pt-BR, one to three new recipients each). The claims figures (bench/claim_backlog.py) time a claim
past a rate-limited account's rows. This module holds what the families share (COUNTS, ROWS, NOTES, Row, say, start,
...), the report and main(); the families' modules import it, and main() imports them.
BENCH_QUICK=1 uses small counts (a smoke run); BENCH_ONLY=delivery, http, postgresql or claims runs one family. The
table is printed; a full run writes docs/BENCHMARKS.md, the others build/bench/BENCHMARKS-partial.md.
"""
import datetime
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "bench"
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


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


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
    from bench import claim_backlog, delivery, http, postgresql

    # Each figure says which database it runs on: the SQLite file of its instance folder unless it names another.
    os.environ.pop("SMTPDESK_DATABASE_URL", None)
    began = time.perf_counter()
    START.update(load=_load(), others=others_running())
    delivery.obtain_smtp_sink()
    with tempfile.TemporaryDirectory(prefix="smtpdesk-bench-") as folder, ExitStack() as stack:
        work = Path(folder)
        sink_port = delivery.start_sink(stack, work)
        certs = delivery.make_certificates(work)
        failures = []
        for name, figures in (("delivery", lambda: delivery.figures(stack, work, sink_port, certs)),
                              ("http", lambda: http.figures(stack, work, sink_port)),
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
    # Run as the module the families' modules import (`python -m` would make this file a second one, __main__): one
    # ROWS, one NOTES.
    from bench import run

    sys.exit(run.main())
