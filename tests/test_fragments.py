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


def test_the_cached_navigation_carries_each_sessions_token_and_each_pages_address(app):
    import html
    import re

    from itsdangerous import URLSafeTimedSerializer

    from tests.factories import make_client

    signer = URLSafeTimedSerializer(app.secret_key, salt="wtf-csrf-token")
    navigations = []
    for client in (make_client(app, "admin"), make_client(app, "admin"), make_client(app, "operator")):
        for url in ("/accounts/", '/accounts/?name=a"b&sort=name', "/deliveries/"):
            page = client.get(url).get_data(as_text=True)
            assert "\x00" not in page
            nav = re.search(r"<header.*?</header>", page, re.S).group(0)
            with client.session_transaction() as session:
                raw = session["csrf_token"]
            tokens = re.findall(r'name="csrf_token" value="([^"]+)"', nav)
            assert len(tokens) == 2 and all(signer.loads(token) == raw for token in tokens)  # language, sign out
            here = re.search(r'name="next" value="([^"]+)"', nav).group(1)
            assert html.unescape(here) == url and '"' not in here  # escaped in the attribute
            assert f"<summary>{client.user.username}</summary>" in nav
            navigations.append(re.sub(r'value="[^"]*"', "", nav))
    assert len(set(navigations)) == 3 * 2  # per user and section; tokens and addresses aside, alike
    # Posting the navigation's language form as the browser would: back to the page it was on, in Portuguese.
    client = make_client(app, "admin")
    page = client.get("/accounts/?sort=name").get_data(as_text=True)
    token = re.search(r'class="language-switch">\s*<input type="hidden" name="csrf_token" value="([^"]+)"', page)
    response = client.post("/auth/language", data={"csrf_token": token.group(1), "next": "/accounts/?sort=name",
                                                   "lang": "pt_BR"}, csrf=False)
    assert response.status_code in (302, 303) and response.headers["Location"] == "/accounts/?sort=name"
