"""Queueing a notification: its fields checked, then stored in the outbox before any network work.

Messages are English literals marked with N_() (extracted with `pybabel -k N_`), their placeholders filled in:
the API and the CLI answer in English.
"""
import base64
import hashlib
import json
import logging
import re
import threading
from contextlib import nullcontext
from email.utils import make_msgid

from peewee import IntegrityError

from webapp.db import database
from webapp.mail.addresses import CONTROL_CHARS, INVALID, AddressError, check_address
from webapp.mail.compose import Attachment, new_message_id, resolve_addressing
from webapp.mail.errors import N_
from webapp.models import Notification, SmtpAccount, utcnow
from webapp.outbox.queue import connection, retry_locked
from webapp.outbox.settings import (
    MAX_ATTACHMENT_BYTES,
    MAX_BODY_BYTES,
    MAX_CREATED_BY,
    MAX_IDEMPOTENCY_KEY,
    MAX_RECIPIENTS,
    MAX_SUBJECT,
)
from webapp.postgresql import is_postgresql

log = logging.getLogger(__name__)

TOO_MANY = N_("Send to at most %(max)d recipients (to, cc and bcc together).")
BAD_ATTACHMENT = N_("Give each attachment as (file name, MIME type, bytes).")
NOT_UNICODE = N_("This is not valid Unicode text: it holds a lone surrogate (half of a UTF-16 pair).")
NUL_IN_BODY = N_("NUL characters are not allowed in a message.")

# Half of a UTF-16 pair on its own: a JSON "\ud800" escape, or bytes that were not UTF-8 on a command line (Python
# decodes argv with surrogateescape). No encoding can store or send it.
LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")

# Enqueuing threads of a process take turns before asking SQLite for its write lock: SQLite's busy handler polls
# with growing sleeps, so writers contending for its lock mostly sleep long after it was released.
_WRITER_TURN = threading.Lock()


class NotificationError(ValueError):
    """The notification cannot be queued as given: field_errors maps a field (to, cc, bcc, subject, text, html,
    account, reply_to, return_path, confirmation_email, idempotency_key, attachments, source) to its English
    message."""

    def __init__(self, field_errors: dict):
        self.field_errors = field_errors
        super().__init__("invalid notification: " + ", ".join(sorted(field_errors)))


class NoDefaultAccount(LookupError):
    """No account was named and no enabled default SMTP account exists."""

    def __init__(self):
        super().__init__("no enabled default SMTP account")


class IdempotencyConflict(ValueError):
    """The idempotency key was used before for a different notification (existing_id)."""

    def __init__(self, existing_id: int):
        self.existing_id = existing_id
        super().__init__(f"idempotency key already used by notification {existing_id} with another payload")


def send_notification(*, to, subject: str, text: str, html: str | None = None, cc=(), bcc=(), account=None,
                      reply_to: str | None = None, return_path: str | None = None,
                      confirmation_email: str | None = None, idempotency_key: str | None = None,
                      attachments=(), source: str = "python", created_by: str = "") -> int:
    """Queue a notification and return its id; no network work happens here (a worker delivers it).

    to / cc / bcc: an address or a list of them ("Name <a@example.com>" allowed; bcc goes in the envelope only).
    account: an SmtpAccount, its id or its name; None means the enabled default account.
    reply_to / return_path / confirmation_email: per-message overrides, ignored (and recorded as such) when the
    account forces its settings. attachments: [(filename, mimetype, bytes)].
    idempotency_key: a repeated call with the same key and payload returns the first notification's id.
    Raises NotificationError (field_errors), NoDefaultAccount, IdempotencyConflict.
    """
    errors = {"account": NOT_UNICODE} if lone_surrogates(account) else {}
    to_list = _address_list("to", to, errors, required=True)
    cc_list = _address_list("cc", cc, errors)
    bcc_list = _address_list("bcc", bcc, errors)
    if "to" not in errors and "cc" not in errors and "bcc" not in errors and \
            len(to_list) + len(cc_list) + len(bcc_list) > MAX_RECIPIENTS:
        errors["to"] = TOO_MANY % {"max": MAX_RECIPIENTS}
    subject = _text_field("subject", subject, errors, required=True, single_line=True, limit=MAX_SUBJECT)
    text = _text_field("text", text, errors, required=True)
    html = _text_field("html", html, errors)
    if "text" not in errors and "html" not in errors and \
            len(text.encode("utf-8", "replace")) + len((html or "").encode("utf-8", "replace")) > MAX_BODY_BYTES:
        errors["text"] = N_("The message is too large (at most %(max)d MB).") % {"max": MAX_BODY_BYTES // 2 ** 20}
    overrides = {name: _optional_address(name, value, errors) for name, value in
                 (("reply_to", reply_to), ("return_path", return_path), ("confirmation_email", confirmation_email))}
    key = _text_field("idempotency_key", idempotency_key, errors, single_line=True, limit=MAX_IDEMPOTENCY_KEY)
    files = _attachments(attachments, errors)
    if source not in Notification.SOURCES:
        errors["source"] = N_("Unknown source.")
    created_by = str(created_by or "")[:MAX_CREATED_BY]
    if errors:
        raise NotificationError(errors)

    payload = {"to": to_list, "cc": cc_list, "bcc": bcc_list, "subject": subject, "text": text, "html": html,
               "account": _account_label(account), **overrides,
               "attachments": [[f.filename, f.mimetype, hashlib.sha256(f.data).hexdigest()] for f in files]}
    fingerprint = hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def earlier_id() -> int | None:
        """The notification queued before with this idempotency key, if any (another payload: a conflict)."""
        earlier = (Notification.select(Notification.id, Notification.request_fingerprint)
                   .where(Notification.idempotency_key == key).first()) if key else None
        if earlier is not None and earlier.request_fingerprint != fingerprint:
            raise IdempotencyConflict(earlier.id)
        return earlier.id if earlier is not None else None

    def enqueue() -> int:
        chosen = _resolve_account(account)
        rules = resolve_addressing(
            reply_to=chosen.reply_to, return_path=chosen.return_path, confirmation_email=chosen.confirmation_email,
            read_confirmation=chosen.read_confirmation, force_settings=chosen.force_settings,
            override_reply_to=overrides["reply_to"], override_return_path=overrides["return_path"],
            override_confirmation=overrides["confirmation_email"])
        now = utcnow()
        insert = Notification.insert(
            account=chosen, status="queued", to_addrs=_json(to_list), cc_addrs=_json(cc_list),
            bcc_addrs=_json(bcc_list), subject=subject, body_text=text, body_html=html,
            attachments=_json([{"filename": f.filename, "mimetype": f.mimetype,
                                "data": base64.b64encode(f.data).decode("ascii")} for f in files]) if files else None,
            overrides_ignored=rules.overrides_ignored, message_id=_message_id(chosen.sender),
            idempotency_key=key or None, request_fingerprint=fingerprint, next_attempt_at=now, source=source,
            created_by=created_by, created_at=now, updated_at=now, **overrides)
        # One statement, so no transaction of its own. Inside the caller's transaction this connection may already
        # hold SQLite's write lock: no turn-taking then, but a savepoint, since PostgreSQL refuses every later
        # statement of a transaction whose insert failed (earlier_id() below). Its server has no busy handler.
        if database.in_transaction():
            turn = database.atomic()
        else:
            turn = nullcontext() if is_postgresql(database) else _WRITER_TURN
        with turn:
            return insert.execute()

    with connection():
        try:
            notification_id = earlier_id() or retry_locked(enqueue)
        except IntegrityError as error:
            # The same idempotency key queued by a concurrent call just before this one (the column is unique), or
            # the account deleted between reading it and the insert (its foreign key).
            notification_id = earlier_id() if key else None
            if notification_id is None:
                if "FOREIGN KEY" in str(error).upper():
                    raise NotificationError({"account": N_("No SMTP account has this name or id.")}) from None
                raise
    log.info("notification %s queued (source %s)", notification_id, source)
    return notification_id


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def lone_surrogates(value) -> bool:
    """Whether value is a string holding a lone surrogate (see LONE_SURROGATE)."""
    return isinstance(value, str) and not value.isascii() and LONE_SURROGATE.search(value) is not None


def _address_list(name: str, value, errors: dict, required: bool = False) -> list[str]:
    if value is None:
        value = []
    elif isinstance(value, str):
        value = [value] if value.strip() else []
    else:
        value = list(value)
    if required and not value:
        errors[name] = N_("Give at least one recipient.")
        return []
    if len(value) > MAX_RECIPIENTS:
        errors[name] = TOO_MANY % {"max": MAX_RECIPIENTS}
        return []
    addresses = []
    for item in value:
        if not isinstance(item, str):
            errors[name] = INVALID
            return []
        if lone_surrogates(item):
            errors[name] = NOT_UNICODE
            return []
        try:
            addresses.append(check_address(item.strip()))
        except AddressError as error:
            errors[name] = str(error)
            return []
    return addresses


def _optional_address(name: str, value, errors: dict) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        errors[name] = INVALID
        return None
    if lone_surrogates(value):
        errors[name] = NOT_UNICODE
        return None
    try:
        return check_address(value.strip())
    except AddressError as error:
        errors[name] = str(error)
        return None


def _text_field(name: str, value, errors: dict, required: bool = False, single_line: bool = False,
                limit: int | None = None) -> str | None:
    if value is None or (isinstance(value, str) and required and not value.strip()):
        if required:
            errors[name] = N_("This field is required.")
        return None if value is None else value
    if not isinstance(value, str):
        errors[name] = N_("This must be text.")
        return None
    if lone_surrogates(value):
        errors[name] = NOT_UNICODE
        return None
    if single_line:
        value = value.strip()
        # A line break would start a new header.
        if CONTROL_CHARS.search(value):
            errors[name] = N_("Line breaks and control characters are not allowed here.")
            return None
    elif "\0" in value:
        # RFC 5322 allows no NUL in a message, and a relay would cut or refuse it after we accepted it.
        errors[name] = NUL_IN_BODY
        return None
    if limit is not None and len(value) > limit:
        errors[name] = N_("Use at most %(max)d characters.") % {"max": limit}
        return None
    return value


def _attachments(value, errors: dict) -> list[Attachment]:
    files, total = [], 0
    for item in value or ():
        try:
            filename, mimetype, data = item
        except (TypeError, ValueError):
            errors["attachments"] = BAD_ATTACHMENT
            return []
        maintype, slash, subtype = str(mimetype).partition("/")
        if not (isinstance(filename, str) and filename.strip() and isinstance(data, bytes) and slash and maintype
                and subtype and not CONTROL_CHARS.search(filename + mimetype)
                and not lone_surrogates(filename + mimetype)):
            errors["attachments"] = BAD_ATTACHMENT
            return []
        total += len(data)
        files.append(Attachment(filename.strip(), mimetype, data))
    if total > MAX_ATTACHMENT_BYTES:
        errors["attachments"] = N_("The attachments are too large (at most %(max)d MB).") % {
            "max": MAX_ATTACHMENT_BYTES // 2 ** 20}
        return []
    return files


def _account_label(account):
    """How the caller named the account, for the idempotency fingerprint (None: the default, whichever it is)."""
    if account is None:
        return None
    return account.id if isinstance(account, SmtpAccount) else account


def _resolve_account(account) -> SmtpAccount:
    if account is None:
        found = SmtpAccount.default()
        if found is None or not found.enabled:
            raise NoDefaultAccount()
        return found
    if isinstance(account, SmtpAccount):
        found = SmtpAccount.get_or_none(SmtpAccount.id == account.id)
    elif isinstance(account, int) and not isinstance(account, bool):
        found = SmtpAccount.by_id(account)
    elif isinstance(account, str) and "\0" not in account:  # no name holds one, and PostgreSQL's text cannot
        found = SmtpAccount.get_or_none(SmtpAccount.name == account.strip())
    else:
        found = None
    if found is None:
        raise NotificationError({"account": N_("No SMTP account has this name or id.")})
    if not found.enabled:
        raise NotificationError({"account": N_("This SMTP account is disabled.")})
    return found


def _message_id(sender: str) -> str:
    try:
        return new_message_id(sender)
    except ValueError:  # the account's sender is validated by its form; this is a last resort
        return make_msgid(domain="smtpdesk.invalid")
