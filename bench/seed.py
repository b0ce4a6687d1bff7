"""Fill a fresh instance for the page benchmarks (run in its own process): `python -m bench.seed N_ACCOUNTS N_NOTES`.

Prints JSON: the admin's username and password and an API token. Notifications are bulk-inserted with one
executemany in one transaction (status "sent" mostly, recipients user<i % 5000>@example.com).
"""
import json
import sys
import uuid
from datetime import timedelta

from webapp import create_app, db
from webapp.auth.passwords import hash_password
from webapp.models import ApiToken, SmtpAccount, User, utcnow

PASSWORD = "bench-password-123"
STATUSES = ("sent",) * 8 + ("failed", "retrying")


def main() -> None:
    """Create the admin, the accounts (the first one the default) and the notifications."""
    accounts, notifications, sink_port = (int(arg) for arg in sys.argv[1:4])
    app = create_app()
    with app.app_context():
        db.upgrade()
        with db.database.connection_context(), db.database.atomic():
            User.create(username="bench", password_hash=hash_password(PASSWORD), role="admin")
            _, token = ApiToken.issue("bench")
            ids = [SmtpAccount.create(name=f"account-{n:03d}", sender=f"Ops {n} <ops{n}@example.com>",
                                      reply_to=f"reply{n}@example.com", return_path=f"bounces{n}@example.com",
                                      confirmation_email=f"receipts{n}@example.com",
                                      host="127.0.0.1", port=sink_port, is_default=(n == 0)).id
                   for n in range(accounts)]
        with db.database.connection_context(), db.database.atomic():
            now = utcnow()
            rows = ((ids[i % len(ids)], STATUSES[i % len(STATUSES)], json.dumps([f"user{i % 5000}@example.com"]),
                     f"Report {i}", "Hello " * 170, f"<{uuid.uuid4().hex}@bench.example>",
                     str(now - timedelta(seconds=notifications - i)), str(now)) for i in range(notifications))
            db.database.connection().executemany(
                'INSERT INTO "notification" ("account_id", "status", "to_addrs", "cc_addrs", "bcc_addrs", '
                '"subject", "body_text", "overrides_ignored", "message_id", "attempts", "next_attempt_at", '
                '"source", "created_by", "created_at", "updated_at", "sent_at") '
                'VALUES (?, ?, ?, \'[]\', \'[]\', ?, ?, 0, ?, 1, ?, \'python\', \'bench\', ?, ?, ?)',
                ((a, s, to, subj, body, mid, created, created, updated, updated if s == "sent" else None)
                 for a, s, to, subj, body, mid, created, updated in rows))
    print(json.dumps({"username": "bench", "password": PASSWORD, "token": token}))


if __name__ == "__main__":
    main()
