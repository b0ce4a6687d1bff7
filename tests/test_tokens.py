"""The API tokens screen (admins): a token is shown once in full, stored only as its sha256, listed by prefix,
revoked after confirmation; every change audited without the token or its hash."""
import hashlib
import re

import pytest

from tests.support.factories import make_account, make_client
from webapp.models import ApiToken, AuditEntry, Notification, User

TOKEN_IN_PAGE = re.compile(r'id="new-token" type="text" value="(smtpdesk_[A-Za-z0-9_-]+)"')


def create(client, name="billing service", **kwargs):
    response = client.post("/tokens/new", data={"name": name}, **kwargs)
    match = TOKEN_IN_PAGE.search(response.get_data(as_text=True))
    return response, match.group(1) if match else None


def test_a_new_token_is_shown_once_in_full_and_stored_only_as_its_hash(admin):
    response, token = create(admin)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True)
    assert "Copy it now: it is shown only this once." in html and "Authorization: Bearer" in html
    row = ApiToken.get()
    assert row.name == "billing service" and row.created_by.username == "alice"
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert row.prefix == token[:15] and token.startswith("smtpdesk_") and len(token) > 40

    listing = admin.get("/tokens/").get_data(as_text=True)
    assert token not in listing and row.token_hash not in listing
    assert f"<code>{row.prefix}…</code>" in listing
    assert "billing service" in listing and "alice" in listing and "never" in listing and ">active<" in listing
    assert token not in admin.get("/tokens/new").get_data(as_text=True)


def test_the_token_works_with_the_api_and_its_use_shows_in_the_list(app, admin):
    make_account(is_default=True)
    _response, token = create(admin)
    sent = admin.post("/api/v1/notifications", json={"to": "a@example.com", "subject": "s", "text": "t"},
                      headers={"Authorization": f"Bearer {token}"}, csrf=False)
    assert sent.status_code == 202
    listing = admin.get("/tokens/").get_data(as_text=True)
    row = re.search(r'<tr id="token-\d+"[^>]*>(.*?)</tr>', listing, re.S).group(1)
    assert "never" not in row


def test_creating_from_htmx_swaps_the_form_for_the_token(admin):
    response = admin.htmx("post", "/tokens/new", data={"name": "ci"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html
    assert html.lstrip().startswith('<div id="token-form">') and TOKEN_IN_PAGE.search(html)


@pytest.mark.parametrize("name,message", [
    ("", "This field is required."),
    ("ci\r\nX-Evil: 1", "Line breaks and control characters are not allowed here."),
    ("x" * 101, "Use at most 100 characters."),
])
def test_an_invalid_name_is_422_and_nothing_is_created(admin, name, message):
    response = admin.htmx("post", "/tokens/new", data={"name": name})
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert not TOKEN_IN_PAGE.search(response.get_data(as_text=True))
    assert ApiToken.select().count() == 0


def test_an_active_token_name_cannot_be_reused_but_a_revoked_ones_can(admin):
    create(admin, "ci")
    response, token = create(admin, "ci")
    assert response.status_code == 422 and token is None
    assert "An active token already has this name." in response.get_data(as_text=True)
    admin.post(f"/tokens/{ApiToken.get().id}/revoke")
    response, token = create(admin, "ci")
    assert response.status_code == 200 and token


def test_creation_is_audited_with_name_and_prefix_never_the_token_or_its_hash(admin):
    _response, token = create(admin)
    row = ApiToken.get()
    entry = AuditEntry.get(AuditEntry.action == "create", AuditEntry.object_type == "api_token")
    assert entry.actor_name == "alice" and entry.object_name == "billing service"
    assert entry.changes == {"name": [None, "billing service"], "prefix": [None, row.prefix]}
    audit_page = admin.get("/audit/").get_data(as_text=True) + admin.get("/audit/export.csv").get_data(as_text=True)
    assert token not in audit_page and row.token_hash not in audit_page


def test_revoking_asks_first_then_refuses_the_token_at_once(app, admin):
    make_account(is_default=True)
    _response, token = create(admin)
    row = ApiToken.get()
    listing = admin.get("/tokens/").get_data(as_text=True)
    assert 'data-confirm="Revoke the token “billing service”?' in listing
    assert f'hx-post="/tokens/{row.id}/revoke" hx-confirm=' in listing

    response = admin.post(f"/tokens/{row.id}/revoke")
    assert response.status_code == 303 and response.headers["Location"] == "/tokens/"
    assert ApiToken.get_by_id(row.id).revoked
    entry = AuditEntry.get(AuditEntry.action == "revoke")
    assert entry.object_id == row.id and list(entry.changes) == ["revoked_at"]
    listing = admin.get("/tokens/").get_data(as_text=True)
    assert "revoked: API calls with it are refused from now on" in listing and ">revoked<" in listing
    assert f"/tokens/{row.id}/revoke" not in listing  # nothing more to revoke
    refused = admin.get("/api/v1/notifications/1", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401


def test_revoking_from_htmx_reloads_the_list_and_twice_is_refused(admin):
    create(admin)
    row = ApiToken.get()
    response = admin.htmx("post", f"/tokens/{row.id}/revoke")
    assert response.headers["HX-Redirect"] == "/tokens/"
    again = admin.htmx("post", f"/tokens/{row.id}/revoke")
    assert again.status_code == 409 and "already revoked" in again.get_data(as_text=True)
    assert AuditEntry.select().where(AuditEntry.action == "revoke").count() == 1
    assert admin.post("/tokens/999/revoke").status_code == 404


@pytest.mark.parametrize("role", ["operator", "auditor"])
def test_only_admins_see_or_change_tokens(app, role):
    create(make_client(app, "admin"))
    client = make_client(app, role)
    row = ApiToken.get()
    assert client.get("/tokens/").status_code == 403
    assert client.get("/tokens/new").status_code == 403
    assert client.post("/tokens/new", data={"name": "mine"}).status_code == 403
    assert client.post(f"/tokens/{row.id}/revoke").status_code == 403
    assert ApiToken.select().count() == 1 and not ApiToken.get().revoked
    assert 'href="/tokens/"' not in client.get("/deliveries/").get_data(as_text=True)


def test_changes_need_the_csrf_token(admin):
    assert admin.post("/tokens/new", data={"name": "ci"}, csrf=False).status_code == 400
    assert ApiToken.select().count() == 0


def test_a_name_with_markup_is_escaped(admin):
    create(admin, "<script>alert(1)</script>")
    listing = admin.get("/tokens/").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in listing and "&lt;script&gt;alert(1)&lt;/script&gt;" in listing


# --- SECURITY 33: a token works only while its owner may send ---------------------------------------------------

NOTIFICATION = {"to": "a@example.com", "subject": "Disk full", "text": "/var is at 97%"}


def api_call(app, token):
    """A POST and a GET through the real API, from a client with no session: their two statuses and the POST's body."""
    caller = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    posted = caller.post("/api/v1/notifications", json=NOTIFICATION, headers=headers, csrf=False)
    read = caller.get("/api/v1/notifications/1", headers=headers)
    return posted.status_code, read.status_code, posted.get_json()


def edit_user(admin, user, **change):
    """Change a user from the users screen, as another admin does."""
    data = {"role": user.role, "active": "yes", "password": "", "confirm": "", **change}
    response = admin.post(f"/users/{user.id}/edit", data=data)
    assert response.status_code == 303, response.get_data(as_text=True)


@pytest.mark.parametrize("change", [{"role": "auditor"}, {"active": "no"}], ids=["demoted to auditor", "deactivated"])
def test_security_33_a_token_stops_working_when_its_owner_may_no_longer_send(app, admin, change):
    make_account(is_default=True)
    bob = make_client(app, "admin", username="bob")
    _response, token = create(bob)
    assert api_call(app, token)[:2] == (202, 200)

    edit_user(admin, bob.user, **change)
    posted, read, body = api_call(app, token)
    assert (posted, read) == (401, 401)
    assert body["error"] == "invalid_token"
    assert body["message"].startswith("This API token's owner may no longer send notifications")
    assert Notification.select().count() == 1  # nothing queued with the refused call
    assert not ApiToken.get().revoked  # refused because of its owner, not revoked


def test_security_33_a_token_whose_owner_was_deleted_is_refused(app, admin):
    make_account(is_default=True)
    bob = make_client(app, "admin", username="bob")
    _response, token = create(bob)
    User.delete_by_id(bob.user.id)  # not possible from the screens; the foreign key sets created_by to NULL
    assert ApiToken.get().created_by is None
    posted, read, body = api_call(app, token)
    assert (posted, read) == (401, 401) and "owner" in body["message"]
    assert Notification.select().count() == 0


def test_a_token_follows_its_owners_access_as_it_is_now(app, admin):
    """Operators may send, so a token of an admin made operator works; reactivating the owner revives it."""
    make_account(is_default=True)
    bob = make_client(app, "admin", username="bob")
    _response, token = create(bob)
    edit_user(admin, bob.user, role="operator")
    assert api_call(app, token)[:2] == (202, 200)
    edit_user(admin, User.get_by_id(bob.user.id), active="no")
    assert api_call(app, token)[0] == 401
    edit_user(admin, User.get_by_id(bob.user.id), active="yes")
    assert api_call(app, token)[0] == 202


def row_of(listing, token_id) -> str:
    return re.search(rf'<tr id="token-{token_id}"[^>]*>(.*?)</tr>', listing, re.S).group(1)


def test_the_list_shows_each_tokens_owner_and_why_a_token_is_inactive(app, admin):
    tokens = {}
    for username, change in [("bob", {}), ("carol", {"role": "auditor"}), ("dave", {"active": "no"}),
                             ("erin", None)]:
        owner = make_client(app, "admin", username=username)
        create(owner, f"{username}'s system")
        tokens[username] = ApiToken.get(ApiToken.name == f"{username}'s system").id
        if change:
            edit_user(admin, owner.user, **change)
        elif change is None:
            User.delete_by_id(owner.user.id)
    listing = admin.get("/tokens/").get_data(as_text=True)
    assert "<th scope=\"col\">Owner</th>" in listing
    bob = row_of(listing, tokens["bob"])
    assert "bob" in bob and ">active<" in bob and ">inactive<" not in bob
    carol = row_of(listing, tokens["carol"])
    assert "carol" in carol and ">inactive<" in carol and "The role of carol (Auditor) may not send." in carol
    dave = row_of(listing, tokens["dave"])
    assert "dave" in dave and ">inactive<" in dave and "dave is deactivated." in dave
    erin = row_of(listing, tokens["erin"])
    assert ">inactive<" in erin and "deleted user" in erin and "Its owner was deleted." in erin
    assert "it works only while the owner is active and their role may send" in listing
    # An inactive token can still be revoked, so it cannot come back with its owner's access.
    assert f"/tokens/{tokens['carol']}/revoke" in listing and f"/tokens/{tokens['erin']}/revoke" in listing
