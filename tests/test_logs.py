"""One logging setup (webapp/logs.py): plain or JSON lines, scrubbed of secrets and AUTH payloads.

The logs; SECURITY.md items 5 and 8 (no secret in any log). Every failure path below runs with both pytest's
caplog and the smtpdesk JSON handler capturing; then both are searched for each secret, clear and in base64.
"""
import base64
import json
import logging

import pytest
from cryptography.fernet import Fernet

from tests.fixtures.proxies import PROXY_USER
from tests.support.factories import make_account, make_client, make_connector, make_credential
from tests.support.outbox import account_for, drain
from webapp import logs
from webapp.models import Credential, Notification
from webapp.outbox import send_notification

LOGIN = "mailer@example.com"
RIGHT_SECRET = "Right-Secret-5521"
WRONG_SECRET = "Wr0ng-Secret-4471"
PROXY_WRONG = "Wrong-proxy-pass-77"
VIEW_SECRET = "View-Secret-0093"


def leak_forms(secret: str, login: str = LOGIN) -> list[str]:
    """The secret as it could leak: clear, base64 alone (AUTH LOGIN), inside AUTH PLAIN's base64."""
    return [secret] + [base64.b64encode(raw.encode()).decode()
                       for raw in (secret, f"\0{login}\0{secret}", f"{login}\0{login}\0{secret}",
                                   f"\0{PROXY_USER}\0{secret}", f"{PROXY_USER}:{secret}")]


@pytest.fixture
def json_logs(app, monkeypatch, capsys):
    """SMTPDESK_LOG_JSON=1: the smtpdesk handler writes JSON lines to stderr; returns a reader of those lines."""
    monkeypatch.setenv("SMTPDESK_LOG_JSON", "1")
    logs.configure_logging(app)
    capsys.readouterr()

    def read() -> list[dict]:
        lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
        return [json.loads(line) for line in lines]

    yield read
    monkeypatch.delenv("SMTPDESK_LOG_JSON")
    logs.configure_logging(app)


def test_security_8_every_failure_path_logs_without_a_secret_in_caplog_or_the_json_lines(
        app, json_logs, caplog, smtp_server, certificates, http_auth_proxy):
    caplog.set_level(logging.DEBUG)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # errors reach the 500 handler and its log line, as in production

    @app.get("/boom")
    def boom():
        """A view that fails, with a secret in its exception (as a careless library might)."""
        secret = Credential.get(Credential.name == "View login").reveal_secret()
        raise RuntimeError(f"relay refused {LOGIN}:{secret} / {base64.b64encode(secret.encode()).decode()}")

    server = smtp_server("starttls", users={LOGIN: RIGHT_SECRET})
    dialog_account = make_account(
        name="Submission", host=server.host, port=server.port, secure=True, secure_type="tls", use_auth=True,
        ca_cert=certificates.ca_pem, credential=make_credential(name="Relay login", username=LOGIN,
                                                                secret=WRONG_SECRET))
    worker_account = account_for(server, certificates, name="Worker relay", use_auth=True,
                                 credential=make_credential(name="Worker login", username=LOGIN,
                                                            secret=WRONG_SECRET))
    connector = make_connector(name="Office proxy", kind="http", host=http_auth_proxy.host,
                               port=http_auth_proxy.port, username=PROXY_USER, password=PROXY_WRONG)
    make_credential(name="View login", username=LOGIN, secret=VIEW_SECRET)
    undecryptable = make_credential(name="Foreign key", username=LOGIN, secret="placeholder")
    Credential.update(secret_encrypted=Fernet(Fernet.generate_key()).encrypt(b"Foreign-Secret-31").decode()).where(
        Credential.id == undecryptable.id).execute()
    broken_account = make_account(name="Broken vault", host=server.host, port=server.port, use_auth=True,
                                  credential=undecryptable)
    logs.forget_secrets()  # from here on, only what the app itself reveals is known to the filter

    admin = make_client(app, "admin")
    # 1. A 535 in the test dialog.
    response = admin.htmx("post", f"/accounts/{dialog_account.id}/test",
                          data={"to": "rita@example.org", "subject": "Check", "body": "Hello."})
    assert response.status_code == 200 and "535" in response.get_data(as_text=True)
    # 2. A 535 in the worker (PLAIN then LOGIN, both logged by the test server's own protocol log too).
    send_notification(to=["rita@example.org"], subject="n1", text="Hello.", account=worker_account.name)
    drain()
    assert Notification.get().status == "failed"
    # 3. A proxy refusing a wrong password.
    response = admin.htmx("post", f"/connectors/{connector.id}/test", data={"host": server.host,
                                                                          "port": str(server.port)})
    assert "407" in response.get_data(as_text=True)
    # 4. A secret the vault key cannot decrypt.
    response = admin.htmx("post", f"/accounts/{broken_account.id}/test",
                          data={"to": "rita@example.org", "subject": "Check", "body": "Hello."})
    assert response.status_code in (200, 500)
    # 5. An exception in a view, carrying a secret.
    assert admin.get("/boom").status_code == 500
    # 6. smtplib-style debug lines of an AUTH LOGIN exchange.
    login_b64 = base64.b64encode(LOGIN.encode()).decode()
    for line in ("send: 'AUTH LOGIN'", "reply: b'334 VXNlcm5hbWU6'", f"send: '{login_b64}\\r\\n'",
                 "reply: b'334 UGFzc3dvcmQ6'", f"send: '{base64.b64encode(b'Unknown-Typed-881').decode()}\\r\\n'"):
        logging.getLogger("smtplib.debug").debug("%s", line)

    json_lines = json_logs()
    captured = caplog.text + "\n".join(json.dumps(line, ensure_ascii=False) for line in json_lines)
    for secret in (WRONG_SECRET, PROXY_WRONG, VIEW_SECRET, "Unknown-Typed-881", "Foreign-Secret-31"):
        for leaked in leak_forms(secret):
            assert leaked not in captured, (secret, leaked)
            assert json.dumps(leaked)[1:-1] not in captured
    # The logs still say what happened: the worker's 535, the view's failure with its (masked) exception.
    messages = [line["message"] for line in json_lines]
    assert any("535" in message for message in messages)
    [failure] = [line for line in json_lines if line["message"] == "Exception on /boom [GET]"]  # Flask logs it, once
    assert failure["level"] == "ERROR" and f"relay refused {LOGIN}:******** / ********" in failure["exception"]
    assert {"time", "level", "logger", "message"} <= set(json_lines[0])


@pytest.mark.parametrize("line,expected", [
    ("C: AUTH PLAIN AG1haWxlckBleGFtcGxlLmNvbQBzM2NyM3Q=", "C: AUTH PLAIN ********"),
    ("send: 'auth plain AG1haWxlckBleGFtcGxlLmNvbQBzM2NyM3Q=\\r\\n'", "send: 'auth plain ********\\r\\n'"),
    ("C: AUTH LOGIN bWFpbGVy", "C: AUTH LOGIN ********"),
    ("S: 334 UGFzc3dvcmQ6\nC: czNjcjN0", "S: 334 UGFzc3dvcmQ6\nC: ********"),
    ("send: 'dXNlcm5hbWU=\r\n'", "send: '********\r\n'"),
    ("send: 'QUIT\r\n'", "send: 'QUIT\r\n'"),
    ("C: STARTTLS", "C: STARTTLS"),
    ("250-AUTH LOGIN PLAIN", "250-AUTH LOGIN PLAIN"),
    ("notification 12 via Relay: 535 5.7.8 Authentication credentials invalid (failed)",
     "notification 12 via Relay: 535 5.7.8 Authentication credentials invalid (failed)"),
])
def test_auth_payloads_are_masked_and_ordinary_lines_kept(line, expected):
    assert logs.scrub(line) == expected


def test_a_remembered_secret_is_masked_clear_and_in_any_base64_around_it():
    logs.forget_secrets()
    logs.remember_secret("Pa55-word-ção")
    plain = base64.b64encode("\0someone@example.com\0Pa55-word-ção".encode()).decode()
    shifted = base64.b64encode("xPa55-word-ção".encode()).decode()
    for text in ("Pa55-word-ção", plain, shifted, base64.b64encode("Pa55-word-ção".encode()).decode()):
        assert "Pa55" not in logs.scrub(f"saw {text} here") and "********" in logs.scrub(f"saw {text} here")
    assert logs.scrub("nothing secret") == "nothing secret"


def test_the_remembered_secrets_are_bounded():
    logs.forget_secrets()
    for n in range(logs.MAX_REMEMBERED + 10):
        logs.remember_secret(f"secret-number-{n:05d}")
    assert logs.scrub("secret-number-00000") == "secret-number-00000"  # the oldest were dropped
    assert logs.scrub(f"secret-number-{logs.MAX_REMEMBERED + 9:05d}") == "********"


def test_revealing_a_secret_registers_it_with_the_filter(app, caplog):
    credential = make_credential(secret="Revealed-Secret-64")
    logs.forget_secrets()
    Credential.get_by_id(credential.id).reveal_secret()
    logging.getLogger("webapp.test").warning("careless: %s", "Revealed-Secret-64")
    assert "Revealed-Secret-64" not in caplog.text and "careless: ********" in caplog.text


def test_plain_text_by_default_json_lines_when_asked(app, monkeypatch, capsys):
    logs.configure_logging(app)
    logging.getLogger("webapp.test").warning("plain %s", "line")
    assert " WARNING webapp.test: plain line" in capsys.readouterr().err
    monkeypatch.setenv("SMTPDESK_LOG_JSON", "1")
    logs.configure_logging(app)
    logging.getLogger("webapp.test").warning("json %s", "line")
    [line] = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert (line["level"], line["logger"], line["message"]) == ("WARNING", "webapp.test", "json line")
    monkeypatch.delenv("SMTPDESK_LOG_JSON")
    logs.configure_logging(app)
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logs.StderrHandler)]
    assert len(handlers) == 1 and any(isinstance(f, logs.ScrubSecrets) for f in handlers[0].filters)
