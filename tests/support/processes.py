"""Running `smtpdesk` commands as real processes against a test's instance."""
import os
import subprocess
import sys
import time
from pathlib import Path

SMTPDESK = Path(sys.executable).with_name("smtpdesk")
# The console script imports the webapp the virtualenv was installed from; a git worktree sharing that virtualenv
# puts its own first with PYTHONPATH.
CHECKOUT = str(Path(__file__).resolve().parents[2])


def instance_env(app, **config) -> dict:
    """The environment of an `smtpdesk` process on the test's instance (database, keys), with config overrides."""
    env = dict(os.environ, SMTPDESK_INSTANCE_PATH=app.instance_path, SMTPDESK_DATABASE=app.config["DATABASE"],
               SMTPDESK_VAULT_KEYS=app.config["VAULT_KEYS"], SMTPDESK_SECRET_KEY="test-secret-key",
               PYTHONUNBUFFERED="1", PYTHONPATH=CHECKOUT)
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
