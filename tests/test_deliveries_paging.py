"""The deliveries list a page at a time by keyset: Older / Newer links that follow a notification (not a page
number), the filters kept in them, the count shown only when it is known for free, and a fixed number of queries
whatever the size of the outbox."""
import json
import re
import uuid
from datetime import datetime, timedelta

import pytest

from tests.support.factories import QueryCounter, make_account
from webapp.models import Notification

PAGE = 30


def rows(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr id="notification-(\d+)"', html)]


def link(html: str, label: str) -> str | None:
    """The href of the pager link with this label (Newest, Newer, Older), or None."""
    found = re.search(rf'<a href="([^"]+)"[^>]*>[«‹ ]*{label}[ ›]*</a>', html)
    return found.group(1).replace("&amp;", "&") if found else None


def stored(account, count: int, at=None, status="sent", to=None, start=datetime(2025, 3, 1, 8)) -> list[int]:
    """Insert `count` notifications at once (one second apart from `start`, or all at the same time `at`); their
    ids, oldest first."""
    Notification.insert_many([
        dict(account=account.id, status=status, to_addrs=json.dumps([to or f"user{n}@example.com"]),
             subject=f"Report {n}", message_id=f"<{uuid.uuid4().hex}@test>",
             created_at=at or start + timedelta(seconds=n), updated_at=start, next_attempt_at=start)
        for n in range(count)]).execute()
    return [n.id for n in Notification.select(Notification.id).order_by(Notification.id.desc()).limit(count)][::-1]


@pytest.fixture
def account(app):
    return make_account(name="Billing", is_default=True)


def test_pages_go_older_and_newer_by_keyset(account, auditor):
    ids = stored(account, 70)
    newest_first = ids[::-1]

    first = auditor.get("/deliveries/").get_data(as_text=True)
    assert rows(first) == newest_first[:PAGE]
    assert link(first, "Newer") is None and link(first, "Newest") is None
    assert link(first, "Older") == f"/deliveries/?before={newest_first[PAGE - 1]}"

    second = auditor.get(link(first, "Older")).get_data(as_text=True)
    assert rows(second) == newest_first[PAGE:2 * PAGE]
    assert link(second, "Newer") == f"/deliveries/?after={newest_first[PAGE]}"
    assert link(second, "Newest") == "/deliveries/"

    last = auditor.get(link(second, "Older")).get_data(as_text=True)
    assert rows(last) == newest_first[2 * PAGE:]
    assert link(last, "Older") is None

    back = auditor.get(link(last, "Newer")).get_data(as_text=True)
    assert rows(back) == rows(second)
    # Fewer than a page above it: Newer gives the newest page, whole.
    top = auditor.get(link(back, "Newer")).get_data(as_text=True)
    assert rows(top) == rows(first) and link(top, "Newer") is None


def test_notifications_queued_at_the_same_moment_are_paged_by_id(account, auditor):
    """created_at ties (a burst in one microsecond, or a bulk import) are broken by id: none shown twice or lost."""
    ids = stored(account, 45, at=datetime(2025, 3, 1, 9))
    earlier = stored(account, 20)  # stored later, created earlier: the order is by time first
    seen, url = [], "/deliveries/"
    while url:
        html = auditor.get(url).get_data(as_text=True)
        seen += rows(html)
        url = link(html, "Older")
    assert seen == ids[::-1] + earlier[::-1]


def test_new_notifications_do_not_shift_an_older_page(account, auditor):
    ids = stored(account, 40)
    older = link(auditor.get("/deliveries/").get_data(as_text=True), "Older")
    before = rows(auditor.get(older).get_data(as_text=True))
    stored(account, 5, start=datetime(2025, 3, 2))
    assert rows(auditor.get(older).get_data(as_text=True)) == before == ids[::-1][PAGE:]


def test_page_links_keep_the_filters_and_the_rows_fragment_uses_them(account, auditor):
    stored(account, 35, status="failed", to="ana@example.com")
    stored(account, 10, status="sent", to="ana@example.com")
    first = auditor.get("/deliveries/?status=failed&recipient=ana").get_data(as_text=True)
    older = link(first, "Older")
    assert older.startswith("/deliveries/?status=failed&recipient=ana&before=")
    assert f'hx-get="{older}"'.replace("&", "&amp;") in first and 'hx-push-url="true"' in first

    response = auditor.htmx("get", older, headers={"HX-Trigger": "delivery-rows"})
    fragment = response.get_data(as_text=True)
    assert "<html" not in fragment and fragment.lstrip().startswith('<section id="delivery-rows"')
    assert len(rows(fragment)) == 5
    # The rows refresh themselves at the same place, and a row's links come back to it.
    assert f'hx-get="{older}"'.replace("&", "&amp;") in fragment.split(">")[0]
    assert link(fragment, "Newer").startswith("/deliveries/?status=failed&recipient=ana&after=")
    assert "next=/deliveries/?status%3Dfailed%26recipient%3Dana%26before%3D" in fragment.replace("%2F", "/")


@pytest.mark.parametrize("query", ["before=abc", "before=-3", "after=%C2%B2", "before=99999999999999999999999",
                                   "page=2"])
def test_a_cursor_that_is_not_a_notification_number_means_the_newest_page(account, auditor, query):
    ids = stored(account, 35)
    response = auditor.get(f"/deliveries/?{query}")
    assert response.status_code == 200
    assert rows(response.get_data(as_text=True)) == ids[::-1][:PAGE]


def test_a_cursor_of_no_notification_shows_nothing_and_a_way_back(account, auditor):
    stored(account, 3)
    html = auditor.get("/deliveries/?before=987654").get_data(as_text=True)
    assert rows(html) == [] and link(html, "Newest") == "/deliveries/"


# --- The count: never a COUNT over the whole match ------------------------------------------------------------------


def test_the_count_is_shown_when_it_costs_nothing(account, auditor):
    stored(account, 40, status="sent", to="ana@example.com")
    stored(account, 3, status="failed", to="bia@example.com")
    assert "43 notifications" in auditor.get("/deliveries/").get_data(as_text=True)  # the counts by status
    assert "40 notifications · filtered" in auditor.get("/deliveries/?status=sent").get_data(as_text=True)
    assert "3 notifications · filtered" in auditor.get("/deliveries/?recipient=bia").get_data(as_text=True)
    many = auditor.get("/deliveries/?recipient=ana").get_data(as_text=True)
    assert "More than 30 notifications · filtered" in many
    older = auditor.get(link(many, "Older")).get_data(as_text=True)
    assert re.search(r'<p class="count" role="status">\s*Notifications · filtered', older)
    assert "43 notifications" in auditor.get(link(auditor.get("/deliveries/").get_data(as_text=True),
                                                    "Older")).get_data(as_text=True)


# --- Queries -----------------------------------------------------------------------------------------------------


def queries_for(client, url: str, htmx: bool = False) -> int:
    with QueryCounter() as queries:
        response = client.htmx("get", url) if htmx else client.get(url)
    assert response.status_code == 200
    return queries.count


@pytest.mark.parametrize("url,extra", [
    ("/deliveries/", 2),  # the accounts of the filter, the page of rows
    ("/deliveries/?status=sent&account=1&date_from=2025-03-01", 2),
    ("/deliveries/?before=5", 2),
    ("/deliveries/?recipient=user1", 3),  # and how common the term is
    ("/deliveries/?status=sent&recipient=user4321%40example.com&before=9", 3),
])
def test_a_page_costs_the_same_few_queries_whatever_the_outbox_holds(account, auditor, url, extra):
    # The counts' own refresh: signing in, and the counts by status with their fingerprint (one query).
    baseline = queries_for(auditor, "/deliveries/counts", htmx=True)
    stored(account, 5)
    small = queries_for(auditor, url)
    stored(account, 200)
    stored(account, 200, to="user4321@example.com")
    assert queries_for(auditor, url) == small == baseline + extra
    assert queries_for(auditor, url, htmx=True) == small  # the rows alone: the same queries

