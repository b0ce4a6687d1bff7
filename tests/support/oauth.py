"""Test data for OAuth 2.0 credentials: a real Google-style service-account JSON key, and the credential forms."""
import functools
import itertools
import json

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

_counter = itertools.count(1)


@functools.cache
def rsa_private_key_pem() -> str:
    """An RSA private key in PEM, as Google writes it (PKCS#8, unencrypted); made once, RSA keys are slow to make."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def ec_private_key_pem() -> str:
    """A private key of another kind than RSA: Google's service-account assertions are RS256."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def service_account_key(**overrides) -> dict:
    """A service account's JSON key as the Google Cloud console downloads it; None drops a field."""
    data = {
        "type": "service_account",
        "project_id": "smtpdesk-test",
        "private_key_id": "3f1b2c4d5e6f708192a3b4c5d6e7f8091a2b3c4d",
        "private_key": rsa_private_key_pem(),
        "client_email": "mailer@smtpdesk-test.iam.gserviceaccount.com",
        "client_id": "104857600000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    data.update(overrides)
    return {name: value for name, value in data.items() if value is not None}


def service_account_json(**overrides) -> str:
    return json.dumps(service_account_key(**overrides), indent=2)


def oauth_form(kind: str, **overrides) -> dict:
    """The POST body of a valid credential form of an OAuth 2.0 type; override any field."""
    data = {"name": f"oauth-credential-{next(_counter)}", "kind": kind, "mailbox": "notify@example.com",
            "scope": "https://outlook.office365.com/.default", "description": "", "allowed_hosts": ""}
    if kind in ("oauth_client", "oauth_refresh"):
        data.update(token_url="https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
                    client_id="8f0c6a0e-1111-2222-3333-444455556666", client_secret="Client-Secret-0451")
    if kind == "oauth_refresh":
        data.update(authorization_url="https://accounts.google.com/o/oauth2/v2/auth", scope="https://mail.google.com/",
                    refresh_token="1//Refresh-Token-8812")
    if kind == "oauth_jwt":
        data.update(scope="https://mail.google.com/", service_account_key=service_account_json())
    data.update(overrides)
    return data
