"""What every request pays for, made cheap without changing what it does: each serving thread keeps its
database connection, per-request lookups reuse their SQL, templates translate and format through per-request
caches, row links are built from one URL, and static files do not re-sign the session cookie."""
import re
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from flask import render_template_string, url_for
from flask_babel import force_locale, format_datetime

from tests.factories import make_account, make_client, make_user
from webapp import create_app, db
from webapp.db import Prepared, database, insert_row
from webapp.models import Setting, User
from webapp.web import SessionInterface, row_url

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
        database.execute_sql("BEGIN IMMEDIATE")
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

    other = sqlite3.connect(app.config["DATABASE"])  # another process, say
    with other:
        other.execute("UPDATE user SET role = 'auditor' WHERE username = 'reader0'")
    other.close()

    assert client.get("/test-reads-role").get_data(as_text=True) == "auditor"


def test_a_thread_kept_connection_follows_the_app_to_its_new_database(tmp_path):
    """Each test app has its own file: a thread that served an earlier app must not keep reading the old one."""

    def make_app(name):
        app = create_app({"TESTING": True, "SECRET_KEY": "k", "VAULT_KEYS": Fernet.generate_key().decode(),
                          "DATABASE": str(tmp_path / f"{name}.db")})
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


# --- SQL built once ---------------------------------------------------------------------------------------------


def test_a_prepared_query_finds_what_the_orm_query_finds(app):
    alice, bob = make_user("admin", username="alice"), make_user("operator", username="bob")
    by_name = Prepared(lambda name: User.select().where(User.username == name))
    assert by_name.first("bob").id == bob.id
    assert by_name.first("alice").role == "admin" and by_name.first("alice").id == alice.id
    assert by_name.first("nobody") is None


def test_first_makes_the_models_peewee_makes_for_every_prepared_query_of_the_app(app):
    # first() builds its model from the row itself, without peewee's cursor wrapper: the same values, converted the
    # same way (times, booleans, the foreign key), aliased columns as attributes, nothing marked as changed.
    from tests.factories import make_notification
    from webapp.api.routes import _NOTIFICATION
    from webapp.auth.passwords import _ANY_USER
    from webapp.models import _TOKEN_BY_HASH, ApiToken
    from webapp.web import _USER_BY_ID

    user = make_user("admin", username="dora")
    account = make_account(name="Prepared relay", is_default=True, last_test_at=datetime(2025, 1, 2, 3, 4, 5),
                           last_test_ok=False)
    notification = make_notification("retrying", account=account, attempts=2, last_code=451)
    token, _plain = ApiToken.issue("ci", created_by=user)
    for prepared, args in [(_ANY_USER, ()), (_USER_BY_ID, (user.id,)), (_NOTIFICATION, (notification.id,)),
                           (_TOKEN_BY_HASH, (token.token_hash,))]:
        made, expected = prepared.first(*args), next(iter(prepared(*args)))
        assert type(made) is type(expected) and made.__data__ == expected.__data__, prepared
        assert {k: v for k, v in vars(made).items() if not k.startswith("_")} == \
            {k: v for k, v in vars(expected).items() if not k.startswith("_")}
        assert not made.is_dirty()
    assert _USER_BY_ID.first(-1) is None and _NOTIFICATION.first(-1) is None
    found = _NOTIFICATION.first(notification.id)
    assert found.account_name == "Prepared relay" and found.account_id == account.id
    assert found.created_at == notification.created_at and isinstance(found.created_at, datetime)


def test_a_prepared_query_refuses_parameters_other_than_its_arguments(app):
    with pytest.raises(ValueError):
        Prepared(lambda name: User.select().where(User.username == name, User.active == True)).first("a")  # noqa: E712


def test_insert_row_saves_what_create_would(app):
    made = User(username="carol", password_hash="x", role="auditor")
    row_id = insert_row(made)
    stored = User.get_by_id(row_id)
    assert made.id == row_id and not made.is_dirty()
    assert (stored.username, stored.role, stored.active, stored.locale) == ("carol", "auditor", True, None)
    assert stored.created_at == made.created_at


# --- Templates ----------------------------------------------------------------------------------------------


def test_row_url_is_url_for_with_the_row_id_in_the_path(app):
    with app.test_request_context("/"):
        back = "/accounts/?id=918273645546372819&page=2"  # the digits it uses for the id, typed into a filter
        for account_id in (1, 42, 918273645546372819):
            assert row_url("accounts.edit", account_id=account_id, next=back) == \
                url_for("accounts.edit", account_id=account_id, next=back)
            assert row_url("accounts.make_default", account_id=account_id) == \
                url_for("accounts.make_default", account_id=account_id)
        with pytest.raises(ValueError):
            row_url("accounts.index", page=2)  # no id in the path


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
    for _ in range(2):  # the second time from the cache
        with app.app_context(), app.test_request_context("/", headers={"Cookie": f"lang={language}"}):
            shown = render_template_string("{{ t|datetimeformat('short') }}|{{ t|datetimeformat }}", t=moment)
            assert shown == f"{format_datetime(moment, 'short')}|{format_datetime(moment)}"
    # The other language right after: never the first one's text from the cache.
    other = {"pt_BR": ("en", "3/4/25, 5:06\u202fPM"), "en": ("pt_BR", "04/03/2025 17:06")}[language]
    with app.app_context(), app.test_request_context("/", headers={"Cookie": f"lang={other[0]}"}):
        assert render_template_string("{{ t|datetimeformat('short') }}", t=moment) == other[1]


@pytest.mark.parametrize("language,required", [("pt_BR", "Campo obrigatório."), ("en", "This field is required.")])
def test_wtforms_own_messages_stay_in_the_users_language(client, admin, language, required):
    for _ in range(2):  # the catalogue is loaded once, then reused
        page = client.use_language(language).post("/auth/login", data={"username": "", "password": ""})
        assert required in page.get_data(as_text=True)


# --- Session ----------------------------------------------------------------------------------------------------


def test_static_files_do_not_re_sign_the_session_pages_do_once_a_minute(app, monkeypatch):
    client = make_client(app)
    assert client.get("/accounts/").headers.get("Set-Cookie") is None  # signed at sign-in, under a minute ago

    monkeypatch.setattr(SessionInterface, "refresh_after", timedelta(0))  # as if a minute had passed
    with client.get("/static/css/app.css") as static:
        assert static.status_code == 200 and static.headers.get("Set-Cookie") is None
    cookie = client.get("/accounts/").headers["Set-Cookie"]
    assert re.match(r"session=", cookie) and "Expires=" in cookie and "HttpOnly" in cookie


def test_a_session_ends_its_lifetime_after_its_cookie_was_last_signed(app, monkeypatch):
    from itsdangerous.timed import TimestampSigner

    client = make_client(app)
    assert client.get("/accounts/").status_code == 200
    # The lifetime counts from the cookie's last signature: read 8 hours and a second later, it opens no session.
    lifetime = int(app.permanent_session_lifetime.total_seconds())
    now = TimestampSigner.get_timestamp
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
