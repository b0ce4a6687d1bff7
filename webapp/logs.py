"""The one logging setup: plain lines or JSON lines on stderr, with every record scrubbed of secrets.

Scrubbed are AUTH payloads (`AUTH PLAIN <base64>`, `AUTH LOGIN <base64>`, the base64 lines answering a 334) and every
secret this process has revealed (EncryptedSecretMixin.reveal_secret() remembers it here), clear or in base64 —
also inside a longer base64 blob such as AUTH PLAIN's "\\0login\\0secret".
"""
import base64
import json
import logging
import os
import re
import sys
import threading
import traceback
from collections import OrderedDict
from datetime import datetime, timezone

MASK = "********"
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MAX_REMEMBERED = 1024    # secrets kept in memory (the most recently revealed); bounded whatever the uptime
MIN_SECRET_LENGTH = 4    # shorter values would mask ordinary words in every line

_MECHANISMS = r"(?:PLAIN|LOGIN|XOAUTH2|OAUTHBEARER|CRAM-MD5)"
# The payload after the mechanism; not a further mechanism name (an EHLO reply lists them: "250-AUTH LOGIN PLAIN").
_AUTH_PAYLOAD = re.compile(rf"(\bAUTH\s+{_MECHANISMS}\s+)(?!{_MECHANISMS}\b)[^\s'\"\\]+", re.I)
# A client line answering a 334 challenge: "C: <b64>" or smtplib's "send: '<b64>\r\n'" (an SMTP command has a verb
# and spaces, so a lone base64-looking word there is an AUTH continuation) ...
_CLIENT_BASE64 = re.compile(r"(\b(?:C:|send:)\s*b?['\"]?)([A-Za-z0-9+/]{4,}={0,2})(?=\\r|\s*$|['\"])", re.M)
# ... or, in a text that holds a 334 challenge, a line holding only base64. Spaces and tabs only around it: \s would
# run across line ends, and from every line start of a run of blank lines (quadratic in the run's length).
_LINE_BASE64 = re.compile(r"(?m)^([ \t]*)([A-Za-z0-9+/]{4,}={0,2})(?=[ \t\r]*$)")

_lock = threading.Lock()
_secrets: OrderedDict[str, tuple[str, ...]] = OrderedDict()
_forms: tuple[str, ...] = ()  # every remembered secret's clear and base64 forms, longest first


def _base64_forms(secret: str) -> set[str]:
    """The secret's base64 as it appears alone or at any byte offset inside a longer base64 blob."""
    raw = secret.encode()
    forms = {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode(),
             base64.b64encode(raw).decode().rstrip("=")}
    for skip in range(3):
        # From byte `skip` on, whole 3-byte groups encode to the same 4 characters whatever precedes them.
        whole = (len(raw) - skip) // 3 * 3
        if whole >= 3 and whole * 4 // 3 >= MIN_SECRET_LENGTH + 2:
            forms.add(base64.b64encode(raw[skip:skip + whole]).decode())
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


def remember_secret(value: str | None) -> None:
    """Mask this secret (and its base64) in every later log line of this process."""
    global _forms
    if not value or len(value) < MIN_SECRET_LENGTH:
        return
    with _lock:
        if value in _secrets:
            _secrets.move_to_end(value)
            return
        _secrets[value] = (value, *_base64_forms(value))
        while len(_secrets) > MAX_REMEMBERED:
            _secrets.popitem(last=False)
        _forms = tuple(sorted({form for group in _secrets.values() for form in group}, key=len, reverse=True))


def forget_secrets() -> None:
    """Clear the remembered secrets (tests)."""
    global _forms
    with _lock:
        _secrets.clear()
        _forms = ()


def scrub(text: str) -> str:
    """text with AUTH payloads and remembered secrets replaced by ********."""
    if not text:
        return text
    for form in _forms:  # plain substring tests: fast for the few dozen secrets an installation holds
        if form in text:
            text = text.replace(form, MASK)
    text = _AUTH_PAYLOAD.sub(lambda m: m.group(1) + MASK, text)
    text = _CLIENT_BASE64.sub(_mask_encoded, text)
    if "334" in text:
        text = _LINE_BASE64.sub(_mask_encoded, text)
    return text


def _mask_encoded(match: re.Match) -> str:
    token = match.group(2)
    # "QUIT", "STARTTLS": upper-case words are commands; base64 of a secret has lower case, digits or + / =.
    if token.isalpha() and token.isupper():
        return match.group(0)
    return match.group(1) + MASK


def scrub_record(record: logging.LogRecord) -> logging.LogRecord:
    """Freeze the record's message (and traceback) as scrubbed text; idempotent."""
    if getattr(record, "_scrubbed", False):
        return record
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: let the handler report it as logging does
        return record
    clean = scrub(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
    if record.exc_text:
        record.exc_text = scrub(record.exc_text)
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)
    record._scrubbed = True
    return record


class ScrubSecrets(logging.Filter):
    """A handler filter: secrets and AUTH payloads never reach the output."""

    def filter(self, record):
        scrub_record(record)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message and, when there is one, the exception."""

    def format(self, record):
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "thread": record.threadName,
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (pytest and daemons swap it)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def json_wanted(app) -> bool:
    value = app.config.get("LOG_JSON", os.environ.get("SMTPDESK_LOG_JSON", ""))
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _scrubbing_factory(previous):
    def make_record(*args, **kwargs):
        return scrub_record(previous(*args, **kwargs))

    make_record._smtpdesk_scrubbing = True
    return make_record


def configure_logging(app) -> logging.Handler:
    """Install the smtpdesk handler on the root logger (once per process; the format follows this app)."""
    from flask.logging import default_handler

    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, StderrHandler)), None)
    if handler is None:
        handler = StderrHandler()
        handler.addFilter(ScrubSecrets())
        root.addHandler(handler)
        if root.level in (logging.WARNING, logging.NOTSET) and not app.testing:
            root.setLevel(logging.INFO)  # the worker's per-notification lines (tests keep Python's WARNING)
    handler.setFormatter(JsonFormatter() if json_wanted(app) else logging.Formatter(PLAIN_FORMAT))
    # Records are scrubbed when made too, so every other handler (pytest's, a library's) sees them masked.
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "_smtpdesk_scrubbing", False):
        logging.setLogRecordFactory(_scrubbing_factory(factory))
    app.logger.removeHandler(default_handler)  # app.logger propagates to ours: one line, not two
    return handler
