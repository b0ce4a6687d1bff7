"""The templates' _(), gettext() and ngettext(): Flask-Babel's translations formatted with escaped values, without
Jinja copying the template's context for each call.

A translation is text, never markup: "Authorization: Bearer <token>" must show its <token>, so the translated string
is escaped before its values (escaped in turn) are put in. Markup belongs in the template; a value the template built
as markup (a {% set %} block) stays markup.

Jinja's i18n extension passes the whole context to its gettext (pass_context), and inside a loop or a block it
builds a new context for every call; a report page translates a few hundred labels, and that copying cost more
than the rest of the page. These need only the autoescape setting (pass_eval_context). The translations are
looked up once per locale: a request that forces another one (flask_babel.force_locale) gets that locale's.
"""
from flask import g
from flask_babel import format_date, format_time, get_locale, get_translations, gettext as _gettext
from flask_babel.speaklater import LazyString
from jinja2 import pass_eval_context
from markupsafe import escape


def init_app(app) -> None:
    """Install the templates' translation functions (after Flask-Babel's, which they replace)."""
    app.jinja_env.globals.update(_=gettext, gettext=gettext, ngettext=ngettext, pgettext=pgettext)
    app.jinja_env.filters["timestamp"] = timestamp


class LazyText(LazyString):
    """A translation looked up when it is shown, which is text like any other: Flask-Babel's LazyString passes itself
    to Jinja and markupsafe as markup (its __html__ is the raw string), so a value put into it, such as an address
    someone typed, would reach the page as HTML."""

    def __html__(self) -> str:
        return escape(str(self))


def lazy_gettext(message: str, **variables) -> LazyText:
    """gettext() when the text is shown, in the reader's language: for labels and messages defined at import."""
    return LazyText(_gettext, message, **variables)


def timestamp(value) -> str:
    """A moment as every screen writes it, in the reader's time zone: the locale's short date and the time to the
    second ("06/12/2026 03:16:22"). One format everywhere, so two screens never show one moment two ways."""
    return f"{format_date(value, 'short')} {format_time(value, 'medium')}"


def _translations():
    """The translations of the locale in force, looked up once per request and locale."""
    locale = get_locale()
    found = g.get("smtpdesk_translations")
    if found is None or found[0] is not locale:
        found = g.smtpdesk_translations = (locale, get_translations())
    return found[1]


@pass_eval_context
def gettext(eval_context, message: str, **variables) -> str:
    translated = _translations().ugettext(message)
    if eval_context.autoescape:
        translated = escape(translated)
    if not variables and "%" not in translated:
        return translated  # formatting would change nothing
    return translated % variables


@pass_eval_context
def pgettext(eval_context, context: str, message: str, **variables) -> str:
    """gettext() of a message whose translation depends on what it is said of (Portuguese: "Criada em" for a
    notification, "Criado em" for a token)."""
    translated = _translations().upgettext(context, message)
    if eval_context.autoescape:
        translated = escape(translated)
    return translated % variables if variables else translated


@pass_eval_context
def ngettext(eval_context, singular: str, plural: str, number: int, **variables) -> str:
    variables.setdefault("num", number)
    translated = _translations().ungettext(singular, plural, number)
    if eval_context.autoescape:
        translated = escape(translated)
    return translated % variables
