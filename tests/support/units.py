"""docs/deploy/ installed into a test's folder: the systemd units read as systemd reads them (continuation lines,
specifiers, $$, LoadCredential=, EnvironmentFile=, Environment=), with the paths of a real host replaced by the test's
own (its virtualenv, this checkout, folders under tmp_path) and the example database URL by the test's database."""
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.net import free_port
from tests.support.processes import CHECKOUT

DEPLOY = Path(CHECKOUT) / "docs" / "deploy"
WEB_ADDRESS = "127.0.0.1:8000"  # where the units and the nginx config put gunicorn


def unit_settings(name: str) -> dict[str, list[str]]:
    """Every setting of a unit file, its values in order (LoadCredential= and others come several times)."""
    text = (DEPLOY / name).read_text().replace("\\\n", " ")
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and line[0] not in "#;[":
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


@dataclass
class Installation:
    """One host's installation, under root: /etc/smtpdesk, /var/lib/smtpdesk and the backups folder are folders
    there, /opt/smtpdesk is this checkout with the test's virtualenv, and gunicorn listens on port."""

    root: Path
    database_url: str
    port: int

    @classmethod
    def make(cls, root: Path, database_url: str, secret_key: str, vault_keys: str) -> "Installation":
        installation = cls(root, database_url, free_port())
        for folder in ("etc", "var/lib/smtpdesk", "var/lib/smtpdesk-backups", "credentials"):
            (root / folder).mkdir(parents=True)
        for name, value in (("secret_key", secret_key), ("vault.keys", vault_keys)):
            (root / "etc" / name).write_text(value + "\n")
            (root / "etc" / name).chmod(0o600)
        example = (DEPLOY / "smtpdesk.env").read_text()
        url = re.sub(r"(?m)^SMTPDESK_DATABASE_URL=.*$", f"SMTPDESK_DATABASE_URL='{database_url}'", example)
        (root / "etc" / "smtpdesk.env").write_text(installation.local(url))
        return installation

    @property
    def instance(self) -> Path:
        return self.root / "var/lib/smtpdesk"

    @property
    def backups(self) -> Path:
        return self.root / "var/lib/smtpdesk-backups"

    def local(self, text: str) -> str:
        """text with a host's paths and gunicorn's address made this installation's (in one pass)."""
        here = {"/opt/smtpdesk/.venv/bin/": f"{Path(sys.executable).parent}/", "/opt/smtpdesk": CHECKOUT,
                "/etc/smtpdesk/": f"{self.root}/etc/", "/var/lib/smtpdesk-backups": str(self.backups),
                "/var/lib/smtpdesk": str(self.instance), WEB_ADDRESS: f"127.0.0.1:{self.port}"}
        return re.sub("|".join(map(re.escape, here)), lambda match: here[match.group(0)], text)

    def expand(self, unit: str, value: str) -> str:
        """A setting's value as systemd hands it on: specifiers (%d, %%) and $$ replaced, paths made local."""
        credentials = self.root / "credentials" / unit

        def specifier(match):
            return {"d": str(credentials), "%": "%"}[match.group(1)]  # another specifier: teach this test it

        return self.local(re.sub(r"%(.)", specifier, value).replace("$$", "$"))

    def environment(self, unit: str) -> dict:
        """The environment systemd gives the unit's commands: EnvironmentFile=, then Environment=, and the unit's
        credentials (LoadCredential=) copied to its own folder, owner-only, as systemd does."""
        settings = unit_settings(unit)
        credentials = self.root / "credentials" / unit
        credentials.mkdir(exist_ok=True)
        for credential in settings.get("LoadCredential", []):
            name, _, source = credential.partition(":")
            shutil.copyfile(self.local(source), credentials / name)
            (credentials / name).chmod(0o400)
        env = {name: value for name, value in os.environ.items() if not name.startswith("SMTPDESK_")}
        env.update(PYTHONPATH=CHECKOUT, PYTHONUNBUFFERED="1")
        for path in settings.get("EnvironmentFile", []):
            for line in Path(self.local(path)).read_text().splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    [assignment] = shlex.split(line)
                    name, _, value = assignment.partition("=")
                    env[name] = value
        for line in settings.get("Environment", []):
            for assignment in shlex.split(self.expand(unit, line)):
                name, _, value = assignment.partition("=")
                env[name] = value
        return env

    def commands(self, unit: str, setting: str) -> list[list[str]]:
        """The argument lists of one of the unit's Exec*= settings."""
        return [shlex.split(self.expand(unit, line)) for line in unit_settings(unit).get(setting, [])]

    def run(self, unit: str, setting: str, timeout: float = 120) -> list[subprocess.CompletedProcess]:
        """Run each command of one of the unit's Exec*= settings to its end, as the unit would."""
        env, cwd = self.environment(unit), self.working_directory(unit)
        return [subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
                for argv in self.commands(unit, setting)]

    def start(self, unit: str, log: Path, notify_socket: str | None = None) -> subprocess.Popen:
        """Start the unit's ExecStart= (notify_socket: where a Type=notify service says it is ready)."""
        [argv] = self.commands(unit, "ExecStart")
        env = self.environment(unit)
        if notify_socket:
            env["NOTIFY_SOCKET"] = notify_socket
        with open(log, "wb") as out:
            return subprocess.Popen(argv, env=env, cwd=self.working_directory(unit), stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def working_directory(self, unit: str) -> str | None:
        found = unit_settings(unit).get("WorkingDirectory")
        return self.expand(unit, found[-1]) if found else None


def stop_as_systemd(process: subprocess.Popen, unit: str) -> int:
    """SIGTERM (KillSignal='s default), then the unit's TimeoutStopSec= to exit; its exit status."""
    seconds = float(unit_settings(unit)["TimeoutStopSec"][-1])
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"{unit} did not stop within TimeoutStopSec={seconds:g}") from None


def notify_socket(path: Path) -> socket.socket:
    """A socket receiving sd_notify() datagrams, as systemd's for a Type=notify service."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(60)
    return listener
