"""Rendered pieces of a page kept in memory, keyed by everything they show, so a page renders only what changed.

Rendering the accounts report's 30 rows was half of the page's CPU (issue 6, P4): some 2.8 KB and 40 escaped values
a row, the same again and again for as long as nobody changes the accounts. A row is a pure function of its key (the
values it shows, the viewer's role, the language...), so the HTML made for a key can be served again for that key,
and a changed value is a new key: nothing is ever invalidated, and nothing stale can be found. Old keys fall out of
a bounded LRU. The cache lives in the process, one per app; it never holds anything one session must not see,
because nothing per-session (a CSRF token) may be inside a cached fragment: such a value goes into a slot(), which
the fill filter fills for each request after the fragment comes out of the cache.
"""
import threading
from collections import OrderedDict
from datetime import date, datetime

from flask import request
from jinja2.runtime import Macro
from markupsafe import Markup, escape
from peewee import Model

from webapp import i18n

# A report page leaves about 190,000 characters of fragments (30 rows of 2,000, the rows together, the results around
# them), a deliveries page 20,000 to 80,000: the bound in characters (bytes, for this ASCII HTML) keeps the last
# 40-odd report pages, and far more deliveries pages, in 8 MB whatever they hold.
DEFAULT_SIZE = 2000
DEFAULT_CHARS = 8_000_000


class FragmentCache:
    """A bounded LRU of rendered fragments (key -> Markup), and the templates' cached() that fills it."""

    def __init__(self, size: int = DEFAULT_SIZE, chars: int = DEFAULT_CHARS):
        self.size, self.chars = size, chars
        self.hits = self.misses = 0
        self._entries = OrderedDict()
        self._held = 0  # characters in the fragments kept
        # waitress serves with several threads: the gate (webapp/gate.py) lets only one render at a time, but the
        # LRU's move/evict pairs must not interleave if a render ever runs outside it.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._held = 0

    def cached(self, macro=None, *args, key, caller=None, **kwargs) -> Markup:
        """macro(*args, **kwargs), rendered once for this key and then reused for as long as the key is the same.

        key must hold everything the output depends on (values shown, role flags, where links lead back to), apart
        from what this adds itself: the macro, the language and time zone (translations, datetimeformat) and the
        URL root. A peewee model in key stands for all the values loaded into it and the rows joined to it, not
        for its id (which is what models compare by). Something a macro loads lazily (a property that queries)
        must be read into key, or the first answer would be reused after it changed.

        As a call block, {% call cached(key=...) %}...{% endcall %} caches its body: a whole page of rows is then
        one lookup, and each row's own cached() only runs when that key is new.
        """
        # A template's macro is known by its compiled code: the same whether its template was imported once or anew.
        made_by = caller or macro
        if isinstance(made_by, Macro):
            made_by = made_by._func.__code__
        full_key = (made_by, i18n.locale_and_zone(), request.script_root, _frozen(key))
        with self._lock:
            found = self._entries.get(full_key)
            if found is not None:
                self._entries.move_to_end(full_key)
                self.hits += 1
                return found
            self.misses += 1
        made = Markup(caller() if caller is not None else macro(*args, **kwargs))
        with self._lock:
            if full_key not in self._entries:  # else another thread made it meanwhile: the same fragment
                self._entries[full_key] = made
                self._held += len(made)
            while len(self._entries) > self.size or (self._held > self.chars and len(self._entries) > 1):
                self._held -= len(self._entries.popitem(last=False)[1])
        return made


# Values that stand for themselves in a key (a tuple of only these needs no walking through).
_PLAIN = frozenset({str, int, float, bool, type(None), datetime, date, bytes})


class Plain(tuple):
    """Part of a key made only of plain values and tuples of them (rows as SQLite returns them): taken as it is,
    where walking through a page of rows, or the 200 accounts a select offers, cost more than the lookup."""


def _frozen(value):
    """value as part of a dictionary key that changes whenever anything it shows could."""
    if type(value) is Plain:
        return value
    if isinstance(value, Model):
        # Loaded field values are plain (str, int, bool, datetime, None): hashable as they are.
        return type(value), tuple(value.__data__.items()), _frozen(value.__rel__) if value.__rel__ else ()
    if isinstance(value, (tuple, list)):
        if all(type(item) in _PLAIN for item in value):
            return tuple(value)
        return tuple(_frozen(item) for item in value)
    if isinstance(value, dict):
        return tuple((name, _frozen(item)) for name, item in value.items())
    return value


def slot(name: str) -> Markup:
    """A place in a cached fragment for a value of this request (a CSRF token), which fill() puts in."""
    return Markup(f"\x00slot:{name}\x00")  # a control character: never in stored text (our forms refuse them)


def fill(fragment: Markup, **values) -> Markup:
    """fragment with each slot(name) replaced by values[name], escaped."""
    for name, value in values.items():
        fragment = fragment.replace(slot(name), escape(value))
    return fragment


def init_app(app, size: int = DEFAULT_SIZE, chars: int = DEFAULT_CHARS) -> FragmentCache:
    """Give app its own fragment cache, as app.extensions["fragments"] and the templates' cached(); and slot() and
    the fill filter for what a cached fragment holds of the request or the session."""
    cache = app.extensions["fragments"] = FragmentCache(size, chars)
    app.jinja_env.globals.update(cached=cache.cached, slot=slot)
    app.jinja_env.filters["fill"] = fill
    return cache
