"""A throwaway PostgreSQL cluster on a free loopback port, removed afterwards: the one the tests run on
(tests/fixtures/postgres.py) and the one `make bench` measures (bench/postgresql.py). As root it runs as the
`postgres` user of Debian's package, since initdb and postgres refuse root."""
import glob
import itertools
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import psycopg

from tests.support.net import free_port

SUPERUSER = "postgres"
# Debian installs each major version in a folder of its own, off PATH; the newest one wins.
BINARIES = "/usr/lib/postgresql/*/bin"
MISSING = ("PostgreSQL is not installed (Debian's `postgresql` package; `make system-test-deps` installs it)")
LOOPBACK_ONLY = "-c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
# A test database costs no fsync: a crash loses only the throwaway cluster.
NO_FSYNC = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"


class PostgresMissing(RuntimeError):
    """No PostgreSQL to start here (not installed, or no `postgres` user to run it as root)."""


def bin_dir() -> str | None:
    """The folder of the newest installed PostgreSQL's initdb and pg_ctl, or None."""
    found = [path for path in glob.glob(BINARIES) if os.access(f"{path}/initdb", os.X_OK)]
    if found:
        return max(found, key=lambda path: int(re.sub(r"\D", "", path.split("/")[-2]) or 0))
    initdb = shutil.which("initdb")
    return os.path.dirname(os.path.realpath(initdb)) if initdb else None


def as_cluster_owner(args: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root: as root the cluster belongs to the `postgres` user of the package.
    return ["runuser", "-u", SUPERUSER, "--", *args] if os.geteuid() == 0 else args


@dataclass(frozen=True)
class PostgresCluster:
    """A running cluster on 127.0.0.1:port, trusting every local connection as the `postgres` superuser; its files
    (and its log, server.log) in the folder `data`."""

    port: int
    data: str = ""
    _names = itertools.count(1)

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str) -> None:
        """Run one statement as the superuser, outside a transaction (CREATE DATABASE needs that)."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as connection:
            connection.execute(sql)

    def create_database(self, template: str = "template0", prefix: str = "test") -> str:
        """A new database copied from template; its URL."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        self.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by create_database(), ending the connections a test left open to it."""
        self.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def _start(binaries: str, data: str, port: int, settings: str) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SUPERUSER)
        os.chown(data, entry.pw_uid, entry.pw_gid)
    # ICU's English collation, as a server set up for people would have: the schema must not depend on it.
    subprocess.run(as_cluster_owner([f"{binaries}/initdb", "-D", data, "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
                                     "--locale=C.UTF-8", "--locale-provider=icu", "--icu-locale=en-US", "--no-sync"]),
                   check=True, capture_output=True)
    subprocess.run(as_cluster_owner([f"{binaries}/pg_ctl", "start", "-w", "-t", "60", "-D", data, "-l",
                                     f"{data}/server.log", "-o", f"-p {port} {settings}"]),
                   check=True, capture_output=True)


@contextmanager
def throwaway_cluster(settings: str = NO_FSYNC) -> Iterator[PostgresCluster]:
    """Start a cluster with these server settings (besides listening on loopback only), stop it and delete its
    files on leaving. Raises PostgresMissing when there is none to start."""
    binaries = bin_dir()
    if binaries is None:
        raise PostgresMissing(MISSING)
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SUPERUSER)
        except KeyError:
            raise PostgresMissing(f"{MISSING}: as root, its `{SUPERUSER}` user runs the cluster") from None
    # In the system's temporary folder, not one private to the user: root hands the cluster to `postgres`.
    data = tempfile.mkdtemp(prefix="smtpdesk-pg-")
    port = free_port()
    try:
        _start(binaries, data, port, f"{LOOPBACK_ONLY} {settings}".strip())
    except subprocess.CalledProcessError as error:
        log = open(f"{data}/server.log").read() if os.path.exists(f"{data}/server.log") else ""
        shutil.rmtree(data, ignore_errors=True)
        raise RuntimeError(f"the throwaway PostgreSQL did not start: {error.stderr.decode()}{log}") from None
    try:
        yield PostgresCluster(port, data)
    finally:
        subprocess.run(as_cluster_owner([f"{binaries}/pg_ctl", "stop", "-D", data, "-m", "immediate"]),
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
