"""Brazilian Portuguese is the default UI language: the catalog is complete, current, and the DESIGN labels render."""
import html
import re
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from flask_babel import force_locale

from tests.support.factories import account_form, make_account

ROOT = Path(__file__).resolve().parent.parent
CATALOG_DIR = ROOT / "webapp" / "translations" / "pt_BR" / "LC_MESSAGES"
HOW_TO_FIX = ("run `make extract-messages`, translate the entries in "
              "webapp/translations/pt_BR/LC_MESSAGES/messages.po, then `make translations`")
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]")

# DESIGN.md "Labels": (pt_BR, English) as the account form shows them.
FORM_LABELS = [
    ("Nome da conta", "Account name"),
    ("Ativo", "Enabled"),
    ("E-mail do Remetente", "Sender e-mail"),
    ("E-mail de resposta (Reply-To)", "Reply-To e-mail"),
    ("E-mail de retorno (Return-Path)", "Return-Path e-mail"),
    ("E-mail de confirmação", "Confirmation e-mail"),
    ("Conta padrão", "Default account"),
    ("Enviar confirmação de leitura", "Send read confirmation"),
    ("Obrigar o uso da configuração", "Force settings use"),
    ("Habilitar rodapé", "Enable footer"),
    ("Host SMTP", "SMTP host"),
    ("Porta", "Port"),
    ("Usar conexão segura?", "Use secure connection?"),
    ("Tipo de conexão segura (SSL / TLS)", "Secure connection type (SSL / TLS)"),
    ("Usar autenticação?", "Use authentication?"),
    ("Ignorar erro de certificado", "Ignore certificate error"),
    ("Usar Network Connector?", "Use network connector?"),
    ("Network Connector", "Network connector"),
    ("Credencial para autenticação", "Credential for authentication"),
]
# The Test Email dialog's labels: (pt_BR, English).
DIALOG_LABELS = [("Enviar para", "Send to"), ("Assunto", "Subject"), ("Mensagem", "Message")]


def read_catalog():
    with open(CATALOG_DIR / "messages.po", "rb") as f:
        return read_po(f, locale="pt_BR")


def messages(catalog):
    return [m for m in catalog if m.id]


def translations_of(message) -> list[str]:
    return list(message.string) if message.pluralizable else [message.string]


def originals_of(message) -> list[str]:
    return list(message.id) if message.pluralizable else [message.id]


def label_texts(html: str) -> set[str]:
    """The text of every <label> and <legend> (the fields' accessible names)."""
    return {" ".join(re.sub(r"<[^>]+>", "", text).split())
            for text in re.findall(r"<(?:label|legend)[^>]*>(.*?)</(?:label|legend)>", html, re.S)}


# --- The catalog -------------------------------------------------------------------------------------------


def test_every_entry_is_translated_and_none_is_fuzzy():
    catalog = read_catalog()
    # CLDR makes 0 singular in Portuguese ("0 conta"), which reads wrong: 0 takes the plural, as in English.
    assert catalog.num_plurals == 2 and catalog.plural_expr == "(n != 1)"
    fuzzy = [m.id for m in messages(catalog) if m.fuzzy]
    untranslated = [m.id for m in messages(catalog) if not all(translations_of(m))]
    assert not fuzzy, f"fuzzy pt_BR entries (check them, then remove the fuzzy flag): {fuzzy}"
    assert not untranslated, f"untranslated pt_BR entries: {untranslated}; {HOW_TO_FIX}"


def test_translations_keep_their_placeholders():
    for message in messages(read_catalog()):
        expected = sorted(PLACEHOLDER.findall(originals_of(message)[-1]))
        for text in translations_of(message):
            assert sorted(PLACEHOLDER.findall(text)) == expected, (message.id, text)


def test_the_catalog_holds_every_ui_string_of_the_source():
    with open(ROOT / "babel.cfg") as f:
        method_map, options_map = parse_mapping_cfg(f)
    # The same keywords as `make extract-messages`.
    keywords = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None, "lazy_ngettext": (1, 2), "N_": None}
    found = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
            str(ROOT), method_map, options_map, keywords=keywords):
        singular = message[0] if isinstance(message, tuple) else message
        if singular:
            found.setdefault(singular, f"{filename}:{lineno}")
    catalog = read_catalog()
    assert len(found) > 200  # the extraction did look at the templates and the Python code
    missing = [f"{msgid!r} ({where})" for msgid, where in found.items() if catalog.get(msgid) is None]
    assert not missing, f"UI strings missing from the pt_BR catalog: {'; '.join(missing)} — {HOW_TO_FIX}"


def test_the_compiled_catalog_matches_the_translations():
    mo_path = CATALOG_DIR / "messages.mo"
    assert mo_path.exists(), "messages.mo is missing: run `make translations`"
    with open(mo_path, "rb") as f:
        compiled = read_mo(f)
    stale = [m.id for m in messages(read_catalog()) if compiled.get(m.id, m.context) is None
             or translations_of(compiled.get(m.id, m.context)) != translations_of(m)]
    assert not stale, f"messages.mo is older than messages.po for {stale}: run `make translations`"


# --- Translations are text ----------------------------------------------------------------------------------


def placeholder_values(text: str) -> dict:
    """A value for each placeholder of text: a number for %(x)d or %(x)g, else text that must be escaped too."""
    return {name: 3 if kind in "dg" else f"<{name}>" for name, kind in re.findall(r"%\((\w+)\)([sdg])", text)}


@pytest.mark.parametrize("language", ["pt_BR", "en"])
def test_every_catalog_message_renders_in_a_template_as_text(app, language):
    """"Bearer <token>" and "Ops <ops@example.com>" keep their angle brackets; values are escaped as well."""
    template = app.jinja_env.from_string(
        "{% autoescape true %}{% if plural %}{{ ngettext(message, plural, number, **values) }}"
        "{% elif context %}{{ pgettext(context, message, **values) }}"
        "{% else %}{{ _(message, **values) }}{% endif %}{% endautoescape %}")
    lost = []
    with app.test_request_context(), force_locale(language):
        for message in messages(read_catalog()):
            originals = originals_of(message)
            texts = translations_of(message) if language == "pt_BR" else originals
            # Form 0 is 1, form 1 the rest (0 included), in both languages.
            for number, text in zip((1, 5), texts if message.pluralizable else texts[:1]):
                values = placeholder_values(originals[-1])
                if message.pluralizable:
                    values["num"] = number
                rendered = template.render(message=originals[0], plural=originals[-1] if message.pluralizable
                                           else None, context=message.context, number=number, values=values)
                expected = text % values if values or "%" in text else text
                if "<" in rendered or html.unescape(rendered) != expected:
                    lost.append((message.id, rendered))
    assert not lost, lost



def test_messages_translated_later_are_text_too(app):
    """A label or message defined at import (lazy_gettext) is escaped on the page like the templates' own."""
    from webapp.translation import lazy_gettext

    with app.test_request_context():
        rendered = app.jinja_env.from_string("{{ text }}").render(
            text=lazy_gettext("%(address)s: %(problem)s", address="<img src=x onerror=alert(1)>", problem="<b>"))
    assert rendered == "&lt;img src=x onerror=alert(1)&gt;: &lt;b&gt;"


def test_no_module_takes_flask_babels_lazy_gettext_which_reaches_pages_as_markup():
    from tests.test_layers import WEBAPP, imported

    users = [path.relative_to(WEBAPP).as_posix() for path in sorted(WEBAPP.rglob("*.py"))
             if any(name in ("flask_babel.lazy_gettext", "flask_babel.lazy_ngettext")
                    for name in imported(path.read_text(encoding="utf-8"), "webapp"))]
    assert users == []

# --- What the screens show ---------------------------------------------------------------------------------


def test_the_account_form_shows_the_design_labels_in_portuguese_by_default(admin):
    admin.delete_cookie("lang")  # no language chosen
    html = admin.get("/accounts/new").get_data(as_text=True)
    assert '<html lang="pt-BR">' in html
    labels = label_texts(html)
    for portuguese, _english in FORM_LABELS:
        assert portuguese in labels, portuguese
    assert {"Sim", "Não"} <= labels
    assert "<h2>Configuração do servidor SMTP</h2>" in html
    assert '<button type="submit">Enviar</button>' in html


def test_the_account_form_shows_the_design_labels_in_english_when_chosen(admin):
    html = admin.use_language("en").get("/accounts/new").get_data(as_text=True)
    assert '<html lang="en">' in html
    labels = label_texts(html)
    for _portuguese, english in FORM_LABELS:
        assert english in labels, english
    assert {"Yes", "No"} <= labels
    assert "<h2>SMTP server settings</h2>" in html
    assert '<button type="submit">Submit</button>' in html


@pytest.mark.parametrize("language,title,add,actions,edit,test", [
    ("pt_BR", "Configuração SMTP", "Adicionar", "Ações", "Editar", "Testar configuração"),
    ("en", "SMTP Configuration", "Add", "Actions", "Edit", "Test configuration"),
])
def test_the_report_shows_the_design_labels(admin, language, title, add, actions, edit, test):
    account = make_account(name="Main")  # a row, so its Actions menu renders
    html = admin.use_language(language).get("/accounts/").get_data(as_text=True)
    assert f"<title>{title} · smtpdesk</title>" in html
    assert f"<h1>{title}</h1>" in html
    assert re.search(rf'<a href="/accounts/new" role="button">{add}</a>', html)
    assert re.search(rf'<th scope="col" class="actions-col">{actions}</th>', html)
    assert f'<summary aria-label="{actions}: Main">{actions}</summary>' in html
    assert re.search(rf'<a href="/accounts/{account.id}/edit[^"]*">{edit}</a>', html)
    assert re.search(rf"<button [^>]*>{test}</button>", html)


@pytest.mark.parametrize("language,index,title,send", [
    ("pt_BR", 0, "Teste de E-mail - Conta", "Enviar"),
    ("en", 1, "Test Email - Account", "Send"),
])
def test_the_test_dialog_shows_the_design_labels(admin, language, index, title, send):
    account = make_account(name="Main")
    html = admin.use_language(language).get(f"/accounts/{account.id}/test").get_data(as_text=True)
    assert f'<h2 id="test-dialog-title">{title} <em>Main</em></h2>' in html
    labels = label_texts(html)
    for pair in DIALOG_LABELS:
        assert pair[index] in labels, pair[index]
    assert f'<button type="submit">{send}</button>' in html


# --- WTForms' own messages ---------------------------------------------------------------------------------


@pytest.mark.parametrize("language,required", [("pt_BR", "Campo obrigatório."), ("en", "This field is required.")])
def test_wtforms_built_in_messages_follow_the_language(admin, language, required):
    admin.use_language(language)
    response = admin.post("/accounts/new", data=account_form(name=""))
    assert response.status_code == 422
    assert re.search(rf'<small class="field-error" id="name-error">\s*{re.escape(required)}\s*</small>',
                     response.get_data(as_text=True))
