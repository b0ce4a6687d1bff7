from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.support.factories import PASSWORD, make_user
from webapp.auth.passwords import issue_setup_code
from webapp.models import AuditEntry, User


def test_first_visit_without_users_goes_to_setup(client):
    response = client.get("/", follow_redirects=True)
    assert response.request.path == "/auth/setup"
    assert "<h1>Configuração inicial</h1>" in response.get_data(as_text=True)


def test_setup_needs_the_printed_code_and_creates_the_first_admin(app, client):
    code = issue_setup_code(app.instance_path)
    form = {"code": "WRONG-CODE", "username": "Root", "password": PASSWORD, "confirm": PASSWORD}
    response = client.post("/auth/setup", data=form)
    assert response.status_code == 422
    assert User.select().count() == 0

    response = client.post("/auth/setup", data={**form, "code": code.lower()})
    assert response.status_code == 302
    admin = User.get(User.username == "root")
    assert admin.role == "admin"
    assert admin.password_hash.startswith("$argon2id$")
    assert not (Path(app.instance_path) / "setup_code").exists()
    # Afterwards the setup page is gone.
    assert client.get("/auth/setup").status_code == 404
    assert client.post("/auth/setup", data={**form, "code": code}).status_code == 404


def test_setup_reports_a_wrong_code_with_the_first_submit(app, client):
    issue_setup_code(app.instance_path)
    # The other fields are still empty: the wrong code is reported now, beside their errors, not after them.
    response = client.post("/auth/setup", data={"code": "WRONG-CODE", "username": "", "password": "", "confirm": ""})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Este não é o código exibido no console" in page
    assert User.select().count() == 0


def test_setup_code_is_not_issued_once_a_user_exists(app):
    make_user("admin")
    assert issue_setup_code(app.instance_path) is None


def test_login_and_logout_are_audited(client):
    admin = make_user("admin", username="alice")
    client.login(admin)
    assert client.get("/accounts/").status_code == 200
    response = client.post("/auth/logout")
    assert response.status_code == 302
    assert client.get("/accounts/").status_code == 302
    actions = [e.action for e in AuditEntry.select().order_by(AuditEntry.id)]
    assert actions == ["login", "logout"]


@pytest.mark.parametrize("username,password", [("alice", "wrong password"), ("nobody", PASSWORD)])
def test_wrong_login_says_the_same_whatever_was_wrong(client, username, password):
    make_user("admin", username="alice")
    response = client.post("/auth/login", data={"username": username, "password": password})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Usuário ou senha incorretos." in page
    assert AuditEntry.get().action == "login_failed"


def test_inactive_user_cannot_sign_in(client):
    user = make_user("admin", active=False)
    response = client.post("/auth/login", data={"username": user.username, "password": PASSWORD})
    assert response.status_code == 422


def test_login_redirects_only_to_this_site(client):
    admin = make_user("admin", username="alice")
    for target, expected in [("/credentials/", "/credentials/"), ("//evil.example/", "/accounts/"),
                             ("https://evil.example/", "/accounts/"), ("/\\evil.example", "/accounts/")]:
        client.post("/auth/logout")
        response = client.post(f"/auth/login?next={target}",
                               data={"username": admin.username, "password": PASSWORD})
        assert response.headers["Location"] == expected


def test_language_switch_is_remembered_for_the_user_and_the_browser(admin):
    admin.use_language("pt_BR")
    assert "<h1>Configuração SMTP</h1>" in admin.get("/accounts/").get_data(as_text=True)
    response = admin.post("/auth/language", data={"lang": "en", "next": "/accounts/"})
    assert response.status_code == 302
    assert "lang=en" in response.headers["Set-Cookie"]
    assert User.get_by_id(admin.user.id).locale == "en"
    page = admin.get("/accounts/").get_data(as_text=True)
    assert 'lang="en"' in page and "<h1>SMTP Configuration</h1>" in page


def test_language_switch_rejects_unknown_languages(client):
    assert client.post("/auth/language", data={"lang": "xx"}).status_code == 400


def test_cli_creates_the_first_user_on_a_fresh_instance(tmp_path, empty_database_config):
    from webapp import create_app

    fresh = create_app({"TESTING": True, "SECRET_KEY": "x", "DATABASE": str(tmp_path / "new.db"),
                        "VAULT_KEYS": Fernet.generate_key().decode(), **empty_database_config})
    fresh.instance_path = str(tmp_path)
    result = fresh.test_cli_runner().invoke(args=["users", "create", "first", "--password", PASSWORD])
    assert result.exit_code == 0, result.output
    assert User.get(User.username == "first").role == "admin"


def test_cli_creates_a_user_and_retires_the_setup_code(app, runner):
    issue_setup_code(app.instance_path)
    result = runner.invoke(args=["users", "create", "Carol", "--role", "operator", "--password", PASSWORD])
    assert result.exit_code == 0, result.output
    assert User.get(User.username == "carol").role == "operator"
    assert not (Path(app.instance_path) / "setup_code").exists()
    again = runner.invoke(args=["users", "create", "carol", "--password", PASSWORD])
    assert again.exit_code != 0
    assert "already exists" in again.output
