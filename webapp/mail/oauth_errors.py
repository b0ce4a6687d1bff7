"""The failures of OAuth 2.0 sending explained as MailErrors in the admin's words: the token endpoint's (step TOKEN,
before AUTH), the token URL our own rules refuse (POLICY), and a mail server's refusal of the bearer token (AUTH),
with hints that say what to change and where each provider keeps it. As in errors.py: messages and hints are N_()
literals, params never hold a secret, a token or a key."""
import re
import ssl

from webapp.mail.errors import CERTIFICATE_REASONS, N_, TRY_LATER, MailError, Step, auth_refused
from webapp.mail.oauth import AUTHORIZATION_CODE, JWT_BEARER, REFRESH_TOKEN

# RFC 6749 §5.2 and RFC 8628 §3.5 codes after which asking again later may work.
TRANSIENT_ERRORS = {"temporarily_unavailable", "server_error", "slow_down"}
# RFC 6749 §5.2 codes that refuse the credential itself: no later attempt works until an admin changes it.
CREDENTIAL_ERRORS = frozenset({"invalid_client", "invalid_grant", "unauthorized_client", "invalid_scope"})
MAX_DESCRIPTION = 300  # of the endpoint's error_description kept in a message (Entra's carry trace IDs)
# Microsoft 365's refusal when SMTP AUTH is off for the mailbox or the tenant (5.7.139, or its older wordings).
_SMTP_AUTH_DISABLED = re.compile(r"5\.7\.139|SmtpClientAuthentication is disabled|SMTP AUTH is disabled", re.I)
_M365_REFUSED = re.compile(r"\b5\.7\.3\b")    # Microsoft 365: "5.7.3 Authentication unsuccessful"
_GMAIL_REFUSED = re.compile(r"\b5\.7\.8\b")   # Gmail: "5.7.8 Username and Password not accepted"


def token_url_refused(url: str, rule: str, rule_params: dict) -> MailError:
    """A token URL the endpoint rule (oauth.check_endpoint) refuses, before any connection; the rule's own words,
    those the credential form shows on saving, are the hint."""
    shown = url[:200]
    if shown[:8].lower() == "https://":
        message = N_("The credential's token URL %(url)s is not a valid address, so no access token was asked for.")
    else:
        message = N_("The credential's token URL %(url)s does not use https, so no access token was asked for.")
    return MailError(Step.POLICY, False, message, rule, {**rule_params, "url": shown})


def service_account_key_unusable(client_email: str) -> MailError:
    """The service account's JSON key holds no private key that can sign: nothing was sent."""
    return MailError(Step.TOKEN, False,
                     N_("The private key of the service account %(account)s cannot be used to sign, so no access "
                        "token was asked for."),
                     N_("Upload the service account's JSON key again, as the Google Cloud console downloads it "
                        "(IAM & Admin → Service accounts → Keys → Add key → JSON)."), {"account": client_email})


def token_error(error: str, description: str, grant, *, host: str, status: int) -> MailError:
    """The token endpoint's RFC 6749 §5.2 error answer, explained by its code and the grant that was asked."""
    reason = f"HTTP {status}, {error}" + (f": {description[:MAX_DESCRIPTION]}" if description else "")
    # The grant by its RFC 6749 grant_type, a name the same in every language, as the error codes are.
    params = {"host": host, "reason": reason, "scope": grant.scope, "mailbox": grant.mailbox,
              "grant": grant.grant_type, "error": error}
    service_account = grant.kind == JWT_BEARER
    if error == "invalid_grant" and grant.grant_type == AUTHORIZATION_CODE:
        return MailError(Step.TOKEN, False,
                         N_("The token endpoint %(host)s refused the authorization code (%(reason)s)."),
                         N_("Connect with the provider again: a code can be used once, within minutes, and only with "
                            "the redirect URI and client it was issued for."), params)
    if error == "invalid_client":
        return MailError(Step.TOKEN, False,
                         N_("The token endpoint %(host)s did not accept the client ID or secret (%(reason)s)."),
                         N_("Check the credential's client ID and secret. A client secret expires: in Microsoft "
                            "Entra (App registrations → the app → Certificates & secrets) make a new one and enter "
                            "its value, not its ID."), params)
    if error == "invalid_grant" and service_account:
        return MailError(Step.TOKEN, False,
                         N_("The token endpoint %(host)s refused the service account's signed request to act as "
                            "%(mailbox)s (%(reason)s)."),
                         N_("Check that the service account's key is still active (Google Cloud console → IAM & "
                            "Admin → Service accounts → Keys), that %(mailbox)s is a user of the Google Workspace "
                            "domain, and that this machine's clock is right."), params)
    if error == "invalid_grant" and grant.kind == REFRESH_TOKEN:
        return MailError(Step.TOKEN, False,
                         N_("The token endpoint %(host)s refused the refresh token: it was revoked or has expired "
                            "(%(reason)s)."),
                         N_("Connect the credential with the provider again to get a new refresh token. A refresh "
                            "token ends when the user removes the app's access or changes the password, or after "
                            "months unused."), params)
    if error == "unauthorized_client" and service_account:
        return MailError(Step.TOKEN, False,
                         N_("The token endpoint %(host)s does not let the service account act for users with the "
                            "scope %(scope)s (%(reason)s)."),
                         N_("Set up domain-wide delegation: in the Google Admin console (Security → Access and data "
                            "control → API controls → Manage domain-wide delegation) add the service account's "
                            "client ID with the scope %(scope)s."), params)
    if error == "unauthorized_client":
        return MailError(Step.TOKEN, False,
                         N_("The token endpoint %(host)s does not let this client use the %(grant)s grant "
                            "(%(reason)s)."),
                         N_("Allow this grant for the client at the provider (in Microsoft Entra: the app "
                            "registration), or choose the credential type the client is registered for."), params)
    if error == "invalid_scope":
        return MailError(Step.TOKEN, False,
                         N_("The token endpoint %(host)s refused the scope %(scope)s (%(reason)s)."),
                         N_("Use the provider's scope for sending mail: https://outlook.office365.com/.default for "
                            "Microsoft 365 with client credentials, https://outlook.office.com/SMTP.Send "
                            "offline_access for a Microsoft 365 user, https://mail.google.com/ for Gmail and Google "
                            "Workspace."), params)
    if error in TRANSIENT_ERRORS or status >= 500:
        return token_unavailable(host, reason)
    return MailError(Step.TOKEN, False,
                     N_("The token endpoint %(host)s refused to issue an access token (%(reason)s)."),
                     N_("Check the credential's token URL, client and scope against the provider's settings."),
                     params)


def credential_refused(error: MailError) -> bool:
    """Whether the token endpoint refused the credential itself (CREDENTIAL_ERRORS), as a mail server's 535 refuses
    a password: the outbox marks the account as it does for a 535."""
    return error.step is Step.TOKEN and error.params.get("error") in CREDENTIAL_ERRORS


def token_unavailable(host: str, reason: str) -> MailError:
    """The token endpoint cannot issue a token now (5xx, 429, temporarily_unavailable): a later attempt may work."""
    return MailError(Step.TOKEN, True,
                     N_("The token endpoint %(host)s cannot issue an access token right now (%(reason)s)."),
                     TRY_LATER, {"host": host, "reason": reason})


def token_answer_unusable(host: str, status: int, kind: str | None) -> MailError:
    """An answer with no token and no OAuth error in it (kind: "JSON", "redirect" or None for one not JSON)."""
    if status >= 500 or status == 429:
        return token_unavailable(host, f"HTTP {status}")
    reason = {"redirect": f"HTTP {status}, a redirect", "JSON": f"HTTP {status}, no access token in it"}.get(
        kind, f"HTTP {status}, not JSON")
    return MailError(Step.TOKEN, False,
                     N_("The token endpoint %(host)s answered without an access token (%(reason)s)."),
                     N_("Check that the token URL is the provider's token endpoint (it usually ends in /token), "
                        "not a sign-in page or the provider's home page."), {"host": host, "reason": reason})


def token_unreachable(host: str, port: int, reason: str) -> MailError:
    """No connection to the token endpoint: its name not resolved, the connection refused or cut, a broken answer."""
    return MailError(Step.TOKEN, True,
                     N_("The token endpoint %(host)s port %(port)s could not be reached (%(reason)s)."),
                     N_("Check the token URL, this machine's network and firewall, and the account's network "
                        "connector if it uses one."), {"host": host, "port": port, "reason": reason})


def token_timeout(host: str, seconds: float) -> MailError:
    """The token endpoint did not answer in time (each read's timeout, or the dialogue's deadline)."""
    return MailError(Step.TOKEN, True,
                     N_("The token endpoint %(host)s did not answer within %(seconds)s seconds."),
                     N_("The provider or the network is slow; try again later. If it persists, check the token URL "
                        "and the firewall."), {"host": host, "seconds": f"{seconds:g}"})


def token_certificate(host: str, exc: ssl.SSLCertVerificationError) -> MailError:
    """The token endpoint's certificate failed verification, which is never skipped."""
    reason = CERTIFICATE_REASONS.get(exc.verify_code, exc.verify_message or str(exc))
    return MailError(Step.TOKEN, False,
                     N_("The certificate of the token endpoint %(host)s was not accepted: %(reason)s."),
                     N_("A token endpoint's certificate is always verified, whatever the account's setting for the "
                        "mail server: check the token URL. A private authorization server's CA certificate can be "
                        "added to the account under Advanced."), {"host": host, "reason": reason})


def token_tls(host: str, port: int, reason: str) -> MailError:
    """A TLS handshake with the token endpoint that failed for another reason than its certificate."""
    return MailError(Step.TOKEN, False,
                     N_("The TLS handshake with the token endpoint %(host)s port %(port)s failed (%(reason)s)."),
                     N_("Check that the token URL names the provider's token endpoint and its https port."),
                     {"host": host, "port": port, "reason": str(reason)})


def token_oversized(host: str, limit: int) -> MailError:
    """A token answer longer than we read."""
    return MailError(Step.TOKEN, False,
                     N_("The token endpoint %(host)s sent an oversized answer (more than %(limit)s), so it was not "
                        "read."),
                     N_("A token answer is a few kilobytes: check that the token URL is the provider's token "
                        "endpoint."), {"host": host, "limit": f"{limit // 1024} KiB"})


def bearer_not_offered(host: str, mechanisms: str) -> MailError:
    """The server offers AUTH, but neither XOAUTH2 nor OAUTHBEARER: it cannot take an access token."""
    return MailError(Step.AUTH, False,
                     N_("%(host)s does not offer OAuth 2.0 authentication (XOAUTH2 or OAUTHBEARER); it offers "
                        "%(mechanisms)s."),
                     N_("Check the server: Microsoft 365 is smtp.office365.com port 587 (TLS), Gmail is "
                        "smtp.gmail.com port 587 (TLS) or 465 (SSL). A server without OAuth 2.0 needs a username "
                        "and password credential."), {"host": host, "mechanisms": mechanisms})


def smtp_auth_disabled(reply: str | None) -> bool:
    """Whether a refusal says SMTP AUTH is off for the mailbox or tenant (a new token would change nothing)."""
    return bool(reply and _SMTP_AUTH_DISABLED.search(reply))


def bearer_refused(host: str, code: int, reply: str | None, mailbox: str, status: str | None) -> MailError:
    """AUTH with a valid-looking token refused. status: the "status" of the server's JSON error challenge (Gmail's
    and RFC 7628's), if it sent one. Microsoft 365 says 5.7.139 when SMTP AUTH is off, 5.7.3 for a token it does not
    take; Gmail 5.7.8."""
    params = {"host": host, "mailbox": mailbox, "status": status or ""}
    text = reply or ""
    if smtp_auth_disabled(text):
        return MailError(Step.AUTH, False,
                         N_("%(host)s has SMTP AUTH turned off for the mailbox %(mailbox)s or for the whole "
                            "organization."),
                         N_("Turn on Authenticated SMTP for the mailbox: Microsoft 365 admin center → Users → Active "
                            "users → the user → Mail → Manage email apps → Authenticated SMTP; or in Exchange Online "
                            "PowerShell: Set-CASMailbox -Identity %(mailbox)s -SmtpClientAuthenticationDisabled "
                            "$false (for the whole organization: Set-TransportConfig "
                            "-SmtpClientAuthenticationDisabled $false). A change can take an hour to apply."),
                         params, code, reply)
    if code != 535:  # 454 try later, 530/534/538 policy: as for any login
        return auth_refused(host, code, reply)
    message = (N_("%(host)s refused the access token for %(mailbox)s (status %(status)s).") if status else
               N_("%(host)s refused the access token for %(mailbox)s."))
    if _M365_REFUSED.search(text):
        hint = N_("In Microsoft 365 the app needs the Office 365 Exchange Online permission SMTP.SendAsApp (client "
                  "credentials) or SMTP.Send (a user's consent), granted by an admin; for client credentials its "
                  "service principal must also be registered in Exchange Online (New-ServicePrincipal) and given "
                  "access to %(mailbox)s (Add-MailboxPermission -AccessRights FullAccess). Authenticated SMTP must be "
                  "on for the mailbox.")
    elif _GMAIL_REFUSED.search(text) or status:
        hint = N_("For Gmail and Google Workspace the token's scope must be https://mail.google.com/ and %(mailbox)s "
                  "must be the account the token is for: the user who connected, or the user a service account "
                  "acts as.")
    else:
        hint = N_("Check the credential's scope and mailbox: the token must allow sending mail over SMTP as "
                  "%(mailbox)s.")
    return MailError(Step.AUTH, False, message, hint, params, code, reply)


def authorization_refused(error: str, description: str, *, host: str, scope: str, mailbox: str) -> MailError:
    """The provider sent the browser back with an RFC 6749 §4.1.2.1 error instead of a code: nothing was asked of
    the token endpoint."""
    reason = error + (f": {description[:MAX_DESCRIPTION]}" if description else "")
    params = {"host": host, "reason": reason, "scope": scope, "mailbox": mailbox}
    if error == "access_denied":
        return MailError(Step.TOKEN, False,
                         N_("%(host)s says access was not allowed (%(reason)s): the person who signed in cancelled "
                            "or refused, or the organization does not let them consent."),
                         N_("Connect with the provider again, sign in as %(mailbox)s and allow access. In Microsoft "
                            "365 an administrator may have to grant consent for the organization first (Microsoft "
                            "Entra admin center → Enterprise applications → the app → Permissions)."), params)
    if error == "invalid_scope":
        return MailError(Step.TOKEN, False, N_("%(host)s refused the scope %(scope)s (%(reason)s)."),
                         N_("Use the provider's scope for sending mail: https://mail.google.com/ for Gmail and Google "
                            "Workspace, https://outlook.office.com/SMTP.Send offline_access for a Microsoft 365 user; "
                            "and add it to the app at the provider."), params)
    if error in TRANSIENT_ERRORS:
        return MailError(Step.TOKEN, True, N_("%(host)s cannot sign you in right now (%(reason)s)."), TRY_LATER,
                         params)
    return MailError(Step.TOKEN, False, N_("%(host)s did not authorize the connection (%(reason)s)."),
                     N_("Check the credential's authorization URL, client ID and scope, and that the app is a web "
                        "application at the provider whose redirect URIs include the one this page shows."), params)


def no_refresh_token(host: str) -> MailError:
    """The code bought an access token but no refresh token: there is nothing to store."""
    return MailError(Step.TOKEN, False,
                     N_("The token endpoint %(host)s issued no refresh token, so nothing was stored."),
                     N_("Google issues one only for offline access with a new consent: remove the app under Google "
                        "Account → Security → Third-party apps with account access, then connect again. Microsoft "
                        "issues one only when the scope includes offline_access."), {"host": host})
