"""`make bench`'s PostgreSQL figures (BENCH_ONLY=postgresql), on a throwaway cluster of their own: P1 with one
`smtpdesk worker --until-idle` against raw smtplib, two of them at once against one, and P3 against `smtpdesk serve
--no-worker` on a seeded database. The app reaches the cluster as any installation does, by SMTPDESK_DATABASE_URL.

The cluster keeps PostgreSQL's settings but one: synchronous_commit=off, the durability the SQLite figures have
(the app runs SQLite in WAL mode with synchronous=NORMAL). Either way a crash may lose the last commits and never
corrupts the database. With PostgreSQL's default (on), every commit also waits for its write-ahead log to reach the
disk, which measures the disk as much as the app; one more drain shows what that default costs here.
"""
import os
import shutil
from contextlib import ExitStack
from pathlib import Path

import psycopg

from bench.delivery import Drain, raw_reused
from bench.http import _errors, p3_figure, seed_instance, wrk
from bench.run import BIN, COUNTS, NOTES, ROOT, ROWS, Row, _met, free_port, say, start
from bench.workload import Workload
from tests.support.pg_cluster import throwaway_cluster

# PostgreSQL's defaults but this one, listening on loopback only (tests.support.pg_cluster adds that): fsync and
# full_page_writes stay on, unlike the tests' cluster.
SETTINGS = "-c synchronous_commit=off"
# The team's goal for two workers against one on this 2-core machine (issue 16).
TWO_WORKERS_GOAL = 1.4


def figures(work: Path, sink_port: int) -> None:
    """Start the cluster, take the delivery figures then the API one, and remove it (keeping its log)."""
    with throwaway_cluster(SETTINGS) as cluster, ExitStack() as stack:
        stack.callback(shutil.copy, Path(cluster.data) / "server.log", work / "postgresql.log")
        with psycopg.connect(cluster.url("postgres")) as connection:
            version = connection.execute("SHOW server_version").fetchone()[0]
        NOTES.append(f"PostgreSQL figures: PostgreSQL {version}, a throwaway cluster on 127.0.0.1 with the server's "
                     "default settings (fsync and full_page_writes on) but synchronous_commit=off, the durability of "
                     "the SQLite figures (WAL, synchronous=NORMAL): the last commits may be lost in a crash, the "
                     "database stays whole. The app reaches the cluster by SMTPDESK_DATABASE_URL, each figure in a "
                     "database of its own.")
        delivery_figures(cluster, work, sink_port)
        api_figure(stack, cluster, work, sink_port)


def new_database(cluster, name: str) -> str:
    """An empty database of the cluster (the app migrates it); its URL."""
    cluster.execute(f'CREATE DATABASE "{name}" TEMPLATE "template0"')
    return cluster.url(name)


def delivery_figures(cluster, work: Path, sink_port: int) -> None:
    """P1's workload in three databases: drained by one worker, by two at once, and by one with synchronous_commit
    on; raw smtplib sends the first's messages."""
    workload = Workload("postgresql")
    count = COUNTS["p1"]
    drains = {}
    for name in ("one", "two", "durable"):
        say(f"PostgreSQL P1 ({name}): enqueueing {count:,} notifications, composing them")
        drains[name] = Drain(work, f"pg-{name}", workload, count, database_url=new_database(cluster, f"drain_{name}"),
                             host="127.0.0.1", port=sink_port)
    one, two, durable = drains["one"], drains["two"], drains["durable"]
    # Enqueued as the others were; its workers' connections then commit as PostgreSQL does by default.
    cluster.execute('ALTER DATABASE "drain_durable" SET synchronous_commit = on')
    say("PostgreSQL P1 baseline: raw smtplib, one connection")
    baseline = raw_reused(sink_port, one.messages)
    say(f"PostgreSQL P1: one smtpdesk worker --until-idle draining {count:,} notifications")
    seconds_one = one.drain()
    idle = one.drain()  # nothing left: what starting and stopping the command costs every drain
    say(f"PostgreSQL: two smtpdesk worker --until-idle at once draining {count:,} notifications")
    seconds_two = two.drain(workers=2)
    say(f"PostgreSQL, synchronous_commit on: one smtpdesk worker --until-idle draining {count:,} notifications")
    seconds_durable = durable.drain()
    rate_one, rate_two, rate_durable = count / seconds_one, count / seconds_two, count / seconds_durable
    ROWS.append(Row(f"P1 on PostgreSQL: one `smtpdesk worker --until-idle` draining {count:,} notifications to "
                    f"smtp-sink (alone: enqueue {one.enqueue_rate:,.0f}/s)", f"{rate_one:,.0f} msg/s "
                    f"({seconds_one:.1f} s)", f"raw smtplib, one reused connection: {baseline:,.0f} msg/s",
                    f"{rate_one / baseline:.2f}", ">= 0.8", _met(rate_one / baseline >= 0.8)))
    ROWS.append(Row(f"PostgreSQL: two `smtpdesk worker --until-idle` at once draining {count:,} notifications to "
                    f"smtp-sink", f"{rate_two:,.0f} msg/s ({seconds_two:.1f} s)", f"one worker {rate_one:,.0f} msg/s",
                    f"{rate_two / rate_one:.2f}", f">= {TWO_WORKERS_GOAL}",
                    _met(rate_two / rate_one >= TWO_WORKERS_GOAL)))
    ROWS.append(Row(f"PostgreSQL, synchronous_commit on (the server's default): one `smtpdesk worker --until-idle` "
                    f"draining {count:,} notifications to smtp-sink", f"{rate_durable:,.0f} msg/s "
                    f"({seconds_durable:.1f} s)", f"one worker, synchronous_commit off: {rate_one:,.0f} msg/s",
                    f"{rate_durable / rate_one:.2f}", "", ""))
    made = {name: attempts(drain.database_url) for name, drain in drains.items()}
    for name, (shares, _) in made.items():
        if sum(shares) != count:
            raise RuntimeError(f"{drains[name].label}: {sum(shares):,} delivery attempts for {count:,} notifications")
    sending = {name: count / window for name, (_, window) in made.items()}
    NOTES.append(f"PostgreSQL drains: {one.describe()} in the first database, as many of the same kind (P1's, "
                 "bench/workload.py) in each other one, all enqueued with send_notification before the first "
                 "drain, sent to the same smtp-sink. Every notification ended \"sent\" after one attempt: "
                 f"{count:,} attempts in each database, the two workers making "
                 f"{' and '.join(f'{n:,}' for n in made['two'][0])} of them. The drains are timed from starting the "
                 f"command(s) to the last exit: {idle:.2f} s of it is a command starting and stopping (one worker "
                 "run again on its drained database). From the start of the first delivery attempt to the end of the "
                 f"last (the attempts' own times), one worker sent {sending['one']:,.0f} msg/s, two "
                 f"{sending['two']:,.0f} msg/s ({sending['two'] / sending['one']:.2f} x), one with synchronous_commit "
                 f"on {sending['durable']:,.0f} msg/s.")


def attempts(url: str) -> tuple[list[int], float]:
    """How many delivery attempts each worker made in a database (most first), and the seconds from the start of the
    first to the end of the last."""
    with psycopg.connect(url) as connection:
        shares = connection.execute('SELECT COUNT(*) FROM "delivery_attempt" GROUP BY "worker"').fetchall()
        window = connection.execute(
            'SELECT EXTRACT(EPOCH FROM MAX("started_at" + "duration_ms" * INTERVAL \'1 millisecond\') '
            '- MIN("started_at")) FROM "delivery_attempt"').fetchone()[0]
    return sorted((n for n, in shares), reverse=True), float(window or 0)


def api_figure(stack: ExitStack, cluster, work: Path, sink_port: int) -> None:
    """P3 on a database seeded as the SQLite figures' instance is, served without a worker."""
    url = new_database(cluster, "served")
    instance = work / "pg-server-instance"
    instance.mkdir()
    env = {**os.environ, "SMTPDESK_INSTANCE_PATH": str(instance), "SMTPDESK_DATABASE_URL": url,
           "PYTHONPATH": str(ROOT)}
    say(f"PostgreSQL seed: {COUNTS['accounts']} accounts, {COUNTS['notifications']:,} notifications (COPY)")
    seed, seed_seconds = seed_instance(env, sink_port)
    with psycopg.connect(url) as connection:
        size = connection.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        keys = connection.execute('SELECT COUNT(*) FROM "notification_search"').fetchone()[0]
    NOTES.append(f"PostgreSQL seed (bench/seed.py, {seed_seconds:.0f} s): the same accounts and "
                 f"{COUNTS['notifications']:,} notifications as the SQLite instance's, by COPY, {keys:,} recipient "
                 f"search keys, then VACUUM ANALYZE (as autovacuum would soon after); {size / 2**30:.2f} GiB.")

    port = free_port()
    start(stack, [BIN / "smtpdesk", "serve", "--port", port, "--no-worker"], port, work / "pg-server.log", env=env)
    base = f"http://127.0.0.1:{port}"
    # Every serving thread opens its PostgreSQL connection (a server process) on its first request: reading one
    # notification with 8 clients beforehand makes the figure the steady state, as the SQLite server's is after
    # the page figures.
    warm = wrk(f"{base}/api/v1/notifications/1", 8, {"Authorization": f"Bearer {seed['token']}"}, seconds=2)
    _errors("P3 on PostgreSQL, warming up", warm)

    def read_served(sql: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(url) as connection:
            return connection.execute(sql.replace("?", "%s"), params).fetchall()

    p3_figure("P3 on PostgreSQL", base, work, seed["token"], read_served)
    NOTES.append("P3 on PostgreSQL: `smtpdesk serve --no-worker` as for P3, warmed by 2 s of GET "
                 "/api/v1/notifications/1 with 8 clients (each serving thread opens its database connection on its "
                 "first request).")
