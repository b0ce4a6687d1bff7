"""Property tests: hypothesis over the account form, the notification API and compose.

Arbitrary text in every field never yields a 500, never a header that was not asked for, never a stored invalid
record. The app fixture is one database for all of a test's examples, so each example compares counts before and
after instead of assuming an empty table.
"""
import email
import email.policy
import json
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, event, example, given, settings, strategies as st

from tests.support.factories import account_form, make_account, make_connector, make_credential
from webapp.mail.compose import (
    _SIMPLE_ADDRESS,
    _parsed_address,
    compose_notification,
    header_address,
    message_bytes,
    new_message_id,
    notification_bytes,
)
from webapp.models import ApiToken, Notification, SmtpAccount


def examples(count: int) -> settings:
    """A modest number of examples, no per-example deadline (a request may be slow on a busy machine); the app and
    client fixtures are deliberately shared by a test's examples."""
    return settings(max_examples=count, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# Text as a browser or a script could send it: any character (control characters, line breaks, NUL, RTL marks,
# emoji), from empty to long enough to cross the length limits.
ANY_TEXT = st.text(max_size=300)
SHORT_TEXT = st.text(max_size=40)


# --- The account form ------------------------------------------------------------------------------------

YES_NO_FIELDS = ("enabled", "is_default", "read_confirmation", "force_settings", "footer_enabled", "secure",
                 "use_auth", "ignore_cert_errors", "use_connector")
TEXT_FIELDS = ("name", "sender", "reply_to", "return_path", "confirmation_email", "host", "port", "secure_type",
               "credential", "connector", "ca_cert", "helo_name")


def _field_values(valid: dict):
    """For each field: its valid value, a plausible other value, or arbitrary text."""
    strategies = {}
    for name in YES_NO_FIELDS:
        strategies[name] = st.one_of(st.just(valid[name]), st.sampled_from(["yes", "no", ""]), SHORT_TEXT)
    for name in TEXT_FIELDS:
        strategies[name] = st.one_of(st.just(valid.get(name, "")), ANY_TEXT)
    return st.fixed_dictionaries(strategies)


def _form_of(account: SmtpAccount) -> dict:
    """The edit form's POST body holding exactly what is stored."""
    def yes_no(value):
        return "yes" if value else "no"

    return {
        "name": account.name, "enabled": yes_no(account.enabled), "sender": account.sender,
        "reply_to": account.reply_to or "", "return_path": account.return_path or "",
        "confirmation_email": account.confirmation_email or "", "is_default": yes_no(account.is_default),
        "read_confirmation": yes_no(account.read_confirmation), "force_settings": yes_no(account.force_settings),
        "footer_enabled": yes_no(account.footer_enabled), "host": account.host,
        "port": "" if account.port is None else str(account.port), "secure": yes_no(account.secure),
        "secure_type": account.secure_type or "", "ignore_cert_errors": yes_no(account.ignore_cert_errors),
        "use_auth": yes_no(account.use_auth), "credential": str(account.credential_id or ""),
        "use_connector": yes_no(account.use_connector), "connector": str(account.connector_id or ""),
        "ca_cert": account.ca_cert or "", "helo_name": account.helo_name or "",
    }


@pytest.fixture
def form_world(app):
    """A credential and a connector the form may point at, so valid ids are among the values tried."""
    credential = make_credential(name="Relay login", allowed_hosts="")
    connector = make_connector(name="Office proxy")
    return {"credential": str(credential.id), "connector": str(connector.id)}


@examples(60)
@given(data=st.data())
def test_arbitrary_text_in_the_account_form_is_refused_or_stored_valid(admin, form_world, data):
    valid = account_form(credential=form_world["credential"], connector=form_world["connector"])
    body = {**valid, **data.draw(_field_values(valid), label="fields")}
    before = set(SmtpAccount.select(SmtpAccount.id).tuples())
    response = admin.post("/accounts/new", data=body)
    after = set(SmtpAccount.select(SmtpAccount.id).tuples())
    assert response.status_code in (302, 303, 422), response.status_code
    if response.status_code == 422:
        assert after == before  # nothing saved
        return
    [(new_id,)] = after - before
    stored = SmtpAccount.get_by_id(new_id)
    # The row passes the form's own validation: submitting it unchanged saves it again.
    again = admin.post(f"/accounts/{new_id}/edit", data=_form_of(stored))
    assert again.status_code in (302, 303), again.get_data(as_text=True)[:2000]
    assert _form_of(SmtpAccount.get_by_id(new_id)) == _form_of(stored)


# --- The notification API --------------------------------------------------------------------------------

API_STATUSES = {200, 202, 400, 409, 413, 415, 503}
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ANY_TEXT
JSON_VALUES = st.recursive(JSON_SCALARS, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(SHORT_TEXT, children, max_size=4), max_leaves=8)
API_FIELDS = ("to", "cc", "bcc", "subject", "text", "html", "account", "reply_to", "return_path",
              "confirmation_email", "idempotency_key")
ADDRESSES = st.sampled_from(["ana@example.com", "Ana <ana@example.com>", "ação@exemplo.com.br"]) | ANY_TEXT
FIELD_VALUES = {
    name: (JSON_VALUES | ADDRESSES | st.lists(ADDRESSES, max_size=3)) if name in ("to", "cc", "bcc")
    else (JSON_VALUES | ANY_TEXT) for name in API_FIELDS
}
# Mostly notification-shaped objects (every field optional, any value), sometimes any JSON at all.
PAYLOADS = st.one_of(
    st.fixed_dictionaries({}, optional=FIELD_VALUES),
    st.fixed_dictionaries({"to": ADDRESSES, "subject": ANY_TEXT, "text": ANY_TEXT},
                          optional={k: v for k, v in FIELD_VALUES.items() if k not in ("to", "subject", "text")}),
    JSON_VALUES,
)


@pytest.fixture
def api_token(app, admin):
    make_account(name="Main", is_default=True)
    _row, clear = ApiToken.issue("property tests", created_by=admin.user)
    return clear


@examples(80)
@given(payload=PAYLOADS, idempotency_key=st.none() | SHORT_TEXT.filter(lambda k: k.isprintable()))
@example(payload={"to": "ana@example.com", "subject": "", "text": "", "idempotency_key": [None]},
         idempotency_key=None)  # found by this test: a list as the key reached the SQL query (500)
def test_arbitrary_json_to_the_api_never_yields_a_500(client, api_token, payload, idempotency_key):
    headers = {"Authorization": f"Bearer {api_token}"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    queued = Notification.select().count()
    response = client.post("/api/v1/notifications", data=json.dumps(payload), content_type="application/json",
                           headers=headers, csrf=False)
    assert response.status_code in API_STATUSES, (response.status_code, response.get_data(as_text=True)[:500])
    assert response.is_json
    if response.status_code not in (200, 202):
        assert Notification.select().count() == queued  # a refusal queues nothing


@examples(40)
@given(body=st.binary(max_size=200), content_type=st.sampled_from(
    ["application/json", "application/json; charset=latin-1", "text/plain", "application/x-www-form-urlencoded",
     "multipart/form-data", ""]))
def test_arbitrary_bytes_to_the_api_never_yield_a_500(client, api_token, body, content_type):
    response = client.post("/api/v1/notifications", data=body, content_type=content_type or None,
                           headers={"Authorization": f"Bearer {api_token}"}, csrf=False)
    assert response.status_code in API_STATUSES, (response.status_code, response.get_data(as_text=True)[:500])


# --- Compose ---------------------------------------------------------------------------------------------

MESSAGE_ID = "<20260101.property@example.com>"
ALWAYS = {"From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted"}
MIME = {"MIME-Version", "Content-Type", "Content-Transfer-Encoding"}


def _address(name: str, mailbox: str) -> str:
    """A display name and a mailbox as a user would type them (no quoting done for them)."""
    return f"{name} <{mailbox}>" if name else mailbox


@examples(150)
@given(subject=ANY_TEXT, sender_name=SHORT_TEXT, to_name=SHORT_TEXT, cc_name=st.none() | SHORT_TEXT,
       reply_name=st.none() | SHORT_TEXT, confirmation=st.booleans(), text=ANY_TEXT, html=st.none() | ANY_TEXT,
       footer=st.none() | SHORT_TEXT)
@example(subject=" ", sender_name="", to_name=".", cc_name=None, reply_name=None, confirmation=False, text="",
         html=None, footer=None)  # found by this test: the stdlib parser's AttributeError on ". <a@b>"
def test_compose_refuses_cleanly_or_makes_only_the_headers_asked_for(subject, sender_name, to_name, cc_name,
                                                                    reply_name, confirmation, text, html, footer):
    fields = dict(sender=_address(sender_name, "ops@example.com"), to=[_address(to_name, "ana@example.org")],
                  subject=subject, text=text, html=html, footer=footer, message_id=MESSAGE_ID,
                  date=datetime(2026, 1, 1, tzinfo=timezone.utc))
    expected = set(ALWAYS)
    if cc_name is not None:
        fields["cc"] = [_address(cc_name, "cc@example.org")]
        expected.add("Cc")
    if reply_name is not None:
        fields["reply_to"] = _address(reply_name, "reply@example.org")
        expected.add("Reply-To")
    if confirmation:
        fields["confirmation_email"] = "receipts@example.org"
        expected.add("Disposition-Notification-To")
    try:
        message = compose_notification(**fields)
        raw = message.as_bytes()
    except ValueError:  # an address or subject refused (UnicodeError is a ValueError too)
        return
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    names = list(parsed.keys())
    assert len(names) == len(set(names)), names  # no header twice
    assert set(names) - MIME == expected
    # Same subject; only whitespace at its ends may go (RFC 5322 unfolding drops the space after "Subject:").
    assert str(parsed["Subject"]).strip() == subject.strip()
    # The names a reader sees are the ones meant (but for spaces: in a display name the stdlib's reader keeps the
    # space between two encoded words, which RFC 2047 6.2 drops; tests/test_compose.py reads them as RFC 2047 does),
    # and every line keeps to 78 characters but one holding an address (an addr-spec cannot be encoded or folded).
    for name in ("From", "To", "Cc", "Reply-To"):
        if name in expected:
            meant = [header_address(value) for value in ([fields[FIELDS[name]]] if name in ("From", "Reply-To")
                                                          else fields[FIELDS[name]])]
            assert [("".join(a.display_name.split()), a.addr_spec) for a in parsed[name].addresses] == \
                [("".join(a.display_name.split()), a.addr_spec) for a in meant]
    assert all(len(line) <= 78 or b"@" in line for line in raw.split(b"\r\n\r\n")[0].split(b"\r\n"))
    assert parsed["Message-ID"] == MESSAGE_ID
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only, no bare line feed


FIELDS = {"From": "sender", "To": "to", "Cc": "cc", "Reply-To": "reply_to"}


# --- The worker's direct writing of a plain-text notification ------------------------------------------------

ADDRESSES = st.sampled_from([
    "ana@example.org", "Ana <ana@example.org>", '"Silva, Ana" <ana@example.org>', "José Peña <jose@example.org>",
    "ops@bücher.example", '"a \\"quoted\\" name" <q@example.org>', "x" * 60 + "@example.org",
    "Ünïcödé Nämé Thät Is Rather Long Indeed <long.address.for.folding@subdomain.example.org>",
])
TEXTS = st.one_of(st.text(max_size=400), st.text(alphabet=" .\r\nabcXYZ=-é", max_size=400),
                  st.builds(lambda n: "A line that is just long enough. " * n, st.integers(0, 40)))


@examples(300)
@given(subject=st.one_of(st.text(max_size=120), st.text(alphabet="ab =?QB_\t", max_size=90)), text=TEXTS,
       to=st.lists(ADDRESSES, min_size=1, max_size=3), cc=st.lists(ADDRESSES, max_size=2),
       reply_to=st.none() | ADDRESSES, confirmation=st.none() | ADDRESSES, footer=st.none() | st.text(max_size=80),
       seconds=st.integers(0, 4_000_000_000), sender=ADDRESSES)
@example(subject="Bench 1", text=("Your report is ready. " * 46)[:1000], to=["user@example.com"], cc=[],
         reply_to="r@example.com", confirmation=None, footer=None, seconds=0, sender="Ops <ops@example.com>")
@example(subject="\x850", text="", to=["ana@example.org"], cc=[], reply_to=None, confirmation=None, footer=None,
         seconds=0, sender="ana@example.org")  # NEL: a line break to str.splitlines(), refused as in a header
def test_plain_text_notifications_written_directly_are_the_bytes_compose_notification_writes(
        subject, text, to, cc, reply_to, confirmation, footer, seconds, sender):
    """The worker's direct writer and the EmailMessage path share the header values (_headers()); the header order,
    the MIME headers, the body's transfer encoding and the line ends are the email package's on one side and
    written by hand on the other."""
    fields = dict(sender=sender, to=to, cc=cc, subject=subject, text=text, reply_to=reply_to,
                  confirmation_email=confirmation, footer=footer, message_id=new_message_id(sender),
                  date=datetime.fromtimestamp(seconds, timezone.utc))
    try:
        expected = message_bytes(compose_notification(**fields))
    except ValueError:
        event("refused (control characters in the subject)")
        with pytest.raises(ValueError):
            notification_bytes(**fields)
        return
    event("compared")
    assert notification_bytes(**fields) == expected


# --- Addresses in the simple forms check_address() stores, read without the stdlib's parser ---------------------

ATOM = st.text(alphabet="abcAZ09-_+!=?'`/#$%&*^{|}~áçãéõÜ", min_size=1, max_size=8)
LOCAL_ATOM = st.text(alphabet="abZ09!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=8)


@st.composite
def simple_addresses(draw) -> str:
    local = ".".join(draw(st.lists(LOCAL_ATOM, min_size=1, max_size=3)))
    domain = ".".join(draw(st.lists(ATOM, min_size=1, max_size=3)))
    name = " ".join(draw(st.lists(ATOM, max_size=3)))
    return f"{name} <{local}@{domain}>" if name else f"{local}@{domain}"


@examples(500)
@given(value=simple_addresses() | st.text(alphabet='ab.@<> "(),:;[]\\=?-_áÜ\u00a0\t', min_size=3, max_size=24))
def test_the_simple_address_forms_are_read_as_the_stdlib_parser_reads_them(value):
    simple = _SIMPLE_ADDRESS.fullmatch(value) if "=?" not in value else None
    if simple is None:
        event("left to the parser")
        return
    event("read by the pattern")
    parsed = _parsed_address(value)  # raises if the parser would refuse what the pattern accepts
    assert (simple["name"] or "", simple["local"], simple["domain"]) == \
        (parsed.display_name, parsed.username, parsed.domain)
