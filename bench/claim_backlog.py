"""A claim's cost when the oldest due notifications belong to an account at its rate limit (`make bench-claims`).

What users do: a Microsoft 365 account limited to 30 messages a minute gets a burst of BACKLOG notifications (distinct
recipients) while other accounts keep sending. Every claim must then look past the limited account's backlog to the
others' notifications, holding SQLite's write lock (API posts and pages wait for it). The baseline, measured in the
same run on the same machine: the same claim with the other accounts' notifications only. Prints the median of
ROUNDS claims of each and their ratio (1.0: the backlog costs nothing)."""
import json
import os
import statistics
import sys
import tempfile
import time
import uuid

from cryptography.fernet import Fernet

from webapp import create_app, db
from webapp.db import database
from webapp.models import SmtpAccount, utcnow
from webapp.outbox import queue
from webapp.outbox.settings import OutboxSettings

BACKLOG = int(os.environ.get("BENCH_BACKLOG", "100000"))
ROUNDS = 15
COLUMNS = ("account_id", "status", "to_addrs", "cc_addrs", "bcc_addrs", "subject", "body_text", "overrides_ignored",
           "message_id", "attempts", "next_attempt_at", "source", "created_by", "created_at", "updated_at")
INSERT = (f'INSERT INTO "notification" ({", ".join(f"{c!r}".replace(chr(39), chr(34)) for c in COLUMNS)}) '
          f'VALUES ({", ".join("?" * len(COLUMNS))})')


def account(name: str, **fields) -> SmtpAccount:
    slug = name.lower()
    return SmtpAccount.create(name=name, sender=f"{name} <{slug}@exemplo.com.br>", reply_to=f"r.{slug}@exemplo.com.br",
                              return_path=f"b.{slug}@exemplo.com.br", confirmation_email=f"c.{slug}@exemplo.com.br",
                              host="127.0.0.1", **fields)


def queue_for(owner: SmtpAccount, count: int, label: str) -> None:
    now = str(utcnow())
    with database.atomic():
        db.execute_many(INSERT, [
            (owner.id, "queued", json.dumps([f"José Araújo {label} {n} <jose.araujo.{label}{n}@exemplo.com.br>"]),
             "[]", "[]", f"Fatura nº {n} — {label}", "", False, f"<{uuid.uuid4().hex}@exemplo.com.br>", 0, now,
             "python", "", now, now) for n in range(count)])


def median_claim_ms(settings: OutboxSettings) -> float:
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        claimed = queue.claim("bench", settings)
        times.append(time.perf_counter() - started)
        queue.release("bench", claimed)
    return statistics.median(times) * 1000


def measure(folder: str, backlog: int) -> float:
    app = create_app({"SECRET_KEY": "bench", "VAULT_KEYS": Fernet.generate_key().decode(),
                      "DATABASE": os.path.join(folder, f"claims-{backlog}.db")})
    with app.app_context():
        db.upgrade()
        with database.connection_context():
            limited = account("Cobranca", is_default=True, rate_per_minute=30)
            others = [account(f"Atendimento{n}") for n in range(3)]
            queue_for(limited, backlog, "cobranca")
            settings = OutboxSettings(batch_size=50)
            while queue.claim("spent", settings):  # the limited account's rate for this minute is spent
                pass
            for other in others:
                queue_for(other, 20, other.name.lower())
            return median_claim_ms(settings)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="smtpdesk-bench-claims-") as folder:
        baseline = measure(folder, 0)
        backlog = measure(folder, BACKLOG)
    print(f"claim past a rate-limited account's {BACKLOG:,} queued notifications: {backlog:.1f} ms (median of "
          f"{ROUNDS}); without that backlog: {baseline:.1f} ms; ratio {backlog / baseline:.2f}")


if __name__ == "__main__":
    sys.exit(main())
