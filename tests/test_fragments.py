"""webapp/fragments.py's cached(): as a call of a macro and as a call block, keyed by what the fragment shows."""
from flask_babel import force_locale

from tests.factories import make_account
from webapp.fragments import Plain, _frozen
from webapp.models import SmtpAccount

TEMPLATE = """{% macro shown(value) %}[{{ value }} {{ _('Yes') }}]{% endmacro -%}
{% call cached(key=key) %}{{ count() }}{% endcall %}|{{ cached(shown, value, key=key) }}"""


def render(app, **context) -> str:
    return app.jinja_env.from_string(TEMPLATE).render(**context)


def test_a_call_block_renders_its_body_once_for_a_key(app):
    bodies = []

    def count() -> str:
        bodies.append(1)
        return str(len(bodies))

    with app.test_request_context("/"):
        with force_locale("en"):
            assert render(app, key=("a", 1), count=count, value="x") == "1|[x Yes]"
            assert render(app, key=("a", 1), count=count, value="changed") == "1|[x Yes]"  # the key says all it shows
            assert render(app, key=("a", 2), count=count, value="y") == "2|[y Yes]"
        with force_locale("pt_BR"):
            assert render(app, key=("a", 2), count=count, value="y") == "3|[y Sim]"  # each language its own


def test_a_model_in_a_key_stands_for_its_values_and_plain_values_are_taken_as_they_are(app):
    account = make_account(name="Relay")
    before = _frozen((SmtpAccount.get_by_id(account.id), [1, "a"]))
    again = SmtpAccount.get_by_id(account.id)
    assert _frozen((again, [1, "a"])) == before
    again.name = "Renamed"
    assert _frozen((again, [1, "a"])) != before  # same id, another value: another key

    rows = Plain(((1, "a", None), (2, "b", 3.5)))
    assert _frozen(rows) is rows
    assert hash(_frozen(("page", rows))) == hash(("page", ((1, "a", None), (2, "b", 3.5))))
