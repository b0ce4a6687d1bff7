"""Hosts sharing one PostgreSQL database, as the README's "Scaling out" runs them: each host an instance folder of its
own and the shared keys in files (SMTPDESK_SECRET_KEY_FILE, SMTPDESK_VAULT_KEYS_FILE), its app served by gunicorn;
and a browser whose cookies go to whichever host answers, as behind a load balancer."""
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.support.net import free_port, wait_for_port
from tests.support.processes import CHECKOUT, stop

GUNICORN = shutil.which("gunicorn", path=str(Path(sys.executable).parent))
CSRF_IN_PAGE = re.compile(r'"X-CSRFToken": "([^"]+)"')
SECRET_KEY = "a-secret-key-every-host-of-this-test-shares-0123456789"


def host_env(folder: Path, database_url: str, vault_keys: str, **config) -> dict:
    """The environment of an smtpdesk process on a host whose files live in `folder`: its instance folder, and its
    copy of the shared keys (0400), named by the *_FILE variables. config: more SMTPDESK_* settings."""
    (folder / "instance").mkdir(parents=True, exist_ok=True)
    keys = folder / "credentials"
    keys.mkdir(exist_ok=True)
    for name, value in (("secret_key", SECRET_KEY), ("vault.keys", vault_keys)):
        (keys / name).write_text(value + "\n")
        (keys / name).chmod(0o400)
    env = {name: value for name, value in os.environ.items() if not name.startswith("SMTPDESK_")}
    env.update(SMTPDESK_INSTANCE_PATH=str(folder / "instance"), SMTPDESK_DATABASE_URL=database_url,
               SMTPDESK_SECRET_KEY_FILE=str(keys / "secret_key"), SMTPDESK_VAULT_KEYS_FILE=str(keys / "vault.keys"),
               PYTHONPATH=CHECKOUT, PYTHONUNBUFFERED="1")
    env.update({f"SMTPDESK_{key}": str(value) for key, value in config.items()})
    return env


def launch(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    """Start a process with this environment, its output to `log`."""
    with open(log, "wb") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def wait_until_listening(process: subprocess.Popen, port: int, log: Path) -> None:
    """Return once the process listens on port; RuntimeError with its log when it does not (stopped)."""
    try:
        wait_for_port(port, timeout=60)
    except TimeoutError:
        stop(process)
        raise RuntimeError(f"{process.args[0]} did not start: {log.read_text(errors='replace')}") from None


@dataclass
class Host:
    """A host's served app: gunicorn as the README runs it, on a loopback port."""

    name: str
    port: int
    process: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start_all(cls, hosts: dict[str, tuple[Path, dict]]) -> tuple["Host", ...]:
        """Start gunicorn for each host {name: (its folder, its environment)} at once; return them once all listen."""
        started = []
        for name, (folder, env) in hosts.items():
            port = free_port()
            # One gunicorn worker: each host is then one process, and the test knows which one answered.
            args = [GUNICORN, "--preload", "--workers", "1", "--threads", "4", "--bind", f"127.0.0.1:{port}",
                    "--no-control-socket", "webapp:create_app_or_exit()"]
            started.append(cls(name, port, launch(args, env, folder / "gunicorn.log"), folder / "gunicorn.log"))
        try:
            for host in started:
                wait_until_listening(host.process, host.port, host.log)
        except RuntimeError:
            stop_all(started)
            raise
        return tuple(started)


def stop_all(hosts) -> None:
    """Stop the hosts' servers together (each ends its requests in flight first)."""
    for host in hosts:
        if host.process.poll() is None:
            host.process.terminate()
    for host in hosts:
        stop(host.process, timeout=30)


class Browser:
    """One browser, in English: the same cookies go to every host (a load balancer may send any request anywhere),
    and each form is sent with the CSRF token of the session's last page, as htmx sends it."""

    def __init__(self):
        self.http = requests.Session()
        self.http.cookies.set("lang", "en")
        self.csrf_token = None

    def get(self, host: Host, path: str, **kwargs) -> requests.Response:
        response = self.http.get(host.url + path.removeprefix(host.url), allow_redirects=False, timeout=60, **kwargs)
        found = CSRF_IN_PAGE.search(response.text)
        if found:
            self.csrf_token = found.group(1)
        return response

    def post(self, host: Host, path: str, data=None, **kwargs) -> requests.Response:
        if self.csrf_token is None:
            self.get(host, "/auth/login")
        headers = {"X-CSRFToken": self.csrf_token, **kwargs.pop("headers", {})}
        response = self.http.post(host.url + path, data=data, headers=headers, allow_redirects=False, timeout=60,
                                  **kwargs)
        if path in ("/auth/login", "/auth/logout"):
            self.csrf_token = None  # a new session, with a CSRF secret of its own
        return response

    def sign_in(self, host: Host, username: str, password: str) -> requests.Response:
        """Sign in from the sign-in page; once signed in, the page it leads to is read, as a browser does."""
        self.get(host, "/auth/login")
        response = self.post(host, "/auth/login", {"username": username, "password": password})
        if response.status_code == 302:
            self.get(host, response.headers["Location"])
        return response

    @property
    def session_cookie(self) -> str:
        return self.http.cookies.get("session")


def with_cookie(host: Host, path: str, cookie: str) -> requests.Response:
    """GET path with this session cookie alone, as a copy of a browser's cookie would be sent."""
    return requests.get(host.url + path, cookies={"session": cookie, "lang": "en"}, allow_redirects=False, timeout=60)


def signed_in(response: requests.Response) -> bool:
    """Whether a page answered as to a signed-in user (a signed-out one is sent to the sign-in page)."""
    if response.status_code == 200:
        return True
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"], response.status_code
    return False
