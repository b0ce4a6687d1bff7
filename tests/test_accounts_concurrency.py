"""SECURITY 30: two accounts made default at the same moment leave exactly one default."""

import pytest
from peewee import IntegrityError

from tests.support.concurrency import run_together
from tests.support.factories import make_account, make_user
from webapp.db import database
from webapp.models import SmtpAccount

ROUNDS = 25


def defaults() -> list[int]:
    return [a.id for a in SmtpAccount.select().where(SmtpAccount.is_default == True)]  # noqa: E712


def test_security_30_two_browsers_making_different_accounts_default_at_once_leave_exactly_one(app):
    accounts = [make_account(is_default=True), make_account(), make_account()]
    admins = [make_user("admin"), make_user("admin")]
    statuses = []

    def browser(admin, mine):
        def hammer():
            # Each thread has its own client, session and database connection, like two browsers.
            client = app.test_client()
            client.login(admin)
            for n in range(ROUNDS):
                account = mine[n % len(mine)]
                response = client.htmx("post", f"/accounts/{account.id}/make-default")
                statuses.append(response.status_code)
                current = defaults()
                assert len(current) <= 1, current
        return hammer

    run_together(browser(admins[0], accounts[:2]), browser(admins[1], accounts[1:]))

    assert statuses == [200] * (2 * ROUNDS)
    assert len(defaults()) == 1


def test_make_default_from_threads_with_their_own_connections(app):
    accounts = [make_account() for _ in range(4)]
    accounts[0].make_default()

    def worker(mine):
        def run():
            with database.connection_context():
                for _ in range(ROUNDS):
                    for account in mine:
                        SmtpAccount.get_by_id(account.id).make_default()
        return run

    run_together(worker(accounts[:2]), worker(accounts[2:]), worker(accounts[::-1]))

    assert len(defaults()) == 1


def test_the_database_refuses_a_second_default_row(app):
    make_account(is_default=True)
    other = make_account()
    with pytest.raises(IntegrityError):
        with database.atomic():
            make_account(is_default=True)
    with pytest.raises(IntegrityError):
        with database.atomic():
            SmtpAccount.update(is_default=True).where(SmtpAccount.id == other.id).execute()
    assert len(defaults()) == 1


def test_the_database_refuses_a_disabled_default(app):
    account = make_account(is_default=True)
    with pytest.raises(IntegrityError):
        with database.atomic():
            SmtpAccount.update(enabled=False).where(SmtpAccount.id == account.id).execute()
    assert SmtpAccount.get_by_id(account.id).enabled
