"""Small factories for test data: make_account(**overrides) and friends."""
import itertools

from argon2 import PasswordHasher

from webapp.auth import passwords
from webapp.auth.passwords import hash_password
from webapp.models import Connector, Credential, SmtpAccount, User

# The suite signs in thousands of times, and argon2id at its production cost (about 90 ms a check) was most of that
# time. The same algorithm at its lowest cost checks the same behaviour; the app and the browser tests' servers keep
# the production cost.
passwords.hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
passwords._DUMMY_HASH = passwords.hasher.hash("smtpdesk-no-such-user")

PASSWORD = "correct horse battery staple"
_PASSWORD_HASH = hash_password(PASSWORD)
_counter = itertools.count(1)


def make_user(role="admin", **overrides) -> User:
    fields = dict(username=f"{role}{next(_counter)}", password_hash=_PASSWORD_HASH, role=role)
    fields.update(overrides)
    return User.create(**fields)


def make_credential(secret="s3cr3t-Pa55word!", **overrides) -> Credential:
    fields = dict(name=f"cred-{next(_counter)}", username="mailer@example.com")
    fields.update(overrides)
    credential = Credential(**fields)
    credential.set_secret(secret)
    credential.save()
    return credential


def make_connector(password=None, **overrides) -> Connector:
    fields = dict(name=f"proxy-{next(_counter)}", kind="socks5", host="127.0.0.1", port=1080)
    fields.update(overrides)
    connector = Connector(**fields)
    connector.set_secret(password)
    connector.save()
    return connector


def make_account(**overrides) -> SmtpAccount:
    n = next(_counter)
    fields = dict(
        name=f"account-{n}",
        sender=f"Ops {n} <ops{n}@example.com>",
        reply_to=f"reply{n}@example.com",
        return_path=f"bounces{n}@example.com",
        confirmation_email=f"receipts{n}@example.com",
        host="smtp.example.com",
    )
    fields.update(overrides)
    return SmtpAccount.create(**fields)


def account_form(**overrides) -> dict:
    """The POST body of a valid account form; override any field."""
    n = next(_counter)
    data = {
        "name": f"form-account-{n}",
        "enabled": "yes",
        "sender": "Ops <ops@example.com>",
        "reply_to": "reply@example.com",
        "return_path": "bounces@example.com",
        "confirmation_email": "receipts@example.com",
        "is_default": "no",
        "read_confirmation": "no",
        "force_settings": "no",
        "footer_enabled": "no",
        "host": "smtp.example.com",
        "port": "",
        "secure": "yes",
        "secure_type": "tls",
        "use_auth": "no",
        "credential": "",
        "ignore_cert_errors": "no",
        "use_connector": "no",
        "connector": "",
    }
    data.update(overrides)
    return data


def edit_form(account: SmtpAccount, **overrides) -> dict:
    """The POST body of the edit form of a plain (no TLS, no login, no connector) account, unchanged; override any
    field."""
    def yes_no(value):
        return "yes" if value else "no"

    fields = dict(name=account.name, enabled=yes_no(account.enabled), sender=account.sender,
                  reply_to=account.reply_to, return_path=account.return_path,
                  confirmation_email=account.confirmation_email, is_default=yes_no(account.is_default),
                  host=account.host, port=str(account.port or ""), secure="no",
                  max_connections="" if account.max_connections is None else str(account.max_connections),
                  rate_per_minute="" if account.rate_per_minute is None else str(account.rate_per_minute))
    return account_form(**{**fields, **overrides})


def credential_form(**overrides) -> dict:
    """The POST body of a valid credential form; override any field."""
    data = {
        "name": f"form-credential-{next(_counter)}",
        "username": "mailer@example.com",
        "secret": "form-Secret-pass",
        "description": "",
        "allowed_hosts": "",
    }
    data.update(overrides)
    return data


def connector_form(**overrides) -> dict:
    """The POST body of a valid connector form; override any field."""
    data = {
        "name": f"form-proxy-{next(_counter)}",
        "kind": "socks5",
        "host": "proxy.example.com",
        "port": "1080",
        "username": "",
        "password": "",
        "remove_password": "no",
        "remote_dns": "yes",
        "is_default": "no",
    }
    data.update(overrides)
    return data


def make_client(app, role="admin", language="en", **user_overrides):
    """A test client signed in as a new user of this role (client.user), browsing in this language."""
    client = app.test_client()
    client.use_language(language)
    client.user = client.login(make_user(role, **user_overrides))
    return client


def make_notification(status="queued", account=None, **overrides):
    """A notification queued through the outbox (send_notification), then put in `status` with any column
    overridden (attempts, last_code, last_reply, sent_at, created_at, ...)."""
    from webapp.models import Notification
    from webapp.outbox import send_notification

    fields = dict(to=f"person{next(_counter)}@example.com", subject="Your invoice", text="It is ready.")
    for name in ("to", "cc", "bcc", "subject", "text", "html", "reply_to", "return_path", "confirmation_email",
                 "idempotency_key", "source", "created_by"):
        if name in overrides:
            fields[name] = overrides.pop(name)
    notification_id = send_notification(account=account or SmtpAccount.default() or make_account(is_default=True),
                                        **fields)
    Notification.update(status=status, **overrides).where(Notification.id == notification_id).execute()
    return Notification.get_by_id(notification_id)


class QueryCounter:
    """Counts the SQL statements run inside `with QueryCounter() as queries:` (queries.count), e.g. to catch N+1."""

    def __enter__(self):
        from webapp.db import database

        self.count = 0
        self.engine = database.obj  # the proxy takes no attributes: the SQLite or PostgreSQL database behind it
        original = self.engine.execute_sql

        def counting(*args, **kwargs):
            self.count += 1
            return original(*args, **kwargs)

        self.engine.execute_sql = counting
        return self

    def __exit__(self, *exc):
        del self.engine.execute_sql  # the instance attribute goes; the class's method is back
        return False


def summary_of(account, language="en") -> str:
    """The account's last test summary as the report says it in this language."""
    from flask import current_app
    from flask_babel import force_locale

    from webapp.accounts.testing import summary_text
    with current_app.test_request_context(), force_locale(language):
        return summary_text(SmtpAccount.get_by_id(account.id).last_test_summary)
