"""What a rate-limited account costs a claim, which holds SQLite's write lock (API posts and pages wait for it):
`make bench-claims`. Two figures, each against the same claim without the rows that make it, measured in the same
run on the same machine (median of ROUNDS claims; ratio 1.0: those rows cost nothing).

- Backlog: a Microsoft 365 account limited to 30 messages a minute gets a burst of BACKLOG notifications (distinct
  recipients) while other accounts keep sending; its rate for the minute is spent, so every claim looks past its
  backlog to the others' notifications.
- History: the same account has sent HISTORY notifications (one attempt each, an hour ago, kept by the retention
  period) and has 20 queued; each claim counts its attempts of the last minute for the rate."""
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from datetime import timedelta

from cryptography.fernet import Fernet

from webapp import create_app, db
from webapp.db import database
from webapp.models import SmtpAccount, utcnow
from webapp.outbox import queue
from webapp.outbox.settings import OutboxSettings

BACKLOG = int(os.environ.get("BENCH_BACKLOG", "100000"))
HISTORY = int(os.environ.get("BENCH_HISTORY", "100000"))
ROUNDS = 15
COLUMNS = ("account_id", "status", "to_addrs", "cc_addrs", "bcc_addrs", "subject", "body_text", "overrides_ignored",
           "message_id", "attempts", "next_attempt_at", "source", "created_by", "created_at", "updated_at")
NAMES = ", ".join(f'"{column}"' for column in COLUMNS)
INSERT = f'INSERT INTO "notification" ({NAMES}) VALUES ({", ".join("?" * len(COLUMNS))})'


def account(name: str, **fields) -> SmtpAccount:
    slug = name.lower()
    return SmtpAccount.create(name=name, sender=f"{name} <{slug}@exemplo.com.br>", reply_to=f"r.{slug}@exemplo.com.br",
                              return_path=f"b.{slug}@exemplo.com.br", confirmation_email=f"c.{slug}@exemplo.com.br",
                              host="127.0.0.1", **fields)


def queue_for(owner: SmtpAccount, count: int, label: str, status: str = "queued") -> None:
    now = str(utcnow())
    with database.atomic():
        db.execute_many(INSERT, [
            (owner.id, status, json.dumps([f"José Araújo {label} {n} <jose.araujo.{label}{n}@exemplo.com.br>"]),
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


@contextmanager
def instance(folder: str, name: str):
    """A fresh, migrated SQLite instance of its own, connected until the block ends."""
    app = create_app({"SECRET_KEY": "bench", "VAULT_KEYS": Fernet.generate_key().decode(),
                      "DATABASE": os.path.join(folder, f"claims-{name}.db")})
    with app.app_context():
        db.upgrade()
        with database.connection_context():
            yield


def past_backlog(folder: str, backlog: int) -> float:
    with instance(folder, f"backlog-{backlog}"):
        limited = account("Cobranca", is_default=True, rate_per_minute=30)
        others = [account(f"Atendimento{n}") for n in range(3)]
        queue_for(limited, backlog, "cobranca")
        settings = OutboxSettings(batch_size=50)
        while queue.claim("spent", settings):  # the limited account's rate for this minute is spent
            pass
        for other in others:
            queue_for(other, 20, other.name.lower())
        return median_claim_ms(settings)


def with_history(folder: str, history: int) -> float:
    with instance(folder, f"history-{history}"):
        limited = account("Cobranca", is_default=True, rate_per_minute=30)
        queue_for(limited, history, "historico", status="sent")
        with database.atomic():
            # As the worker records them: with the relay that took them (m0015).
            db.execute('INSERT INTO "delivery_attempt" ("notification_id", "started_at", "duration_ms", "ok", '
                       '"code", "transient", "worker", "relay_account_id") SELECT "id", ?, 120, 1, 250, 0, '
                       '\'bench\', "account_id" FROM "notification" WHERE "status" = \'sent\'',
                       (utcnow() - timedelta(hours=1),))
        queue_for(limited, 20, "cobranca")
        return median_claim_ms(OutboxSettings(batch_size=50))


def measured(backlog: int, history: int) -> list[tuple[str, float, float]]:
    """(what, with those rows, without them) for each figure, in ms."""
    # Every measured claim is released again, and the queue logs each release at INFO: hundreds of lines.
    logging.getLogger(queue.__name__).setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="smtpdesk-bench-claims-") as folder:
        return [(f"a claim past a rate-limited account's {backlog:,} queued notifications (its rate spent)",
                 past_backlog(folder, backlog), past_backlog(folder, 0)),
                (f"a claim of a rate-limited account that sent {history:,} notifications an hour ago",
                 with_history(folder, history), with_history(folder, 0))]


def figures() -> None:
    """The two figures as rows of `make bench`'s report (the "claims" family)."""
    from bench.run import NOTES, QUICK, ROWS, Row

    count = 10_000 if QUICK else BACKLOG
    for what, cost, baseline in measured(count, 10_000 if QUICK else HISTORY):
        ROWS.append(Row(f"Claims: {what}, median of {ROUNDS}", f"{cost:.1f} ms",
                        f"the same claim without those rows: {baseline:.1f} ms", f"{cost / baseline:.2f}", "", ""))
    NOTES.append("Claims (bench/claim_backlog.py): a claim holds SQLite's write lock, so API posts and pages wait for "
                 "it; the account is limited to 30 messages a minute (Microsoft 365's preset), three others have 20 "
                 "queued each; ratio 1.0: those rows cost the claim nothing.")


def main() -> None:
    for what, cost, baseline in measured(BACKLOG, HISTORY):
        print(f"{what}: {cost:.1f} ms (median of {ROUNDS}); without those rows: {baseline:.1f} ms; "
              f"ratio {cost / baseline:.2f}")


if __name__ == "__main__":
    sys.exit(main())
