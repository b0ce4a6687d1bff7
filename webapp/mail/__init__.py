"""Mail delivery as plain Python (no Flask): transport, connectors, message composition, error classification."""
from webapp.mail.compose import compose_test_message
from webapp.mail.connectors import Hop, open_connection
from webapp.mail.errors import N_, MailError, Step
from webapp.mail.oauth import OAuthGrant
from webapp.mail.transport import SendResult, SmtpSession, SmtpSettings, send_message

__all__ = [
    "N_", "Step", "MailError", "Hop", "open_connection", "SmtpSettings", "SendResult", "SmtpSession",
    "send_message", "compose_test_message", "OAuthGrant",
]
