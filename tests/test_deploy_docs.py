"""docs/deploy/ is true: the systemd units' commands run with the environment, credentials and settings the units
give them (paths made the test's, PostgreSQL from the fixture), gunicorn answers and the worker delivers; the admin
wrapper, the backup and the README's restore work; systemd-analyze and nginx (where installed) accept the files."""
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support.factories import PASSWORD, make_credential, make_user
from tests.support.net import free_port, wait_for_port
from tests.support.outbox import account_for
from tests.support.processes import CHECKOUT, stop, wait_for
from tests.support.units import DEPLOY, WEB_ADDRESS, Installation, notify_socket, stop_as_systemd, unit_settings
from webapp import create_app
from webapp.db import database
from webapp.models import AuditEntry, Credential, Notification, User
from webapp.outbox import send_notification

pytestmark = pytest.mark.engines("postgresql")
WEB, WORKER, BACKUP = "smtpdesk-web.service", "smtpdesk-worker.service", "smtpdesk-backup.service"
README = (Path(CHECKOUT) / "README.md").read_text()
# The README's commands, run here as they are written there (sudo aside, /etc/smtpdesk the test's).
KEY_COMMANDS = ["sudo sh -c 'umask 077; openssl rand -base64 48 > /etc/smtpdesk/secret_key'",
                """sudo sh -c 'umask 077; openssl rand -base64 32 | tr "+/" "-_" > /etc/smtpdesk/vault.keys'"""]
RESTORE = 'pg_restore --no-owner --exit-on-error --dbname="$SMTPDESK_DATABASE_URL" smtpdesk-20260301T023000Z.dump'


@pytest.fixture
def host(app, engine, tmp_path) -> Installation:
    """docs/deploy/ installed on a host of the test's own, on the test's database with its vault key."""
    return Installation.make(tmp_path / "host", app.config["DATABASE_URL"], secrets.token_urlsafe(48),
                             app.config["VAULT_KEYS"])


@pytest.fixture
def web(host, tmp_path):
    """The web unit started as systemd would: ExecStartPre=, then ExecStart= until it says it is ready."""
    for finished in host.run(WEB, "ExecStartPre"):
        assert finished.returncode == 0, finished.stderr
    listener = notify_socket(tmp_path / "notify")
    process = host.start(WEB, tmp_path / "web.log", notify_socket=str(tmp_path / "notify"))
    try:
        assert b"READY=1" in listener.recv(4096)  # Type=notify: gunicorn says so itself
        yield process
    finally:
        listener.close()
        status = stop_as_systemd(process, WEB)
        log = (tmp_path / "web.log").read_text(errors="replace")
        assert status == 0 and "Traceback" not in log, log


def test_the_units_serve_the_app_and_deliver_the_outbox(host, web, smtp_server, tmp_path):
    make_user("admin")  # past the first-run setup: the sign-in page answers
    answer = requests.get(f"http://127.0.0.1:{host.port}/auth/login", timeout=30)
    assert answer.status_code == 200 and "Secure" in answer.headers["Set-Cookie"]  # SMTPDESK_BEHIND_HTTPS=1
    assert list(host.instance.iterdir()) == []  # the keys came from the credentials, none was made here

    server = smtp_server()
    account_for(server)
    notification = send_notification(to=["ops@example.com"], subject="Disk full", text="/var is at 97%")
    worker = host.start(WORKER, tmp_path / "worker.log")
    try:
        wait_for(lambda: Notification.get_by_id(notification).status == "sent", 60, "the worker to deliver")
    finally:
        status = stop_as_systemd(worker, WORKER)
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert status == 0 and "Traceback" not in log, log
    assert [received.message["Subject"] for received in server.received] == ["Disk full"]


def test_the_readme_makes_keys_smtpdesk_takes(tmp_path, monkeypatch):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    etc = tmp_path / "made"
    etc.mkdir()
    for command in KEY_COMMANDS:
        assert command in README
        finished = subprocess.run(command.removeprefix("sudo ").replace("/etc/smtpdesk/", f"{etc}/"), shell=True,
                                  capture_output=True, text=True, timeout=60)
        assert finished.returncode == 0, finished.stderr
    assert {path.name: path.stat().st_mode & 0o777 for path in etc.iterdir()} == {"secret_key": 0o600,
                                                                                 "vault.keys": 0o600}
    monkeypatch.setenv("SMTPDESK_INSTANCE_PATH", str(tmp_path / "instance"))
    made = create_app({"TESTING": True, "DATABASE": str(tmp_path / "smtpdesk.db"),
                       "SECRET_KEY_FILE": str(etc / "secret_key"), "VAULT_KEYS_FILE": str(etc / "vault.keys")})
    assert len(made.config["SECRET_KEY"]) == 64 and len(made.config["VAULT_KEYS"]) == 44


def test_the_admin_wrapper_runs_commands_with_the_services_settings_and_keys(host, tmp_path):
    wrapper = tmp_path / "smtpdesk"
    wrapper.write_text(host.local((DEPLOY / "smtpdesk").read_text()))
    # As root runs it from a shell: nothing of smtpdesk's in the environment, the wrapper sets it all.
    env = {name: value for name, value in os.environ.items() if not name.startswith("SMTPDESK_")}
    finished = subprocess.run(["sh", str(wrapper), "users", "create", "walter", "--role", "admin", "--password",
                               PASSWORD], env={**env, "PYTHONPATH": CHECKOUT}, capture_output=True, text=True,
                              timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert User.get(User.username == "walter").role == "admin"
    assert list(host.instance.iterdir()) == []


def test_the_backup_unit_dumps_the_database_and_the_readme_restores_it_with_the_vault_key(
        app, host, empty_postgres_database, tmp_path):
    if shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed (Debian's postgresql-client)")
    stored = make_credential(secret="kept-in-the-dump").id
    make_user("admin", username="restored")
    for finished in (*host.run(BACKUP, "ExecStart"), *host.run(BACKUP, "ExecStartPost")):
        assert finished.returncode == 0, finished.stderr
    [dump] = host.backups.glob("smtpdesk-*.dump")
    assert re.fullmatch(r"smtpdesk-\d{8}T\d{6}Z\.dump", dump.name)

    assert RESTORE in README
    restore = RESTORE.replace("smtpdesk-20260301T023000Z.dump", str(dump))
    finished = subprocess.run(["sh", "-c", restore], env={**host.environment(BACKUP),
                                                          "SMTPDESK_DATABASE_URL": empty_postgres_database},
                              capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr

    # The dump alone holds no secret in clear; with the vault key kept apart, smtpdesk reads them again.
    restored = create_app({"TESTING": True, "SECRET_KEY": "x" * 40, "DATABASE_URL": empty_postgres_database,
                           "VAULT_KEYS": app.config["VAULT_KEYS"]})
    with restored.app_context(), database.connection_context():
        assert User.get(User.username == "restored").role == "admin"
        assert Credential.get_by_id(stored).reveal_secret() == "kept-in-the-dump"
    assert b"kept-in-the-dump" not in dump.read_bytes()


def test_systemd_accepts_the_units(host, tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    folder = tmp_path / "units"
    folder.mkdir()
    names = [WEB, WORKER, BACKUP, "smtpdesk-backup.timer"]
    for name in names:
        (folder / name).write_text(host.local((DEPLOY / name).read_text()))  # commands that exist here
    finished = subprocess.run([analyze, "verify", *[str(folder / name) for name in names]], capture_output=True,
                              text=True, timeout=120)
    assert finished.returncode == 0 and finished.stderr == "", finished.stderr


def test_the_units_name_the_files_the_readme_installs():
    for unit in (WEB, WORKER):
        settings = unit_settings(unit)
        assert settings["EnvironmentFile"] == ["/etc/smtpdesk/smtpdesk.env"]
        assert settings["LoadCredential"] == ["secret_key:/etc/smtpdesk/secret_key",
                                              "vault.keys:/etc/smtpdesk/vault.keys"]
        assert settings["StateDirectory"] == ["smtpdesk"] and settings["ProtectSystem"] == ["strict"]
    assert WEB_ADDRESS in unit_settings(WEB)["ExecStart"][0]
    assert f"proxy_pass http://{WEB_ADDRESS};" in (DEPLOY / "nginx-smtpdesk.conf").read_text()
    for name in ("smtpdesk-web.service", "smtpdesk-worker.service", "smtpdesk-backup.service",
                 "smtpdesk-backup.timer", "nginx-smtpdesk.conf", "smtpdesk.env"):
        assert f"docs/deploy/{name}" in README, name


# --- nginx, where installed (make test does not install it) ------------------------------------------------------

def nginx_config(site: str, prefix: Path) -> str:
    """A whole nginx.conf around the site, everything nginx writes kept under prefix."""
    temporary = "\n".join(f"    {kind}_temp_path {prefix}/{kind};" for kind in ("client_body", "proxy", "fastcgi",
                                                                                   "uwsgi", "scgi"))
    return f"pid {prefix}/nginx.pid;\nevents {{}}\nhttp {{\n{temporary}\n    access_log off;\n{site}\n}}\n"


@pytest.fixture
def nginx() -> str:
    """nginx's path; the test is skipped before anything starts when it is not installed."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if found is None:
        pytest.skip("nginx is not installed")
    return found


def test_nginx_accepts_the_proxy_config_and_is_the_one_hop_smtpdesk_trusts(nginx, host, web, certificates, tmp_path):
    http, https = free_port(), free_port()
    site = host.local((DEPLOY / "nginx-smtpdesk.conf").read_text())
    site = (site.replace("/etc/ssl/smtpdesk/fullchain.pem", str(certificates.ca_signed.cert_path))
            .replace("/etc/ssl/smtpdesk/privkey.pem", str(certificates.ca_signed.key_path))
            .replace("smtpdesk.example.com", "localhost").replace("listen 80", f"listen 127.0.0.1:{http}")
            .replace("listen 443", f"listen 127.0.0.1:{https}"))
    site = "\n".join(line for line in site.splitlines() if "listen [::]" not in line)  # IPv6 may be missing here
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    (prefix / "nginx.conf").write_text(nginx_config(site, prefix))
    command = [nginx, "-p", f"{prefix}/", "-e", str(prefix / "error.log"), "-c", str(prefix / "nginx.conf")]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr

    process = subprocess.Popen([*command, "-g", "daemon off;"], stdin=subprocess.DEVNULL)
    try:
        wait_for_port(https)
        moved = requests.get(f"http://localhost:{http}/auth/login", allow_redirects=False, timeout=30)
        assert moved.status_code == 301 and moved.headers["Location"] == "https://localhost/auth/login"
        make_user("operator", username="rita")
        # A client's own X-Forwarded-* are replaced: the lock-out counts the address nginx saw.
        forged = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Host": "evil.example"}
        page = requests.get(f"https://localhost:{https}/auth/login", headers=forged, verify=certificates.ca_path,
                            timeout=30)
        assert page.status_code == 200 and "Secure" in page.headers["Set-Cookie"]
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
        # As a browser on the public port 443 sends it (nginx's $host has no port): Flask-WTF checks it over https.
        referer = {"Referer": "https://localhost/auth/login"}
        failed = requests.post(f"https://localhost:{https}/auth/login", headers={**forged, **referer},
                               cookies=page.cookies,
                               data={"csrf_token": token, "username": "rita", "password": "wrong"},
                               verify=certificates.ca_path, timeout=30)
        assert failed.status_code == 422
        assert AuditEntry.get(AuditEntry.action == "login_failed").remote_addr == "127.0.0.1"
        with pytest.raises(requests.exceptions.SSLError):  # another name: no handshake (ssl_reject_handshake)
            requests.get(f"https://127.0.0.1:{https}/auth/login", verify=False, timeout=30)
    finally:
        stop(process)
