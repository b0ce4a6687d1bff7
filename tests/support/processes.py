"""Running `smtpdesk` commands as real processes against a test's instance, and other servers the tests start."""
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.support.net import wait_for_port

SMTPDESK = Path(sys.executable).with_name("smtpdesk")
# The console script imports the webapp the virtualenv was installed from; a git worktree sharing that virtualenv
# puts its own first with PYTHONPATH.
CHECKOUT = str(Path(__file__).resolve().parents[2])


def instance_env(app, **config) -> dict:
    """The environment of an `smtpdesk` process on the test's instance (database, keys), with config overrides."""
    env = dict(os.environ, SMTPDESK_INSTANCE_PATH=app.instance_path, SMTPDESK_DATABASE=app.config["DATABASE"],
               SMTPDESK_VAULT_KEYS=app.config["VAULT_KEYS"], SMTPDESK_SECRET_KEY="test-secret-key",
               PYTHONUNBUFFERED="1", PYTHONPATH=CHECKOUT)
    if app.config.get("DATABASE_URL"):
        env["SMTPDESK_DATABASE_URL"] = app.config["DATABASE_URL"]
    env.update({f"SMTPDESK_{key}": str(value) for key, value in config.items()})
    return env


def run(args, env, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run an `smtpdesk` command to its end; its exit status, stdout and stderr as text."""
    return subprocess.run([str(SMTPDESK), *args], env={**env, "PYTHONPATH": CHECKOUT}, capture_output=True,
                          text=True, timeout=timeout)


def start(args, env, tmp_path, name) -> subprocess.Popen:
    with open(tmp_path / f"{name}.log", "w") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([str(SMTPDESK), *args], env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def serve(args: list[str], port: int, log: Path, host: str = "127.0.0.1") -> subprocess.Popen:
    """Start a server process logging to `log` and wait until it listens on host:port; RuntimeError with its log if
    it does not."""
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for_port(port, host=host, timeout=10)
    except TimeoutError:
        stop(process)
        raise RuntimeError(f"{args[0]} did not start: {log.read_text(errors='replace')}") from None
    return process


def stop(process: subprocess.Popen, timeout: float = 5) -> None:
    """Terminate a process and wait for it; kill it if it takes more than timeout seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
