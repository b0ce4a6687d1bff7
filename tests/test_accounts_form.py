"""The add / edit account form: every field and rule of DESIGN.md, the default account, the audit."""
import re

import pytest

from tests.support.factories import account_form, make_account, make_connector, make_credential
from webapp.models import AuditEntry, SmtpAccount

LABELS = [
    "Account name", "Enabled", "Sender e-mail", "Reply-To e-mail", "Return-Path e-mail", "Confirmation e-mail",
    "Default account", "Send read confirmation", "Force settings use", "Enable footer", "SMTP host", "Port",
    "Use secure connection?", "Secure connection type (SSL / TLS)", "Use authentication?",
    "Ignore certificate error", "Use network connector?", "Network connector", "Credential for authentication",
]
YES_NO_FIELDS = ["enabled", "is_default", "read_confirmation", "force_settings", "footer_enabled", "secure",
                 "ignore_cert_errors", "use_auth", "use_connector"]


def field_error(response, name) -> str | None:
    """The error shown beside a field, or None."""
    match = re.search(rf'<small class="field-error" id="{name}-error">(.*?)</small>', response.get_data(as_text=True),
                      re.S)
    return match.group(1).strip() if match else None


def wrapper(text, name) -> str:
    """The opening tag of a field's wrapper (div or fieldset)."""
    return re.search(rf'<(?:div|fieldset) class="field[^"]*" id="{name}-field"[^>]*>', text, re.S).group(0)


def post_new(client, htmx=False, **overrides):
    data = account_form(**overrides)
    if htmx:
        return client.htmx("post", "/accounts/new", data=data)
    return client.post("/accounts/new", data=data)


# --- The page ---------------------------------------------------------------------------------------------


def test_new_account_form_has_every_label_in_two_sections(admin):
    response = admin.get("/accounts/new")
    text = response.get_data(as_text=True)
    assert response.status_code == 200
    for label in LABELS:
        assert re.search(rf"<(label|legend)[^>]*>{re.escape(label)}</(label|legend)>", text), label
    assert "<h2>Account</h2>" in text and "<h2>SMTP server settings</h2>" in text
    assert text.index("<h2>Account</h2>") < text.index("Account name") < text.index("<h2>SMTP server settings</h2>")
    assert text.index("<h2>SMTP server settings</h2>") < text.index("SMTP host")
    assert '<button type="submit">Submit</button>' in text
    # Each yes/no is a radio group (Yes / No) whose legend is the label.
    for name in YES_NO_FIELDS:
        assert re.search(rf'<fieldset class="field yesno" id="{name}-field"', text), name
        assert f'<input type="radio" name="{name}" value="yes"' in text
        assert f'<input type="radio" name="{name}" value="no"' in text
    # Enabled defaults to yes, everything else to no.
    assert re.search(r'name="enabled" value="yes" checked', text)
    assert re.search(r'name="ignore_cert_errors" value="no" checked', text)
    # Help texts say what the addresses are for.
    assert "envelope sender" in text and "Read receipts go here" in text


def test_conditional_fields_follow_their_yes_no_and_start_hidden_when_not_applicable(admin):
    text = admin.get("/accounts/new").get_data(as_text=True)
    for name, rule in [("secure_type", "secure=yes"), ("ignore_cert_errors", "secure=yes"),
                       ("credential", "use_auth=yes"), ("connector", "use_connector=yes")]:
        tag = wrapper(text, name)
        assert f'data-show-when="{rule}"' in tag, name
        assert " hidden" in tag, name
    assert re.search(r'<input[^>]*data-port-placeholder[^>]*placeholder="25"', text)
    warning = re.search(r'<p class="form-warning"[^>]*>', text, re.S).group(0)
    assert 'data-show-when="use_auth=yes&amp;secure=no"' in warning and "hidden" in warning


def test_conditional_fields_are_shown_when_their_setting_is_yes(admin):
    credential = make_credential()
    account = make_account(secure=True, secure_type="ssl", use_auth=True, credential=credential,
                           use_connector=True, connector=make_connector(name="hop"))
    text = admin.get(f"/accounts/{account.id}/edit").get_data(as_text=True)
    for name in ("secure_type", "ignore_cert_errors", "credential", "connector"):
        assert " hidden" not in wrapper(text, name), name
    assert re.search(r'<input[^>]*data-port-placeholder[^>]*placeholder="465"', text)
    assert re.search(rf'<option selected value="{credential.id}">', text)
    assert re.search(rf'<option selected value="{account.connector_id}">hop</option>', text)


def test_auth_without_secure_connection_shows_a_warning_but_saves(admin):
    credential = make_credential()
    response = post_new(admin, htmx=True, name="clear auth", secure="no", use_auth="yes",
                        credential=str(credential.id), port="abc")
    warning = re.search(r'<p class="form-warning"[^>]*>', response.get_data(as_text=True), re.S).group(0)
    assert "hidden" not in warning
    assert "clear text" in response.get_data(as_text=True)
    # Only a warning: with a valid port the same form is saved.
    response = post_new(admin, name="clear auth", secure="no", use_auth="yes", credential=str(credential.id))
    assert response.status_code == 303
    assert SmtpAccount.get(SmtpAccount.name == "clear auth").use_auth


def test_credential_select_shows_names_and_never_a_secret(admin):
    credential = make_credential(name="Mailer login", secret="Top-Secret-Vault-123")
    make_account(use_auth=True, credential=credential)
    for url in ("/accounts/new", f"/accounts/{credential.accounts.get().id}/edit"):
        text = admin.get(url).get_data(as_text=True)
        assert f'<option value="{credential.id}">Mailer login</option>' in text or \
            f'<option selected value="{credential.id}">Mailer login</option>' in text
        assert "Top-Secret-Vault-123" not in text
        assert credential.secret_encrypted not in text
        assert credential.username not in text


def test_connector_empty_choice_names_the_system_default(admin):
    text = admin.get("/accounts/new").get_data(as_text=True)
    assert '<option selected value="">System default connector (none set)</option>' in text
    make_connector(name="office hop", is_default=True)
    text = admin.get("/accounts/new").get_data(as_text=True)
    assert '<option selected value="">System default connector (office hop)</option>' in text


# --- Saving -----------------------------------------------------------------------------------------------


def test_a_valid_form_creates_the_account_audits_it_and_returns_to_the_report(admin):
    make_account(is_default=True)
    credential = make_credential(allowed_hosts="*.example.com")
    response = post_new(admin, name="  Billing  ", sender="Billing Team <billing@example.com>",
                        reply_to="help@example.com", read_confirmation="yes", force_settings="yes",
                        footer_enabled="yes", host="SMTP.Example.com.", port="2525", secure="yes",
                        secure_type="ssl", ignore_cert_errors="yes", use_auth="yes", credential=str(credential.id))

    assert response.status_code == 303
    assert response.headers["Location"] == "/accounts/"
    account = SmtpAccount.get(SmtpAccount.name == "Billing")
    assert account.sender == "Billing Team <billing@example.com>"
    assert (account.host, account.port, account.mode, account.ignore_cert_errors) == ("smtp.example.com", 2525,
                                                                                      "ssl", True)
    assert (account.read_confirmation, account.force_settings, account.footer_enabled) == (True, True, True)
    assert account.credential_id == credential.id
    assert account.enabled and not account.is_default
    assert "Account “Billing” created." in admin.get("/accounts/").get_data(as_text=True)
    entry = AuditEntry.get(AuditEntry.action == "create")
    assert entry.object_id == account.id and entry.object_name == "Billing"
    assert entry.changes["name"] == [None, "Billing"]
    assert entry.changes["credential"] == [None, credential.id]
    assert entry.actor_name == admin.user.username


def test_htmx_success_answers_with_hx_redirect(admin):
    response = post_new(admin, htmx=True, name="via htmx")
    assert response.status_code == 200
    assert response.headers["HX-Redirect"] == "/accounts/"
    assert SmtpAccount.get(SmtpAccount.name == "via htmx")


def test_saving_returns_to_the_filtered_report_it_came_from(admin):
    make_account(is_default=True)
    account = make_account(name="keep filter")
    data = account_form(name="keep filter")
    response = admin.post(f"/accounts/{account.id}/edit?next=/accounts/%3Fname%3Dkeep", data=data)
    assert response.headers["Location"] == "/accounts/?name=keep"
    response = admin.post(f"/accounts/{account.id}/edit?next=https://evil.example/", data=data)
    assert response.headers["Location"] == "/accounts/"


def test_settings_made_irrelevant_by_a_no_are_not_stored(admin):
    credential = make_credential()
    connector = make_connector()
    post_new(admin, name="plain", secure="no", secure_type="ssl", ignore_cert_errors="yes",
             use_auth="no", credential=str(credential.id), use_connector="no", connector=str(connector.id))
    account = SmtpAccount.get(SmtpAccount.name == "plain")
    assert (account.secure, account.secure_type, account.ignore_cert_errors) == (False, None, False)
    assert (account.use_auth, account.credential_id) == (False, None)
    assert (account.use_connector, account.connector_id) == (False, None)
    assert account.effective_port == 25


def test_edit_form_is_prefilled_and_saves_only_what_changed_into_the_audit(admin):
    make_account(is_default=True)
    account = make_account(name="edit me", port=587, secure=True, secure_type="tls")
    text = admin.get(f"/accounts/{account.id}/edit").get_data(as_text=True)
    assert 'value="edit me"' in text and 'value="587"' in text
    assert re.search(r'name="secure_type" value="tls" checked', text)

    data = account_form(name="edited", sender=account.sender, reply_to=account.reply_to,
                        return_path=account.return_path, confirmation_email=account.confirmation_email,
                        host=account.host, port="587", secure="yes", secure_type="tls")
    response = admin.post(f"/accounts/{account.id}/edit", data=data)

    assert response.status_code == 303
    assert SmtpAccount.get_by_id(account.id).name == "edited"
    entry = AuditEntry.get(AuditEntry.action == "update")
    assert entry.changes == {"name": ["edit me", "edited"]}
    assert "Account “edited” saved." in admin.get("/accounts/").get_data(as_text=True)


def test_editing_a_missing_account_is_404(admin):
    assert admin.get("/accounts/999/edit").status_code == 404
    assert admin.post("/accounts/999/edit", data=account_form()).status_code == 404


# --- Validation: errors beside fields, nothing saved --------------------------------------------------------


def test_invalid_form_with_htmx_answers_422_with_the_form_fragment(admin):
    count = SmtpAccount.select().count()
    response = post_new(admin, htmx=True, name="", port="70000")
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    assert "<html" not in text
    assert text.lstrip().startswith('<form id="account-form"')
    assert 'hx-target="this"' in text and 'hx-swap="outerHTML"' in text
    assert "Nothing was saved. Correct the fields marked below." in text
    assert field_error(response, "name") == "This field is required."
    assert field_error(response, "port") == "Enter a port number from 1 to 65535."
    assert 'aria-invalid="true"' in text
    assert SmtpAccount.select().count() == count


def test_invalid_form_without_javascript_answers_422_with_the_whole_page(admin):
    response = post_new(admin, name="")
    assert response.status_code == 422
    assert "<html" in response.get_data(as_text=True)
    assert field_error(response, "name") == "This field is required."
    assert SmtpAccount.select().count() == 0
    assert not AuditEntry.select().where(AuditEntry.object_type == "smtp_account").exists()


def test_an_invalid_edit_changes_nothing(admin):
    account = make_account(name="untouched")
    before = account.audit_snapshot()
    response = admin.post(f"/accounts/{account.id}/edit", data=account_form(name="renamed", host="bad host"))
    assert response.status_code == 422
    assert SmtpAccount.get_by_id(account.id).audit_snapshot() == before


@pytest.mark.parametrize("name,error", [
    ("", "This field is required."),
    ("x" * 101, "Use at most 100 characters."),
    ("Ops\r\nBcc: victim@example.com", "Line breaks and control characters are not allowed here."),
    ("Ops\nX", "Line breaks and control characters are not allowed here."),
    ("tab\there", "Line breaks and control characters are not allowed here."),
])
def test_account_name_rules(admin, name, error):
    response = post_new(admin, name=name)
    assert response.status_code == 422
    assert field_error(response, "name") == error
    assert SmtpAccount.select().count() == 0


def test_account_name_is_unique_ignoring_case(admin):
    make_account(name="Billing Ação")
    response = post_new(admin, name="billing AÇÃO")
    assert field_error(response, "name") == "Another account already has this name."
    assert SmtpAccount.select().count() == 1
    assert post_new(admin, name="x" * 100).status_code == 303


def test_an_account_keeps_its_own_name_when_edited(admin):
    account = make_account(name="Same")
    response = admin.post(f"/accounts/{account.id}/edit", data=account_form(name="SAME"))
    assert response.status_code == 303
    assert SmtpAccount.get_by_id(account.id).name == "SAME"


ADDRESS_FIELDS = ["sender", "reply_to", "return_path", "confirmation_email"]
INVALID_ADDRESSES = [
    "",
    "a@b@c",
    "a <b>",
    "a, b",
    "@",
    "to@",
    "ops@example.com\r\nBcc: victim@example.com",
    "ops@exam\nple.com",
    "ops\x00@example.com",
    "Ops\r\n <ops@example.com>",
    "a" * 64 + "@" + ".".join(["b" * 60] * 4) + ".com",  # > 254 characters
]


@pytest.mark.parametrize("name", ADDRESS_FIELDS)
@pytest.mark.parametrize("value", INVALID_ADDRESSES)
def test_security_20_invalid_addresses_are_refused_beside_their_field(admin, name, value):
    response = post_new(admin, **{name: value})
    assert response.status_code == 422
    assert field_error(response, name)
    assert SmtpAccount.select().count() == 0


@pytest.mark.parametrize("value,stored", [
    ("Ops <ops@example.com>", "Ops <ops@example.com>"),
    ('"Ops, Night Shift" <ops@example.com>', '"Ops, Night Shift" <ops@example.com>'),
    ("ops@bücher.example", "ops@bücher.example"),
    ("José <jose@exämple.com.br>", "José <jose@exämple.com.br>"),
])
def test_display_names_and_international_domains_are_accepted(admin, value, stored):
    response = post_new(admin, name="idn", sender=value, reply_to=value, return_path=value, confirmation_email=value)
    assert response.status_code == 303, field_error(response, "sender")
    account = SmtpAccount.get(SmtpAccount.name == "idn")
    assert account.sender == stored
    assert account.confirmation_email == stored


@pytest.mark.parametrize("host", ["", "smtp example.com", "$(reboot)", "smtp.example.com\nrcpt", "smtp\r.x",
                                  "-bad-.example", "a..b", "smtp.example.com;rm"])
def test_security_22_invalid_hosts_are_refused(admin, host):
    response = post_new(admin, host=host)
    assert response.status_code == 422
    assert field_error(response, "host")
    assert SmtpAccount.select().count() == 0


@pytest.mark.parametrize("host,stored", [("192.0.2.10", "192.0.2.10"), ("[2001:db8::1]", "2001:db8::1"),
                                         ("Mail.Example.COM", "mail.example.com"), ("smtp.bücher.example",
                                                                                    "smtp.bücher.example")])
def test_host_names_and_ip_literals_are_accepted(admin, host, stored):
    assert post_new(admin, name="host", host=host).status_code == 303
    assert SmtpAccount.get(SmtpAccount.name == "host").host == stored


def test_security_31_the_form_reads_an_international_host_name_as_the_connection_does(admin):
    # IDNA 2003 (Python's codec) gave ☃ an A-label; IDNA 2008, which the connection uses, has no name with it.
    response = post_new(admin, host="☃.example")
    assert response.status_code == 422
    assert field_error(response, "host")
    assert SmtpAccount.select().count() == 0
    assert post_new(admin, name="idn", host="Faß.example").status_code == 303
    assert SmtpAccount.get(SmtpAccount.name == "idn").host == "faß.example"


@pytest.mark.parametrize("host,stored", [("2852039166", "169.254.169.254"), ("0251.0376.0251.0376", "169.254.169.254"),
                                         ("169.254.43518", "169.254.169.254"), ("0xA9FEA9FE", "169.254.169.254"),
                                         ("[::ffff:169.254.169.254]", "::ffff:a9fe:a9fe")])
def test_an_address_in_another_spelling_is_stored_as_resolvers_read_it(admin, host, stored):
    """What the outbound policy checks and the report shows is the address a proxy would connect to."""
    assert post_new(admin, name="numeric", host=host).status_code == 303
    assert SmtpAccount.get(SmtpAccount.name == "numeric").host == stored


@pytest.mark.parametrize("host", ["169.254.169.254.", "1.2.3.4.5", "999.1.1.1", "0x", "smtp.123"])
def test_a_host_that_only_looks_like_an_address_is_a_field_error(admin, host):
    response = post_new(admin, host=host)
    assert response.status_code == 422
    assert field_error(response, "host") == ("This is neither a host name nor an IP address written the usual way: "
                                             "write an IPv4 address as four numbers from 0 to 255, such as "
                                             "192.0.2.10.")
    assert SmtpAccount.select().count() == 0


@pytest.mark.parametrize("port", ["0", "70000", "abc", "-1", "65536", "1.5", "99999999"])
def test_security_22_invalid_ports_are_refused(admin, port):
    response = post_new(admin, port=port)
    assert response.status_code == 422
    assert field_error(response, "port") == "Enter a port number from 1 to 65535."
    assert SmtpAccount.select().count() == 0


@pytest.mark.parametrize("port,stored", [("", None), ("1", 1), ("65535", 65535), (" 2525 ", 2525)])
def test_port_is_optional_within_1_to_65535(admin, port, stored):
    assert post_new(admin, name="port", port=port).status_code == 303
    assert SmtpAccount.get(SmtpAccount.name == "port").port == stored


@pytest.mark.parametrize("secure_type", ["", "starttls", "none"])
def test_secure_connection_needs_ssl_or_tls(admin, secure_type):
    response = post_new(admin, secure="yes", secure_type=secure_type)
    assert field_error(response, "secure_type") == "Choose SSL or TLS."
    assert SmtpAccount.select().count() == 0


def test_yes_no_fields_accept_only_yes_or_no(admin):
    response = post_new(admin, secure="maybe")
    assert response.status_code == 422
    assert field_error(response, "secure") == "Choose Yes or No."


# --- Credential and connector rules -----------------------------------------------------------------------


def test_authentication_needs_a_credential(admin):
    response = post_new(admin, use_auth="yes", credential="")
    assert field_error(response, "credential") == "Choose the credential to log in with."
    response = post_new(admin, use_auth="yes", credential="999")
    assert field_error(response, "credential") == "Choose a credential from the list."
    response = post_new(admin, use_auth="yes", credential="not-a-number")
    assert field_error(response, "credential")
    assert SmtpAccount.select().count() == 0


def test_security_7_a_credential_restricted_to_other_hosts_is_refused(admin):
    credential = make_credential(allowed_hosts="smtp.partner.example\n*.mail.example")
    response = post_new(admin, host="smtp.attacker.example", use_auth="yes", credential=str(credential.id))
    assert response.status_code == 422
    assert "may not be sent to smtp.attacker.example" in field_error(response, "credential")
    assert SmtpAccount.select().count() == 0

    for host in ("smtp.partner.example", "out.mail.example"):
        response = post_new(admin, name=host, host=host, use_auth="yes", credential=str(credential.id))
        assert response.status_code == 303, host
    # "*.mail.example" covers sub-domains, not mail.example itself.
    response = post_new(admin, host="mail.example", use_auth="yes", credential=str(credential.id))
    assert field_error(response, "credential")


def test_the_host_restriction_is_checked_when_only_the_host_changes(admin):
    credential = make_credential(allowed_hosts="smtp.example.com")
    account = make_account(host="smtp.example.com", use_auth=True, credential=credential)
    response = admin.post(f"/accounts/{account.id}/edit",
                          data=account_form(host="smtp.other.example", use_auth="yes", credential=str(credential.id)))
    assert response.status_code == 422
    assert field_error(response, "credential")
    assert SmtpAccount.get_by_id(account.id).host == "smtp.example.com"


def test_connector_empty_choice_needs_a_system_default(admin):
    response = post_new(admin, use_connector="yes", connector="")
    assert "No system default connector is set" in field_error(response, "connector")
    assert post_new(admin, use_connector="yes", connector="999").status_code == 422
    assert SmtpAccount.select().count() == 0

    default = make_connector(is_default=True)
    assert post_new(admin, name="via default", use_connector="yes", connector="").status_code == 303
    account = SmtpAccount.get(SmtpAccount.name == "via default")
    assert account.connector_id is None and account.effective_connector().id == default.id

    chosen = make_connector()
    assert post_new(admin, name="via chosen", use_connector="yes", connector=str(chosen.id)).status_code == 303
    assert SmtpAccount.get(SmtpAccount.name == "via chosen").connector_id == chosen.id


# --- The default account ----------------------------------------------------------------------------------


def test_the_first_enabled_account_becomes_the_default_and_the_flash_says_so(admin):
    post_new(admin, name="disabled first", enabled="no")
    assert SmtpAccount.default() is None
    post_new(admin, name="first enabled")
    assert SmtpAccount.default().name == "first enabled"
    text = admin.get("/accounts/").get_data(as_text=True)
    assert "“first enabled” is the default account, as there was none." in text
    post_new(admin, name="second")
    assert SmtpAccount.default().name == "first enabled"


def test_making_a_new_account_default_undefaults_the_previous_one(admin):
    old = make_account(is_default=True)
    response = post_new(admin, name="new default", is_default="yes")
    assert response.status_code == 303
    defaults = list(SmtpAccount.select().where(SmtpAccount.is_default == True))  # noqa: E712
    assert [a.name for a in defaults] == ["new default"]
    entries = list(AuditEntry.select().order_by(AuditEntry.id))
    assert [(e.action, e.object_id) for e in entries[-2:]] == [("create", defaults[0].id), ("update", old.id)]
    assert entries[-2].changes["is_default"] == [None, True]
    assert entries[-1].changes == {"is_default": [True, False]}


def test_editing_an_account_into_the_default(admin):
    old = make_account(is_default=True)
    account = make_account(name="promoted")
    response = admin.post(f"/accounts/{account.id}/edit", data=account_form(name="promoted", is_default="yes"))
    assert response.status_code == 303
    assert SmtpAccount.default().id == account.id
    assert not SmtpAccount.get_by_id(old.id).is_default


def test_the_default_account_must_be_enabled(admin):
    make_account(is_default=True)
    response = post_new(admin, is_default="yes", enabled="no")
    assert field_error(response, "is_default") == "Only an enabled account can be the default."
    assert SmtpAccount.select().count() == 1


def test_the_current_default_cannot_be_unset_or_disabled_through_the_form(admin):
    default = make_account(name="main", is_default=True)
    response = admin.post(f"/accounts/{default.id}/edit", data=account_form(name="main", is_default="no"))
    assert response.status_code == 422
    assert "make another account the default" in field_error(response, "is_default")

    response = admin.post(f"/accounts/{default.id}/edit", data=account_form(name="main", is_default="yes",
                                                                           enabled="no"))
    assert response.status_code == 422
    assert "cannot be disabled" in field_error(response, "enabled")

    current = SmtpAccount.get_by_id(default.id)
    assert current.is_default and current.enabled
    assert admin.post(f"/accounts/{default.id}/edit",
                      data=account_form(name="main", is_default="yes")).status_code == 303


def test_the_default_account_cannot_be_deleted(admin):
    default = make_account(name="main", is_default=True)
    text = admin.get(f"/accounts/{default.id}/edit").get_data(as_text=True)
    assert "The default account cannot be deleted." in text
    assert f'action="/accounts/{default.id}/delete"' not in text

    response = admin.post(f"/accounts/{default.id}/delete")
    assert response.status_code == 303
    assert "cannot be deleted" in admin.get(response.headers["Location"]).get_data(as_text=True)
    assert SmtpAccount.get_or_none(SmtpAccount.id == default.id)


def test_deleting_an_account_asks_first_and_is_audited(admin):
    make_account(is_default=True)
    account = make_account(name="old relay")
    text = admin.get(f"/accounts/{account.id}/edit").get_data(as_text=True)
    form = re.search(rf'<form method="post" action="/accounts/{account.id}/delete"[^>]*>', text, re.S).group(0)
    assert 'data-confirm="Delete the account “old relay”? This cannot be undone."' in form

    response = admin.post(f"/accounts/{account.id}/delete")
    assert response.status_code == 303 and response.headers["Location"] == "/accounts/"
    assert SmtpAccount.get_or_none(SmtpAccount.id == account.id) is None
    entry = AuditEntry.get(AuditEntry.action == "delete")
    assert (entry.object_id, entry.object_name) == (account.id, "old relay")
    assert entry.changes["name"] == ["old relay", None]
    assert "Account “old relay” deleted." in admin.get("/accounts/").get_data(as_text=True)
    assert admin.get(f"/accounts/{account.id}/delete").status_code == 405


def test_the_form_needs_the_csrf_token(admin):
    response = admin.post("/accounts/new", data=account_form(), csrf=False)
    assert response.status_code == 400
    assert SmtpAccount.select().count() == 0
