"""`make bench`'s HTTP figures (BENCH_ONLY=http): P4, P6 and P3 against `smtpdesk serve --no-worker` on an instance
seeded by bench/seed.py, loaded by wrk (one thread). wrk, seed_instance and p3_figure serve the PostgreSQL figures too
(bench/postgresql.py).
"""
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from bench.run import BIN, COUNTS, NOTES, ROOT, ROWS, Row, _met, free_port, say, start
from bench.workload import wrk_post_script

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


def figures(stack: ExitStack, work: Path, sink_port: int) -> None:
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
