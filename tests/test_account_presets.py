"""Provider presets on the account form: every preset is an option that carries what it fills, Apply fills the server
fields without saving anything (pages without JavaScript), a saved account shows its provider, and each provider's
help line says what to use."""
import html
import json
import re
from html.parser import HTMLParser

import pytest

from tests.support.factories import account_form, make_account, make_credential
from webapp.accounts.presets import PRESETS, SES_REGIONS
from webapp.models import AuditEntry, SmtpAccount

HELP = re.compile(r'<small id="provider-help"[^>]*>(.*?)</small>', re.S)


class Options(HTMLParser):
    """The provider select's options, each a dict of its attributes plus its text and the optgroup it is in."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.options, self.inside, self.group = [], False, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "select":
            self.inside = attrs.get("name") == "provider"
        elif self.inside and tag == "optgroup":
            self.group = attrs["label"]
        elif self.inside and tag == "option":
            self.options.append({**attrs, "group": self.group, "text": ""})

    def handle_endtag(self, tag):
        if tag == "optgroup":
            self.group = None
        elif tag == "select":
            self.inside = False

    def handle_data(self, data):
        if self.inside and self.options:
            self.options[-1]["text"] += data


def options_of(text: str) -> dict:
    return {option["value"]: option for option in Options(text).options}


def help_line(text: str) -> str:
    return html.unescape(HELP.search(text).group(1)).strip()


def field_value(text: str, name: str) -> str:
    return html.unescape(re.search(rf'<input[^>]*name="{name}"[^>]*value="([^"]*)"', text).group(1))


def checked(text: str, name: str) -> str:
    return re.search(rf'<input type="radio" name="{name}" value="(\w+)" checked', text).group(1)


def apply(client, url="/accounts/new", **overrides):
    """Press Apply, as a page without JavaScript does."""
    return client.post(url, data=account_form(apply_preset="apply", **overrides))


def counts() -> tuple[int, int]:
    return SmtpAccount.select().count(), AuditEntry.select().count()


# --- The select ---------------------------------------------------------------------------------------------


def test_every_preset_is_an_option_that_carries_what_it_fills(admin):
    text = admin.get("/accounts/new").get_data(as_text=True)
    options = Options(text).options
    assert [option["value"] for option in options] == [preset.key for preset in PRESETS]
    assert options[0] == {"value": "custom", "selected": None, "group": None, "text": "Custom"}
    for preset in PRESETS[1:]:
        option = options_of(text)[preset.key]
        assert option["data-host"] == preset.host and option["data-port"] == "587", preset.key
        assert (option["data-secure"], option["data-secure-type"], option["data-use-auth"]) == ("yes", "tls", "yes")
        assert option["data-kinds"] == " ".join(preset.credential_kinds)
        assert option["data-help"] == preset_help(admin, preset.key)
    assert re.search(r'<label for="provider">Provider</label>', text)
    assert 'aria-describedby="provider-help"' in text
    # The provider heads the server section, the help line is a live region, Apply waits for pages without script.
    assert text.index("<h2>SMTP server settings</h2>") < text.index('id="provider"') < text.index('id="host"')
    assert re.search(r'<small id="provider-help"[^>]*aria-live="polite"', text)
    assert re.search(r'<button type="submit" name="apply_preset" value="apply"[^>]*data-preset-apply>Apply</button>',
                     text)


def preset_help(client, key: str) -> str:
    return help_line(apply(client, provider=key).get_data(as_text=True))


def test_ses_has_an_option_per_region_under_one_group(admin):
    options = options_of(admin.get("/accounts/new").get_data(as_text=True))
    ses = {key: option for key, option in options.items() if key.startswith("ses-")}
    assert [key.removeprefix("ses-") for key in ses] == [code for code, _name in SES_REGIONS]
    assert {option["group"] for option in ses.values()} == {"Amazon SES (region)"}
    assert ses["ses-sa-east-1"]["data-host"] == "email-smtp.sa-east-1.amazonaws.com"
    assert ses["ses-sa-east-1"]["text"] == "Amazon SES · South America (São Paulo) · sa-east-1"
    assert options["mailgun-eu"]["data-host"] == "smtp.eu.mailgun.org" and options["mailgun-eu"]["group"] is None


def test_the_first_submit_button_saves_so_that_enter_never_applies_a_preset(admin):
    text = admin.get("/accounts/new").get_data(as_text=True)
    first = re.search(r'<form id="account-form".*?(<button type="submit"[^>]*>)', text, re.S).group(1)
    assert "name=" not in first and 'formaction="/accounts/new?next=/accounts/"' in first and "hidden" in first


# --- Apply (without JavaScript) -----------------------------------------------------------------------------


def test_apply_fills_the_server_fields_keeps_the_rest_and_saves_nothing(admin):
    before = counts()
    response = apply(admin, provider="sendgrid", name="Newsletter", host="typed.example.com", port="2525",
                     secure="no", secure_type="ssl", use_auth="no", helo_name="mail.example.org")
    text = response.get_data(as_text=True)
    assert response.status_code == 200
    assert (field_value(text, "host"), field_value(text, "port")) == ("smtp.sendgrid.net", "587")
    assert (checked(text, "secure"), checked(text, "secure_type"), checked(text, "use_auth")) == ("yes", "tls", "yes")
    assert field_value(text, "name") == "Newsletter" and field_value(text, "helo_name") == "mail.example.org"
    assert "selected" in options_of(text)["sendgrid"]  # the preset stays chosen
    assert "literally apikey" in help_line(text)
    # Nothing checked: the credential this preset's authentication needs is not asked for yet.
    assert 'class="field-error"' not in text and 'role="alert"' not in text
    assert counts() == before


def test_apply_on_an_edit_page_leaves_the_account_as_it_was(admin):
    account = make_account(name="Relay", host="relay.example.com", port=25)
    before = counts()
    text = apply(admin, f"/accounts/{account.id}/edit", provider="postmark", name="Relay renamed").get_data(
        as_text=True)
    assert field_value(text, "host") == "smtp.postmarkapp.com" and field_value(text, "name") == "Relay renamed"
    assert counts() == before
    saved = SmtpAccount.get_by_id(account.id)
    assert (saved.name, saved.host, saved.port) == ("Relay", "relay.example.com", 25)


def test_apply_over_htmx_answers_with_the_form_alone(admin):
    response = admin.htmx("post", "/accounts/new", data=account_form(apply_preset="apply", provider="brevo"))
    text = response.get_data(as_text=True)
    assert response.status_code == 200
    assert text.lstrip().startswith('<form id="account-form"') and "<html" not in text
    assert field_value(text, "host") == "smtp-relay.brevo.com"


@pytest.mark.parametrize("provider", ["custom", "no-such-provider"])
def test_apply_with_custom_fills_nothing(admin, provider):
    text = apply(admin, provider=provider, host="typed.example.com", port="2525", secure="no").get_data(as_text=True)
    assert (field_value(text, "host"), field_value(text, "port"), checked(text, "secure")) == (
        "typed.example.com", "2525", "no")
    assert help_line(text) == ""


def test_what_is_saved_is_what_the_fields_say_not_the_preset(admin):
    response = admin.post("/accounts/new", data=account_form(name="Own port", provider="sendgrid",
                                                              host="relay.example.com", port="2525", secure="no"))
    assert response.status_code == 303
    account = SmtpAccount.get(SmtpAccount.name == "Own port")
    assert (account.host, account.port, account.secure) == ("relay.example.com", 2525, False)


# --- A saved account ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host, key", [
    ("smtp.office365.com", "microsoft365"),
    ("smtp.gmail.com", "gmail"),
    ("email-smtp.eu-west-1.amazonaws.com", "ses-eu-west-1"),
    ("email-smtp.sa-east-1.amazonaws.com", "ses-sa-east-1"),
    ("smtp.mailgun.org", "mailgun-us"),
    ("smtp.eu.mailgun.org", "mailgun-eu"),
    ("smtp.zoho.eu", "zoho"),
    ("smtppro.zoho.com", "zoho"),
    ("smtp.example.com", "custom"),
    ("email-smtp.mars-north-1.amazonaws.com", "custom"),
])
def test_the_edit_page_shows_the_provider_whose_host_the_account_has(admin, host, key):
    account = make_account(host=host)
    text = admin.get(f"/accounts/{account.id}/edit").get_data(as_text=True)
    selected = [value for value, option in options_of(text).items() if "selected" in option]
    assert selected == [key]
    assert (help_line(text) != "") == (key != "custom")


# --- The help line --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key, says", [
    ("microsoft365", ["Basic authentication", "Authenticated SMTP",
                      "Expected credential: OAuth 2.0 — client credentials or OAuth 2.0 — refresh token"]),
    ("gmail", ["“Connect with the provider”", "domain-wide delegation", "https://mail.google.com/", "app password",
               "Expected credential: OAuth 2.0 — refresh token, OAuth 2.0 — service account (JWT), or Username and "
               "password"]),
    ("ses-us-east-1", ["SES console", "not IAM access keys", "Expected credential: Username and password"]),
    ("sendgrid", ["literally apikey", "Mail Send permission"]),
    ("mailgun-us", ["SMTP credentials from the sending domain's settings", "not the API key"]),
    ("mailgun-eu", ["SMTP credentials from the sending domain's settings"]),
    ("postmark", ["both the server's Server API token"]),
    ("brevo", ["SMTP login", "SMTP key, not the account's password"]),
    ("zoho", ["app-specific password", "smtppro.zoho.com", "smtp.zoho.eu"]),
])
def test_each_provider_says_what_to_use(admin, key, says):
    line = preset_help(admin, key)
    for words in says:
        assert words in line, (key, words)


def test_credentials_of_the_expected_type_say_so(admin):
    login = make_credential(name="Relay login")
    for provider, marked in (("sendgrid", True), ("microsoft365", False), ("custom", False)):
        text = apply(admin, provider=provider, use_auth="yes").get_data(as_text=True)
        label = "Relay login (expected type)" if marked else "Relay login"
        assert re.search(rf'<option value="{login.id}">{re.escape(label)}</option>', text), provider
    # The script marks them too, from each credential's name and type (every one a password until the vault has
    # types: Credential.kind is read where it exists).
    text = admin.get("/accounts/new").get_data(as_text=True)
    credentials = json.loads(html.unescape(re.search(r'data-credentials="([^"]*)"', text).group(1)))
    assert credentials == {str(login.id): {"name": "Relay login", "kind": "password"}}
    assert 'data-expected-label="{name} (expected type)"' in text


# --- Portuguese ---------------------------------------------------------------------------------------------------


def test_the_provider_select_speaks_portuguese(admin):
    """Needs the pt-BR catalog entries of the presets (listed in the branch's report)."""
    admin.use_language("pt_BR")
    text = admin.get("/accounts/new").get_data(as_text=True)
    assert '<label for="provider">Provedor</label>' in text
    assert Options(text).options[0]["text"] == "Personalizado"
    assert ">Aplicar</button>" in text
    options = options_of(text)
    assert options["ses-sa-east-1"]["group"] == "Amazon SES (região)"
    assert options["ses-sa-east-1"]["text"] == "Amazon SES · América do Sul (São Paulo) · sa-east-1"
    line = preset_help(admin, "sendgrid")
    assert "literalmente apikey" in line and line.endswith("Credencial esperada: Usuário e senha")
    assert preset_help(admin, "microsoft365").endswith(
        "Credencial esperada: OAuth 2.0 — credenciais do cliente ou OAuth 2.0 — refresh token")
