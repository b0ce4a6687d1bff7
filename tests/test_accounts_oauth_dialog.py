"""The Test Email dialog of an account that logs in with an OAuth 2.0 access token: the token step among the facts,
and the TOKEN step named when it fails. Until credentials produce grants, the account's settings get one here."""
import dataclasses
import re

import pytest

from tests.support.dialog import dialog_of, text_of
from tests.support.factories import make_account
from tests.support.oauth import app_grant, user_grant
from webapp.models import SmtpAccount


@pytest.fixture
def logs_in_with(monkeypatch):
    """Make every account's settings log in with this grant (the wiring the credential types will bring)."""
    def use(grant):
        settings = SmtpAccount.smtp_settings
        monkeypatch.setattr(SmtpAccount, "smtp_settings", lambda account, *args, **kwargs: dataclasses.replace(
            settings(account, *args, **kwargs), oauth=grant, oauth_allow_loopback=True))
    return use


def run_test(client, server) -> str:
    """Send the test message through a new account at the server: the dialog that comes back."""
    account = make_account(host=server.host, port=server.port, return_path="ana@example.com")
    response = client.htmx("post", f"/accounts/{account.id}/test", data={
        "to": "rita@example.org", "subject": "Check", "body": "Hello", "next": "/accounts/"})
    return dialog_of(text_of(response))


def facts_of(dialog: str) -> dict:
    return dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", dialog))


def test_a_sent_test_shows_the_token_obtained_and_its_lifetime(admin, oauth, smtp_server, logs_in_with):
    logs_in_with(user_grant(oauth))
    dialog = run_test(admin, smtp_server(oauth=oauth))
    assert "The server accepted the message" in dialog
    assert facts_of(dialog)["Access token"] in ("obtained (expires in 59 min)", "obtained (expires in 60 min)")
    assert run_test(admin, smtp_server(oauth=oauth)).count("reused (expires in 59 min)") == 1


def test_a_refused_token_still_shows_that_one_was_obtained(admin, oauth, smtp_server, logs_in_with):
    logs_in_with(user_grant(oauth, mailbox="bia@example.com"))
    dialog = run_test(admin, smtp_server(oauth=oauth))
    assert "<strong>Step: authentication</strong>" in dialog
    assert "refused the access token for bia@example.com" in dialog
    assert facts_of(dialog)["Access token"].startswith("obtained (expires in")


def test_a_token_endpoint_failure_names_the_token_step(admin, oauth, smtp_server, logs_in_with):
    logs_in_with(app_grant(oauth, client_secret="wrong-secret-5512"))
    dialog = run_test(admin, smtp_server(oauth=oauth))
    assert "<strong>Step: access token</strong>" in dialog and "Access token</dt>" not in dialog
    assert "did not accept the client ID or secret" in dialog and "wrong-secret-5512" not in dialog
