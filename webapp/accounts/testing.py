"""Sending a test message through an account, saved or not, and the words the screens use for the outcome.

The views stay thin: they validate, call send_test(), record and audit; the SMTP work is webapp.mail's.
"""
import json
from dataclasses import dataclass, field

from flask import current_app
from flask_babel import gettext

from webapp.mail import N_, MailError, SendResult, Step, compose_test_message, oauth, send_message
from webapp.mail.compose import envelope_address, resolve_addressing
from webapp.mail.connectors import parse_networks
from webapp.models import SAVED_CREDENTIAL, Credential, SmtpAccount, utcnow
from webapp.outbox.message import footer_for, reply_line, stored_facts

# Step names in the admin's words: English msgids, translated on screen.
STEP_NAMES = {
    Step.DNS: N_("DNS"),
    Step.CONNECT: N_("connection"),
    Step.PROXY: N_("proxy"),
    Step.GREETING: N_("server greeting"),
    Step.TLS: N_("TLS handshake"),
    Step.CERTIFICATE: N_("certificate"),
    Step.STARTTLS: N_("STARTTLS"),
    Step.TOKEN: N_("access token"),
    Step.AUTH: N_("authentication"),
    Step.SENDER: N_("sender refused"),
    Step.RECIPIENT: N_("recipient refused"),
    Step.DATA: N_("message refused"),
    Step.TIMEOUT: N_("timeout"),
    Step.CONNECTION_LOST: N_("connection lost"),
    Step.POLICY: N_("refused by policy"),
    Step.INTERNAL: N_("internal error"),
}
TLS_STATES = {
    "verified": N_("verified"),
    "unverified": N_("encrypted, certificate not verified"),
    "none": N_("not used"),
}
SUMMARY_MAX = 200


@dataclass
class Outcome:
    """A test's result with what the dialog says around it: the route taken and the words for each part."""

    result: SendResult
    route: str          # "direct connection" or the connector's name, translated
    to: str
    applied: dict = field(default_factory=dict)  # the account's settings the message carried: reply_to,
    #                                              confirmation_email (addresses), footer (True)

    @property
    def ok(self) -> bool:
        return self.result.ok

    @property
    def error(self) -> MailError | None:
        return self.result.error

    @property
    def elapsed_ms(self) -> int:
        return round(self.result.elapsed * 1000)

    @property
    def tls(self) -> str:
        return gettext(TLS_STATES.get(self.result.tls, self.result.tls))

    @property
    def step(self) -> str:
        return gettext(STEP_NAMES[self.error.step]) if self.error else ""

    @property
    def message(self) -> str:
        return explain(self.error.message, self.error.params) if self.error else ""

    @property
    def hint(self) -> str:
        return explain(self.error.hint, self.error.params) if self.error else ""

    @property
    def token(self) -> str:
        """The OAuth access token the test used, in the reader's words; empty when it used none."""
        token = self.result.token
        if token is None:
            return ""
        if token["expires_in"] is None:
            return gettext("obtained (its lifetime was not stated)")
        minutes = max(int(token["expires_in"] // 60), 0)
        if token["cached"]:
            return gettext("reused (expires in %(minutes)s min)", minutes=minutes)
        return gettext("obtained (expires in %(minutes)s min)", minutes=minutes)

    @property
    def applied_lines(self) -> list[str]:
        """The account's settings the test message carried, in the reader's words."""
        lines = []
        if "reply_to" in self.applied:
            lines.append(gettext("Reply-To: %(address)s", address=self.applied["reply_to"]))
        if "confirmation_email" in self.applied:
            lines.append(gettext("read confirmation asked, to %(address)s",
                                 address=self.applied["confirmation_email"]))
        if self.applied.get("footer"):
            lines.append(gettext("the system footer appended"))
        return lines

    @property
    def summary(self) -> str:
        return summary(self.result)

    def audit_changes(self, **extra) -> dict:
        """What the audit log keeps of a test: outcome, step and reply code; never the message or a secret."""
        error = self.error
        changes = {"ok": self.ok, "step": error.step.value if error else None, "code": self.result.code,
                   "to": self.to, "tls": self.result.tls}
        changes.update(extra)
        return changes


def explain(text: str, params: dict) -> str:
    """A MailError message or hint in the user's language, its placeholders filled."""
    # "reason" may itself be an N_() phrase (a certificate's reason); other values are names and numbers.
    params = dict(params)
    if isinstance(params.get("reason"), str):
        params["reason"] = gettext(params["reason"])
    try:
        return gettext(text) % params
    except (KeyError, ValueError, TypeError):
        try:
            return text % params
        except (KeyError, ValueError, TypeError):
            return text


def summary(result: SendResult) -> str:
    """What the account keeps of a test for the report: the outcome's facts as JSON, so that summary_text() says
    them in each reader's language. Never a secret (the transport scrubbed the reply)."""
    facts = result.facts()
    if facts.get("reply"):
        facts["reply"] = _shorten(facts["reply"])
    return json.dumps(facts)


def summary_text(stored: str | None) -> str:
    """A stored summary in the reader's language: "250 OK ..." or "authentication: 535 ..."; a summary stored as a
    sentence (before facts were kept) as it is."""
    facts = stored_facts(stored)
    if facts is None:
        return stored or ""
    reply = reply_line(facts)
    if facts.get("ok"):
        return _shorten(reply or gettext("OK"))
    try:
        step = gettext(STEP_NAMES[Step(facts.get("step"))])
    except ValueError:
        step = str(facts.get("step") or "")
    detail = reply or explain(facts.get("message") or "", facts.get("params") or {})
    if facts.get("delivery"):
        return _shorten(gettext("Delivery failed: %(step)s: %(detail)s", step=step, detail=detail))
    return _shorten(f"{step}: {detail}")


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_MAX else text[:SUMMARY_MAX - 1] + "…"


def route_label(account: SmtpAccount) -> str:
    """How the test went out: directly, or through which connector."""
    if not account.use_connector:
        return gettext("direct connection")
    connector = account.effective_connector()
    if connector is None:
        return gettext("a network connector (none is set)")
    return gettext("network connector %(name)s", name=connector.name)


def send_test(account: SmtpAccount, *, to: str, subject: str, body: str,
              credential=SAVED_CREDENTIAL) -> Outcome:
    """Send one test message through the account's settings (saved or not) within SMTP_DEADLINE.

    Our own rules (allowed hosts, a missing default connector) refuse before any socket is opened.
    """
    config = current_app.config
    try:
        settings = account.smtp_settings(float(config["SMTP_TIMEOUT"]), float(config["SMTP_DEADLINE"]),
                                         credential=credential,
                                         blocked_networks=parse_networks(config["OUTBOUND_BLOCKED_NETWORKS"]),
                                         oauth_allow_loopback=bool(config["OAUTH_ALLOW_LOOPBACK"]))
        footer = footer_for(account)
        applied = account_settings(account, footer)
        message = compose_test_message(sender=account.sender, to=to, subject=subject, body=body,
                                       reply_to=applied.get("reply_to"),
                                       confirmation_email=applied.get("confirmation_email"), footer=footer)
        envelope_from = envelope_address(account.return_path or account.sender)
        recipients = [envelope_address(to)]
    except MailError as error:
        result, applied = refused(error), {}
    except ValueError as exc:  # an address the composer cannot use (validated before, so unexpected)
        result = refused(MailError(Step.POLICY, False, N_("The test message could not be composed (%(reason)s)."),
                                   N_("Check the account's addresses and the recipient."), {"reason": str(exc)}))
        applied = {}
    else:
        result = send_message(settings, message, envelope_from=envelope_from, recipients=recipients)
    return Outcome(result=result, route=route_label(account), to=to, applied=applied)


def account_settings(account: SmtpAccount, footer: str | None) -> dict:
    """What of the account's settings a notification through it carries, and so the test message too: its Reply-To,
    where read confirmations go when it asks for them, and whether the system footer (footer_for(account)) is
    appended: only when there is footer text to append."""
    rules = resolve_addressing(reply_to=account.reply_to, return_path=account.return_path,
                               confirmation_email=account.confirmation_email,
                               read_confirmation=account.read_confirmation, force_settings=account.force_settings)
    applied = {"reply_to": rules.reply_to, "confirmation_email": rules.confirmation_email,
               "footer": bool(footer and footer.strip())}
    return {name: value for name, value in applied.items() if value}


# The secret typed under "Test these settings" for each credential type that can be tested with it, and the column
# it stands in for. A refresh token or a service account key is no secret to type into a password field: those types
# are tested with their stored secrets only, from a saved account's settings.
TYPED_SECRET_COLUMNS = {oauth.PASSWORD: "secret_encrypted", oauth.CLIENT_CREDENTIALS: "client_secret_encrypted"}


def stored_credential_moved(candidate: SmtpAccount, editing: SmtpAccount | None = None) -> MailError | None:
    """A stored credential's secret goes only where a saved account using it already sends it, with the same host,
    port, connector and security settings: otherwise anyone who may test settings could point a stored secret at a
    server of their own, or send it in clear text, and read it there. Decided from the saved accounts alone, whatever
    account the form says it edits (a client can send any id; editing only picks the words). None when allowed,
    else the refusal, and nothing is sent."""
    if not candidate.use_auth or candidate.credential_id is None:
        return None
    wanted = _security_settings(candidate)
    using = SmtpAccount.select().where(SmtpAccount.credential == candidate.credential_id,
                                       SmtpAccount.use_auth == True)  # noqa: E712
    if any(_security_settings(account) == wanted for account in using):
        return None
    if editing is not None and editing.credential_id == candidate.credential_id:
        message = N_("The saved credential %(credential)s is used only with the host, port, connector and security "
                     "settings the account was saved with, and they were changed, so nothing was sent.")
    else:
        message = N_("The stored secret of %(credential)s is sent only with the host, port, connector and security "
                     "settings of a saved account that uses it, and no saved account uses these, so nothing was "
                     "sent.")
    if candidate.credential.kind in TYPED_SECRET_COLUMNS:
        hint = N_("Type the credential's secret under “Test these settings” to try these settings, or save the "
                  "account first and test it from the report.")
    else:
        hint = N_("Save the account first and test it from the report: this credential's refresh token or service "
                  "account key cannot be typed for a test.")
    return MailError(Step.POLICY, False, message, hint, {"credential": candidate.credential.name})


def typed_credential(stored: Credential, secret: str) -> Credential:
    """The chosen credential (as the form read it) with the secret typed for one test instead of its stored one (the
    password, or an OAuth 2.0 client's secret); never saved. Unsaved, its access tokens are cached apart from the
    stored credential's, and a refresh token its endpoint sends back is not kept."""
    credential = Credential(name=stored.name, kind=stored.kind, username=stored.username,
                            allowed_hosts=stored.allowed_hosts, token_url=stored.token_url,
                            client_id=stored.client_id, scope=stored.scope)
    credential.set_secret(secret, TYPED_SECRET_COLUMNS[stored.kind])  # also masks it in every log line from now on
    return credential


def _security_settings(account: SmtpAccount) -> tuple:
    """Where a secret would go and how it is protected on the way: host, port, the proxy it passes (which sees it
    when the connection is plain or unverified), mode and certificate checks."""
    connector = account.effective_connector()
    return (account.host.lower(), account.effective_port, connector.id if connector else None, account.mode,
            bool(account.ignore_cert_errors), (account.ca_cert or "").strip())


# A result for a test our own rules refused: nothing was opened, nothing was said (one helper with the outbox).
refused = SendResult.refusal


def record(account: SmtpAccount, outcome: Outcome) -> None:
    """Keep the outcome on the account (only the last_test_* columns, and a login that worked: an edit saved
    meanwhile stays)."""
    tls_verified = {"verified": True, "unverified": False}.get(outcome.result.tls)
    values = dict(last_test_at=utcnow(), last_test_ok=outcome.ok, last_test_summary=outcome.summary,
                  last_tls_verified=tls_verified)
    if outcome.ok and account.credential_key():
        # Failover: this login worked; the same one refused later says the relay changed (webapp.outbox.failover).
        values["auth_worked_with"] = account.credential_key()
    SmtpAccount.update(**values).where(SmtpAccount.id == account.id).execute()
    for name, value in values.items():
        setattr(account, name, value)
