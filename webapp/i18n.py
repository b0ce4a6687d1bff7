"""Translations and dates for templates and forms, looked up once per request or process instead of once per use.

The accounts report translates some 500 strings a page and formats a time or two per row: flask_babel resolves the
request's locale, domain and catalogue again for every string (~10 µs), babel takes ~20 µs to format a time, and
Flask-WTF reads WTForms' message catalogue from disk in every request that builds a form. Results are flask_babel's.
"""
from datetime import datetime
from functools import lru_cache

from babel import support
from flask import request
from flask.globals import _cv_app
from flask_babel import format_datetime, get_locale, get_timezone, get_translations
from jinja2 import pass_eval_context
from markupsafe import Markup
from wtforms.i18n import messages_path


def install(env) -> None:
    """Templates' _(), gettext(), ngettext() and datetimeformat, in place of flask_babel's (same results)."""
    env.globals.update(_=_template_gettext, gettext=_template_gettext, ngettext=_template_ngettext)
    env.filters["datetimeformat"] = datetimeformat


def _per_locale(name: str, make):
    """make(), kept for the rest of the request under name while the request's locale stays the same object.

    Stored beside the locale flask_babel selected (its namespace in g): force_locale() and refresh() replace that
    Locale object, so a value made for another locale is never reused. Outside a request: make() every time.
    """
    context = _cv_app.get(None)
    state = getattr(context.g, "_flask_babel", None) if context is not None else None
    kept = getattr(state, name, None)
    if kept is not None and kept[0] is getattr(state, "babel_locale", None) is not None:
        return kept[1]
    value = make()  # may select the locale, creating flask_babel's namespace
    state = getattr(context.g, "_flask_babel", None) if context is not None else None
    if state is not None:
        setattr(state, name, (getattr(state, "babel_locale", None), value))
    return value


# pass_eval_context, not pass_context: inside a block or a loop jinja2 copies the whole context for each call of a
# pass_context function (its own newstyle gettext is one); the autoescape setting is all these need.
@pass_eval_context
def _template_gettext(eval_context, message, **variables):
    translated = _per_locale("smtpdesk_translations", get_translations).ugettext(message)
    if eval_context.autoescape:
        translated = Markup(translated)
    if not variables and "%" not in translated:
        return translated  # formatting would change nothing
    return translated % variables  # as jinja2's newstyle gettext: always a format string, variables escaped


@pass_eval_context
def _template_ngettext(eval_context, singular, plural, number, **variables):
    variables.setdefault("num", number)
    translated = _per_locale("smtpdesk_translations", get_translations).ungettext(singular, plural, number)
    if eval_context.autoescape:
        translated = Markup(translated)
    return translated % variables


def datetimeformat(value=None, format=None, rebase=True):
    """flask_babel's datetimeformat filter, each result remembered: pages show the same times again and again."""
    if not isinstance(value, datetime) or not rebase:
        return format_datetime(value, format, rebase)
    return _formatted_datetime(value, format, locale_and_zone())


def locale_and_zone() -> str:
    """The request's locale and time zone, e.g. "en UTC": what its translations and formatted times depend on."""
    return _per_locale("smtpdesk_locale_and_zone", lambda: f"{get_locale()} {get_timezone()}")


@lru_cache(maxsize=4096)
def _formatted_datetime(value, format, locale_and_zone):
    # Called from a request whose locale and time zone are the ones in the key.
    return format_datetime(value, format)


class _WtformsCatalogue:
    """WTForms' own messages ("This field is required.", ...) in the request's language, each catalogue loaded once."""

    def ugettext(self, string):
        return _wtforms_catalogue(str(get_locale())).ugettext(string)

    def ungettext(self, singular, plural, n):
        return _wtforms_catalogue(str(get_locale())).ungettext(singular, plural, n)


@lru_cache(maxsize=None)
def _wtforms_catalogue(locale: str):
    return support.Translations.load(messages_path(), [locale], domain="wtforms")


def share_wtforms_catalogue():
    """Before each request: the WTForms catalogues Flask-WTF will use, loaded once per process."""
    # Flask-WTF reads and parses WTForms' .mo file in every request that builds a form (~0.2 ms) unless
    # request.wtforms_translations is already set; its own lookups then go through this.
    request.wtforms_translations = _WtformsCatalogue()
