"""Sending one test message through the transport to a test server: the envelope and message tests use."""
from webapp.mail import compose_test_message, send_message

BOUNCE = "bounce@example.com"
RECIPIENT = "to@example.net"


def make_message(**overrides):
    fields = {"sender": "Ops Desk <ops@example.com>", "to": RECIPIENT, "subject": "TEST MESSAGE!",
              "body": "ATTENTION: THIS IS A TEST MESSAGE!"}
    return compose_test_message(**{**fields, **overrides})


def send(server, message=None, recipients=(RECIPIENT,), **settings):
    return send_message(server.settings(**settings), message or make_message(), envelope_from=BOUNCE,
                        recipients=list(recipients))


def everything_shown(result):
    """All text a screen could show for a result."""
    parts = [*result.transcript, result.reply or ""]
    if result.error is not None:
        error = result.error
        parts += [str(error), error.message % error.params, error.hint % error.params, error.reply or "",
                  repr(error), *map(str, error.params.values())]
    return "\n".join(parts)
