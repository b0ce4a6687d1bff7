"""The Test Email dialog of an account whose credential is of an OAuth 2.0 type: the token step among the facts, and
the TOKEN step named when it fails. Credentials are real ones, stored in the vault, at the test OAuth server."""

import pytest

from tests.support.dialog import dialog_of, facts_of, text_of
from tests.support.factories import make_account
from tests.support.oauth import make_oauth_credential
from webapp.mail.oauth import CLIENT_CREDENTIALS, REFRESH_TOKEN


@pytest.fixture(autouse=True)
def loopback(app):
    """The test OAuth server's token URL is http://127.0.0.1: allowed as OAUTH_ALLOW_LOOPBACK allows it."""
    app.config["OAUTH_ALLOW_LOOPBACK"] = True


def run_test(client, server, credential) -> str:
    """Send the test message through a new account at the server, logging in with the credential: the dialog."""
    account = make_account(host=server.host, port=server.port, return_path="ana@example.com", use_auth=True,
                           credential=credential)
    response = client.htmx("post", f"/accounts/{account.id}/test", data={
        "to": "rita@example.org", "subject": "Check", "body": "Hello", "next": "/accounts/"})
    return dialog_of(text_of(response))


def test_a_sent_test_shows_the_token_obtained_and_its_lifetime(admin, oauth, smtp_server):
    credential = make_oauth_credential(REFRESH_TOKEN, oauth)
    dialog = run_test(admin, smtp_server(oauth=oauth), credential)
    assert "The server accepted the message" in dialog
    assert facts_of(dialog)["Access token"] in ("obtained (expires in 59 min)", "obtained (expires in 60 min)")
    assert run_test(admin, smtp_server(oauth=oauth), credential).count("reused (expires in 59 min)") == 1


def test_a_refused_token_still_shows_that_one_was_obtained(admin, oauth, smtp_server):
    credential = make_oauth_credential(REFRESH_TOKEN, oauth)
    credential.username = "bia@example.com"  # the token is ana's
    credential.save()
    dialog = run_test(admin, smtp_server(oauth=oauth), credential)
    assert "<strong>Step: authentication</strong>" in dialog
    assert "refused the access token for bia@example.com" in dialog
    assert facts_of(dialog)["Access token"].startswith("obtained (expires in")


def test_a_token_endpoint_failure_names_the_token_step(admin, oauth, smtp_server):
    credential = make_oauth_credential(CLIENT_CREDENTIALS, oauth, client_secret="wrong-secret-5512")
    dialog = run_test(admin, smtp_server(oauth=oauth), credential)
    assert "<strong>Step: access token</strong>" in dialog and "Access token</dt>" not in dialog
    assert "did not accept the client ID or secret" in dialog and "wrong-secret-5512" not in dialog
