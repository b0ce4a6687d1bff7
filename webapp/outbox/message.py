"""A notification as the message its account sends, and an attempt's result as facts for the delivery log, put in
words in the reader's language when shown."""
import base64
import json

from webapp.mail.compose import (
    Attachment,
    compose_notification,
    envelope_address,
    needs_smtputf8,
    notification_bytes,
    resolve_addressing,
)
from webapp.mail.errors import N_, reply_text
from webapp.mail.transport import SendResult
from webapp.models import Notification, Setting, SmtpAccount
from webapp.outbox.settings import FOOTER_SETTING

REFUSED = N_("refused: %(recipients)s")
# An attempt through an account's backup (webapp.outbox.failover); reason: the primary's relay failure in words.
SENT_THROUGH_BACKUP = N_("sent through backup %(backup)s after %(primary)s failed: %(reason)s")


def footer_for(account: SmtpAccount) -> str | None:
    """The system footer when the account appends it (read once per group of messages by the worker)."""
    return Setting.get_value(FOOTER_SETTING, "") if account.footer_enabled else None


def build_message(notification: Notification, account: SmtpAccount, footer: str | None = None):
    """(EmailMessage, envelope sender, envelope recipients) for a notification by its account's current rules
    (footer: footer_for(account), read here when not given). Raises ValueError for an address that cannot be used."""
    fields, envelope_from, recipients = _message_fields(notification, account, footer)
    return compose_notification(**fields), envelope_from, recipients


def build_wire(notification: Notification, account: SmtpAccount, footer: str | None = None):
    """build_message() as the bytes that go after DATA (notification_bytes): what the worker sends. UTF-8 headers
    (RFC 6532) when an address of the envelope or of From, Reply-To or Disposition-Notification-To has a local part
    beyond ASCII: the transport then sends it with SMTPUTF8, or refuses it where the server does not offer that."""
    fields, envelope_from, recipients = _message_fields(notification, account, footer)
    headers_only = [envelope_address(fields[name]) for name in ("sender", "reply_to", "confirmation_email")
                    if fields[name]]
    data = notification_bytes(smtputf8=needs_smtputf8(envelope_from, recipients + headers_only), **fields)
    return data, envelope_from, recipients


def _message_fields(notification: Notification, account: SmtpAccount, footer: str | None):
    rules = resolve_addressing(
        reply_to=account.reply_to, return_path=account.return_path, confirmation_email=account.confirmation_email,
        read_confirmation=account.read_confirmation, force_settings=account.force_settings,
        override_reply_to=notification.reply_to, override_return_path=notification.return_path,
        override_confirmation=notification.confirmation_email)
    if footer is None:
        footer = footer_for(account)
    attachments = [Attachment(a["filename"], a["mimetype"], base64.b64decode(a["data"]))
                   for a in json.loads(notification.attachments or "[]")]
    fields = dict(
        sender=account.sender, to=notification.to_list, cc=notification.cc_list, subject=notification.subject,
        text=notification.body_text, html=notification.body_html, message_id=notification.message_id,
        reply_to=rules.reply_to, confirmation_email=rules.confirmation_email, footer=footer,
        date=notification.created_at, attachments=attachments)
    envelope_from = envelope_address(rules.return_path or account.sender)
    recipients = list(dict.fromkeys(envelope_address(a) for a in
                                    notification.to_list + notification.cc_list + notification.bcc_list))
    return fields, envelope_from, recipients


class Composer:
    """Builds each message of a group once: the next one when its envelope goes out with the current one's final
    dot (ready()), then sent in its turn (message_for()). Reads only the notification and account objects it is
    given; no database work. (Composing on another thread while the sender waited on the network only fought the
    sending thread for the GIL once a message took one round trip.)"""

    def __init__(self, account: SmtpAccount, footer: str):
        self.account, self.footer = account, footer
        self.made: dict[int, tuple] = {}

    def message_for(self, notification: Notification):
        """build_wire(notification), its ValueError included."""
        made = self.made.pop(notification.id, None)
        return made if made is not None else build_wire(notification, self.account, self.footer)

    def ready(self, notification: Notification):
        """build_wire(notification), kept for its turn; None if it cannot be composed (its turn explains why)."""
        if notification.id not in self.made:
            try:
                self.made[notification.id] = build_wire(notification, self.account, self.footer)
            except ValueError:
                return None
        return self.made[notification.id]


def reply_facts(result: SendResult) -> dict:
    """What the delivery log keeps of an attempt: the outcome's facts (SendResult.facts) and the recipients refused
    among accepted ones, so that reply_words() says them in each reader's language."""
    facts = result.facts()
    if result.refused:
        facts["refused"] = [[rcpt, code, reply_text(reply) or ""] for rcpt, (code, reply) in result.refused.items()]
    return facts


def stored_facts(stored: str | None) -> dict | None:
    """Facts kept as JSON (a delivery's reply, a test's summary), or None for text stored as a sentence before facts
    were kept."""
    try:
        facts = json.loads(stored or "")
    except ValueError:
        return None
    return facts if isinstance(facts, dict) else None


def reply_line(facts: dict) -> str:
    """The server's final reply as it said it ("250 2.0.0 Ok"), or "" when it said nothing."""
    return " ".join(str(part) for part in (facts.get("code"), facts.get("reply")) if part not in (None, ""))


def _as_stored(message: str, params: dict) -> str:
    try:
        return message % params
    except (KeyError, ValueError, TypeError):
        return message


def reply_words(stored: str | None, explain=_as_stored) -> str:
    """A delivery's stored reply in words: the server's reply, our explanation of a failure, the recipients refused,
    why retries stopped, and the backup that carried it and why. explain(message, params) says one of our messages
    in the reader's language (English by default: the log and the API); a reply stored as a sentence, before facts
    were kept, stays as it is."""
    facts = stored_facts(stored)
    if facts is None:
        return stored or ""
    text = _words(facts, explain)
    failover = facts.get("failover")
    if isinstance(failover, dict):
        reason = _words(failover.get("reason") or {}, explain)
        text += " (" + explain(SENT_THROUGH_BACKUP, {"backup": failover.get("backup", ""),
                                                     "primary": failover.get("primary", ""), "reason": reason}) + ")"
    return text.strip()


def _words(facts: dict, explain) -> str:
    text = reply_line(facts)
    if facts.get("refused"):
        refused = "; ".join(" ".join(str(part) for part in (f"{rcpt}:", code, reply) if part not in (None, ""))
                            for rcpt, code, reply in facts["refused"])
        text += " (" + explain(REFUSED, {"recipients": refused}) + ")"
    if facts.get("message"):
        explanation = explain(facts["message"], facts.get("params") or {})
        text = f"{text} — {explanation}" if text else explanation
    gave_up = facts.get("gave_up")
    if gave_up:
        text += " (" + explain(gave_up["message"], gave_up.get("params") or {}) + ")"
    return text.strip()
