"""Mail delivery as plain Python (no Flask): transport, connectors, message composition, error classification."""
from webapp.mail.compose import compose_test_message
from webapp.mail.connectors import Hop, open_connection
from webapp.mail.errors import N_, MailError, Step
from webapp.mail.transport import SendResult, SmtpSession, SmtpSettings, send_message

__all__ = [
    "N_", "Step", "MailError", "Hop", "open_connection", "SmtpSettings", "SendResult", "SmtpSession",
    "send_message", "compose_test_message",
]

# The outbox uses the database models, which import this package: loaded on first use (PEP 562), so
# `from webapp.mail import send_notification` works without an import cycle and the transport stays model-free.
OUTBOX_NAMES = ("send_notification", "NotificationError", "NoDefaultAccount", "IdempotencyConflict", "Worker",
                "OutboxSettings")


def __getattr__(name):
    if name in OUTBOX_NAMES:
        from webapp.mail import outbox

        return getattr(outbox, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
