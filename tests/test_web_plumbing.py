"""What every request relies on: the serving thread's database connection, translations in templates and forms,
and the session cookie."""
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
from cryptography.fernet import Fernet
from flask import render_template_string
from flask_babel import force_locale, format_datetime

from tests.support.apps import elsewhere
from tests.support.concurrency import close_connection
from tests.support.factories import make_account, make_client, make_user
from webapp import create_app, db
from webapp.db import database
from webapp.models import Setting, User

# --- The database connection ------------------------------------------------------------------------------------


def test_a_serving_thread_keeps_its_connection_from_request_to_request(app):
    client = make_client(app)
    client.get("/accounts/")
    kept = database.connection()
    client.get("/accounts/")
    assert not database.is_closed()
    assert database.connection() is kept


def test_a_transaction_a_request_leaves_open_is_rolled_back_not_carried_into_the_next(app):
    @app.get("/test-leaves-a-transaction-open")
    def leaves_a_transaction_open():
        database.begin("IMMEDIATE")  # SQLite's write lock, or PostgreSQL's advisory stand-in for it
        Setting.set_value("left-behind", "yes")
        return "done"

    client = make_client(app)
    assert client.get("/test-leaves-a-transaction-open").status_code == 200

    assert not database.in_transaction()
    assert Setting.get_value("left-behind", "never saved") == "never saved"
    # SQLite's write lock went with it: another connection can write at once.
    with database.atomic("IMMEDIATE"):
        Setting.set_value("after", "ok")


@pytest.mark.parametrize("fails", [False, True])
def test_the_next_request_sees_what_others_wrote_even_after_a_query_was_left_half_read(app, fails):
    """A statement left unfinished would keep the kept connection on an old snapshot of the database."""
    for n in range(3):
        make_user("operator", username=f"reader{n}")

    @app.get("/test-reads-half")
    def reads_half():
        users = iter(User.select().order_by(User.id))
        next(users)
        if fails:
            raise RuntimeError("failed half-way through the query")
        return "read one"

    @app.get("/test-reads-role")
    def reads_role():
        return User.get(User.username == "reader0").role

    client = make_client(app)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # the 500 page, as served
    assert client.get("/test-reads-half").status_code == (500 if fails else 200)

    elsewhere(app, 'UPDATE "user" SET "role" = ? WHERE "username" = ?', ("auditor", "reader0"))  # another process

    assert client.get("/test-reads-role").get_data(as_text=True) == "auditor"


def test_a_thread_kept_connection_follows_the_app_to_its_new_database(tmp_path, engine, request):
    """Each test app has its own database: a thread that served an earlier app must not keep reading the old one."""

    def make_app(name):
        config = {}
        if engine == "postgresql":  # left to the throwaway cluster
            cluster = request.getfixturevalue("postgres_cluster")
            config["DATABASE_URL"] = cluster.create_database(request.getfixturevalue("postgres_template"))
        app = create_app({"TESTING": True, "SECRET_KEY": "k", "VAULT_KEYS": Fernet.generate_key().decode(),
                          "DATABASE": str(tmp_path / f"{name}.db"), **config})
        app.instance_path = str(tmp_path)
        db.upgrade()
        with app.app_context(), database.connection_context():
            make_user("admin", username=f"{name}-admin")
        return app

    def login_page_of(app):
        with app.app_context():
            return app.test_client().get("/auth/login")

    with ThreadPoolExecutor(max_workers=1) as one_thread:
        first = make_app("first")
        assert one_thread.submit(login_page_of, first).result().status_code == 200
        served_by = one_thread.submit(threading.get_ident).result()
        second = make_app("second")
        assert one_thread.submit(threading.get_ident).result() == served_by

        def users_seen():
            with second.app_context(), second.test_request_context("/"):
                second.preprocess_request()
                return [user.username for user in User.select()]

        assert one_thread.submit(users_seen).result() == ["second-admin"]
        one_thread.submit(close_connection).result()


@pytest.mark.parametrize("language,expected", [("pt_BR", "Ordenar por"), ("en", "Sort by")])
def test_templates_translate_as_flask_babel_does_with_values_escaped(app, language, expected):
    with app.app_context(), app.test_request_context("/", headers={"Cookie": f"lang={language}"}):
        html = render_template_string("{{ _('Sort by %(column)s', column='<b>') }}|{{ ngettext('%(num)d account', "
                                      "'%(num)d accounts', 2) }}|{{ _('100%% sure') }}")
        assert html.startswith(f"{expected} &lt;b&gt;|2 ")
        assert html.endswith("|100% sure")


def test_templates_follow_force_locale_inside_a_request(app):
    with app.app_context(), app.test_request_context("/", headers={"Cookie": "lang=pt_BR"}):
        assert render_template_string("{{ _('Edit') }}") == "Editar"
        with force_locale("en"):
            assert render_template_string("{{ _('Edit') }}") == "Edit"
        assert render_template_string("{{ _('Edit') }}") == "Editar"


@pytest.mark.parametrize("language", ["pt_BR", "en"])
def test_times_are_formatted_as_flask_babel_formats_them_in_each_language(app, language):
    moment = datetime(2025, 3, 4, 17, 6, 7)
    with app.app_context(), app.test_request_context("/", headers={"Cookie": f"lang={language}"}):
        shown = render_template_string("{{ t|datetimeformat('short') }}|{{ t|datetimeformat }}", t=moment)
        assert shown == f"{format_datetime(moment, 'short')}|{format_datetime(moment)}"
    # The other language right after.
    other = {"pt_BR": ("en", "3/4/25, 5:06\u202fPM"), "en": ("pt_BR", "04/03/2025 17:06")}[language]
    with app.app_context(), app.test_request_context("/", headers={"Cookie": f"lang={other[0]}"}):
        assert render_template_string("{{ t|datetimeformat('short') }}", t=moment) == other[1]


@pytest.mark.parametrize("language,required", [("pt_BR", "Campo obrigatório."), ("en", "This field is required.")])
def test_wtforms_own_messages_stay_in_the_users_language(client, language, required):
    make_user("admin")  # past first-run setup
    for _ in range(2):
        page = client.use_language(language).post("/auth/login", data={"username": "", "password": ""})
        assert required in page.get_data(as_text=True)


# --- Session ----------------------------------------------------------------------------------------------------


def session_cookies(response) -> list[str]:
    return [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]


def test_the_session_cookie_is_signed_again_only_when_the_session_changes(app):
    client = make_client(app)
    account = make_account(name="Spare relay")
    client.get("/accounts/")  # the page's form token goes into the session once
    assert session_cookies(client.get("/accounts/")) == []
    with client.get("/static/css/app.css") as static:
        assert static.status_code == 200 and session_cookies(static) == []
    # A change the user makes flashes its outcome: the session changes, and its cookie is signed again.
    changed = client.post(f"/accounts/{account.id}/disable", data={"next": "/accounts/"})
    assert changed.status_code == 303 and len(session_cookies(changed)) == 1


def test_a_session_ends_eight_hours_after_it_was_signed_even_while_in_use(app, monkeypatch):
    from itsdangerous.timed import TimestampSigner

    client = make_client(app)
    assert client.get("/accounts/").status_code == 200
    now = TimestampSigner.get_timestamp
    for hours in (2, 4, 6, 7.9):  # pages read every two hours: nothing in the session changes
        monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self, h=hours: now(self) + int(h * 3600))
        assert client.get("/accounts/").status_code == 200
    lifetime = int(app.permanent_session_lifetime.total_seconds())
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: now(self) + lifetime + 1)
    response = client.get("/accounts/")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_a_missing_static_file_is_still_the_friendly_404(app):
    client = make_client(app)
    response = client.get("/static/css/missing.css")
    assert response.status_code == 404
    assert "This page does not exist" in response.get_data(as_text=True)
    assert client.get("/accounts/").status_code == 200  # still signed in


def test_the_report_row_and_print_view_use_the_same_cells(app):
    client = make_client(app)
    account = make_account(name="Shared cells", is_default=True)
    row = client.htmx("post", f"/accounts/{account.id}/make-default").get_data(as_text=True)
    printed = client.get("/accounts/print").get_data(as_text=True)
    for cell in ("<th scope=\"row\">Shared cells</th>", "badge badge-default"):
        assert cell in row and cell in printed
