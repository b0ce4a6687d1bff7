"""Concurrency: many threads editing accounts, switching the default and enqueueing at once.

The account form carries the row's version (its updated_at); a save onto a row that changed since the form was
opened is refused with a form error, never a silent overwrite. Under load the invariants hold: one default, every
successful edit present, every enqueued notification stored, and no request answered 500 (SQLite waits on its
busy_timeout inside BEGIN IMMEDIATE instead of failing).
"""
import re
import threading

from tests.support.concurrency import run_together
from tests.support.factories import account_form, make_account, make_user
from webapp.db import database
from webapp.models import AuditEntry, Notification, SmtpAccount
from webapp.outbox import send_notification

CONFLICT = "This account was changed by someone else while you edited it: reload to see their changes"
VERSION = re.compile(r'<input[^>]*name="version"[^>]*>')
VALUE = re.compile(r'value="([^"]*)"')
DEFAULT_YES = re.compile(r'<input[^>]*name="is_default"[^>]*value="yes"[^>]*>|'
                         r'<input[^>]*value="yes"[^>]*name="is_default"[^>]*>')


def browser(app):
    """A signed-in admin in a browser of its own (own client, session and user), reading English."""
    client = app.test_client()
    client.login(make_user("admin"))
    return client.use_language("en")


def open_form(client, account_id) -> tuple[str, bool]:
    """GET the edit form as a browser would: the version it carries and whether it shows Default = Yes."""
    page = client.get(f"/accounts/{account_id}/edit").get_data(as_text=True)
    version = VALUE.search(VERSION.search(page).group(0)).group(1)
    default_yes = DEFAULT_YES.search(page)
    return version, bool(default_yes and "checked" in default_yes.group(0))


def edit(client, account, version, is_default=False, **fields):
    data = account_form(name=account.name, is_default="yes" if is_default else "no", version=version, **fields)
    return client.post(f"/accounts/{account.id}/edit", data=data)


def stored(account) -> SmtpAccount:
    return SmtpAccount.get_by_id(account.id)


# --- Optimistic locking on the account form ---------------------------------------------------------------------

def test_the_edit_form_carries_the_rows_version(app):
    account = make_account()
    version, _ = open_form(browser(app), account.id)
    assert version == account.updated_at.isoformat()
    assert 'name="version"' not in browser(app).get("/accounts/new").get_data(as_text=True)


def test_a_save_onto_an_account_changed_since_the_form_opened_is_refused_and_changes_nothing(app):
    make_account(is_default=True)  # another account is the default: the edits leave it alone
    account = make_account(port=2525)
    mine, theirs = browser(app), browser(app)
    my_version, _ = open_form(mine, account.id)
    their_version, _ = open_form(theirs, account.id)
    assert edit(theirs, account, their_version, port="2526").status_code == 303
    audit_entries = AuditEntry.select().count()

    response = edit(mine, account, my_version, port="2527", helo_name="mine.example.com")

    assert response.status_code == 422
    assert CONFLICT in response.get_data(as_text=True)
    assert stored(account).port == 2526 and stored(account).helo_name is None
    assert AuditEntry.select().count() == audit_entries
    # Submitting again still refuses: only reloading (a fresh version) lets the change through.
    assert edit(mine, account, my_version, port="2527").status_code == 422
    fresh, _ = open_form(mine, account.id)
    assert edit(mine, account, fresh, port="2527").status_code == 303
    assert stored(account).port == 2527


def test_with_htmx_the_conflict_comes_back_in_the_form_fragment(app):
    make_account(is_default=True)  # another account is the default: the edits leave it alone
    account = make_account()
    mine, theirs = browser(app), browser(app)
    version, _ = open_form(mine, account.id)
    assert edit(theirs, account, version, port="2526").status_code == 303

    data = account_form(name=account.name, version=version, port="2527")
    response = mine.htmx("post", f"/accounts/{account.id}/edit", data=data)

    body = response.get_data(as_text=True)
    assert response.status_code == 422 and "<html" not in body
    assert CONFLICT in body and 'id="account-form"' in body
    assert stored(account).port == 2526


def test_switching_the_default_moves_the_version_of_both_accounts(app):
    """A form opened on the old default cannot put Default = Yes back over the switch made meanwhile."""
    old, new = make_account(is_default=True), make_account()
    mine, theirs = browser(app), browser(app)
    version, default_yes = open_form(mine, old.id)
    assert default_yes
    assert theirs.htmx("post", f"/accounts/{new.id}/make-default").status_code == 200

    response = edit(mine, old, version, is_default=True, port="2600")

    assert response.status_code == 422
    assert [a.id for a in SmtpAccount.select().where(SmtpAccount.is_default == True)] == [new.id]  # noqa: E712
    assert stored(old).port is None


def test_disabling_moves_the_version_too(app):
    make_account(is_default=True)  # another account is the default: the edits leave it alone
    account = make_account()
    mine, theirs = browser(app), browser(app)
    version, _ = open_form(mine, account.id)
    assert theirs.post(f"/accounts/{account.id}/disable").status_code == 303

    response = edit(mine, account, version, port="2600")

    assert response.status_code == 422 and CONFLICT in response.get_data(as_text=True)
    assert stored(account).enabled is False


def test_the_conflict_is_translated(app):
    make_account(is_default=True)  # another account is the default: the edits leave it alone
    account = make_account()
    mine, theirs = browser(app).use_language("pt_BR"), browser(app)
    version, _ = open_form(mine, account.id)
    assert edit(theirs, account, version, port="2526").status_code == 303
    body = edit(mine, account, version, port="2527").get_data(as_text=True)
    assert "Esta conta foi alterada por outra pessoa" in body and CONFLICT not in body


# --- Everything at once ---------------------------------------------------------------------------------------

CONTESTED_EDITORS = 8
OWN_EDITORS = 3
ROUNDS = 12
SWITCH_ROUNDS = 15
ENQUEUERS = 4
ENQUEUES = 25


def test_security_30_editing_switching_the_default_and_enqueueing_at_once_keep_every_invariant(app):
    app.config.update(LOGIN_MAX_FAILURES_PER_USER=10_000, LOGIN_MAX_FAILURES_PER_ADDRESS=10_000)
    switched = [make_account(is_default=True), make_account(), make_account()]
    contested = make_account(port=2000)
    owned = [make_account(port=3000) for _ in range(OWN_EDITORS)]
    statuses, lock = [], threading.Lock()

    def answered(response):
        with lock:
            statuses.append(response.status_code)
        return response

    # Every contested editor opens the form before anyone saves: all hold the same, soon stale, version.
    contesters = [browser(app) for _ in range(CONTESTED_EDITORS)]
    opened = [open_form(client, contested.id)[0] for client in contesters]
    assert len(set(opened)) == 1
    contest = {}

    def contester(n):
        def run():
            contest[n] = answered(edit(contesters[n], contested, opened[n], port=str(2001 + n)))
        return run

    saved_ports = {}

    def own_editor(account):
        client = browser(app)

        def run():
            for n in range(ROUNDS):
                version, _ = open_form(client, account.id)
                response = answered(edit(client, account, version, port=str(3001 + n)))
                assert response.status_code == 303, response.get_data(as_text=True)
                saved_ports[account.id] = 3001 + n
        return run

    default_edits = []

    def default_editor(account):
        """Edits an account whose Default flips under it: each save either lands or is refused, never lost."""
        client = browser(app)

        def run():
            # Its rounds, then on until a save lands: the switchers may flip the Default under every one of the
            # rounds, but they stop after SWITCH_ROUNDS, and a save after that has nothing to conflict with.
            n = 0
            while n < ROUNDS or (not default_edits and n < 10 * SWITCH_ROUNDS):
                version, default_yes = open_form(client, account.id)
                response = answered(edit(client, account, version, is_default=default_yes, port=str(4001 + n)))
                assert response.status_code in (303, 422), response.status_code
                if response.status_code == 303:
                    default_edits.append(4001 + n)
                n += 1
        return run

    def switcher(accounts):
        client = browser(app)

        def run():
            for n in range(SWITCH_ROUNDS):
                account = accounts[n % len(accounts)]
                assert answered(client.htmx("post", f"/accounts/{account.id}/make-default")).status_code == 200
        return run

    ids = []

    def enqueuer(n):
        def run():
            try:
                for m in range(ENQUEUES):
                    notification_id = send_notification(to=f"user{n}-{m}@example.org", subject=f"n{n}-{m}",
                                                        text="hello")
                    assert notification_id
                    with lock:
                        ids.append(notification_id)
            finally:
                if not database.is_closed():
                    database.close()
        return run

    run_together(
        *(contester(n) for n in range(CONTESTED_EDITORS)),
        *(own_editor(account) for account in owned),
        default_editor(switched[1]),
        switcher(switched[:2]), switcher(switched[1:]),
        *(enqueuer(n) for n in range(ENQUEUERS)),
    )

    assert 500 not in statuses
    # One default, and it is enabled.
    defaults = list(SmtpAccount.select().where(SmtpAccount.is_default == True))  # noqa: E712
    assert len(defaults) == 1 and defaults[0].enabled
    # Of the editors holding the same version exactly one won; the others were told, and their values are nowhere.
    winners = [n for n, response in contest.items() if response.status_code == 303]
    assert len(contest) == CONTESTED_EDITORS and len(winners) == 1
    for n, response in contest.items():
        if n not in winners:
            assert response.status_code == 422 and CONFLICT in response.get_data(as_text=True)
    assert stored(contested).port == 2001 + winners[0]
    assert AuditEntry.select().where((AuditEntry.object_type == "smtp_account") & (AuditEntry.action == "update")
                                     & (AuditEntry.object_id == contested.id)).count() == 1
    # Every successful edit is present.
    for account in owned:
        assert stored(account).port == saved_ports[account.id] == 3000 + ROUNDS
    assert default_edits and stored(switched[1]).port == default_edits[-1]
    # No notification lost: every enqueue returned an id, and each id is a row.
    assert len(ids) == len(set(ids)) == ENQUEUERS * ENQUEUES
    assert Notification.select().where(Notification.id.in_(ids)).count() == len(ids)
