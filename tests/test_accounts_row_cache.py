"""The report's rows come from a cache keyed by everything they show (issue 6, P4): a cached page is the page rendered
afresh, whatever changed, in every language and role; and the rows hold nothing of the session, their actions
posting the page's one #row-action form, with JavaScript or without."""
import html
import re
from datetime import datetime

import pytest
from flask import request
from flask_babel import get_locale

from tests.factories import make_account, make_client, make_notification
from webapp.fragments import FragmentCache
from webapp.models import Notification, SmtpAccount

TOKEN = re.compile(r'("X-CSRFToken": "|name="csrf_token" value=")[^"]+')


@pytest.fixture
def admin(app):
    return make_client(app, "admin")


@pytest.fixture
def cache(app) -> FragmentCache:
    """The app's fragment cache, emptied of what signing in left there (the sign-in page's navigation)."""
    cache = app.extensions["fragments"]
    cache.clear()
    cache.hits = cache.misses = 0
    return cache


def page_text(response) -> str:
    """The page with its CSRF tokens blanked: they are signed with the time and change every second."""
    assert response.status_code == 200
    return TOKEN.sub(r"\1-", response.get_data(as_text=True))


def tbody(response) -> str:
    return re.search(r"<tbody>.*</tbody>", response.get_data(as_text=True), re.S).group(0)


def row(text: str, account) -> str:
    return re.search(rf'<tr id="account-{account.id}".*?</tr>', text, re.S).group(0)


def fresh(client, cache, url="/accounts/") -> str:
    """The page as rendered with an empty cache."""
    cache.clear()
    return page_text(client.get(url))


@pytest.fixture
def report(app):
    """A page of accounts that show every kind of value: default, disabled, tested, TLS, delivered to."""
    main = make_account(name="Main relay", is_default=True, last_test_at=datetime(2025, 3, 4, 5, 6),
                        last_test_ok=True, last_test_summary="250 2.0.0 OK", last_tls_verified=True,
                        secure=True, secure_type="tls")
    other = make_account(name="Other relay")
    make_account(name="Switched off", enabled=False, secure=True, secure_type="ssl", ignore_cert_errors=True)
    make_notification("sent", account=other, last_reply="250 queued")
    return main, other


def test_the_second_page_comes_from_the_cache_and_is_the_page_rendered_afresh(admin, cache, report):
    first = page_text(admin.get("/accounts/"))
    # Each row, the rows together, the results (count, links, headings, rows, pager) together, the filter form, the
    # navigation.
    assert (cache.misses, cache.hits, len(cache)) == (7, 0, 7)
    second = page_text(admin.get("/accounts/"))
    assert (cache.misses, cache.hits) == (7, 3)  # the navigation, the filter form, and the results together
    assert second == first == fresh(admin, cache)


def _rename(main, other):
    SmtpAccount.update(name="Renamed relay").where(SmtpAccount.id == other.id).execute()


def _disable(main, other):
    SmtpAccount.update(enabled=False).where(SmtpAccount.id == other.id).execute()


def _make_default(main, other):
    other.make_default()


def _record_a_test(main, other):
    SmtpAccount.update(last_test_at=datetime(2025, 5, 6, 7, 8), last_test_ok=False,
                       last_test_summary="421 4.3.2 try later").where(SmtpAccount.id == other.id).execute()


def _deliver_again(main, other):
    make_notification("failed", account=other, last_reply="550 5.1.1 no such user")


def _change_the_last_deliverys_outcome(main, other):
    # The same notification (same id) now failed: the row follows its values, not its id.
    Notification.update(status="failed", last_reply="554 refused").where(Notification.account == other.id).execute()


# Written behind the app's back (no updated_at moved): the key is what the row shows, not a version number.
@pytest.mark.parametrize("change", [_rename, _disable, _make_default, _record_a_test, _deliver_again,
                                    _change_the_last_deliverys_outcome])
def test_a_row_changes_when_any_value_it_shows_changes(admin, cache, report, change):
    main, other = report
    before = page_text(admin.get("/accounts/"))
    page_text(admin.get("/accounts/"))  # cached now

    change(main, other)
    after = page_text(admin.get("/accounts/"))

    assert row(after, other) != row(before, other)
    assert after == fresh(admin, cache)


def test_the_cached_filter_form_shows_what_each_request_typed(admin, cache, report):
    for url, typed in [("/accounts/?name=relay&enabled=no", ('value="relay"', '<option selected value="no">')),
                       ("/accounts/?name=Main&sender=ops", ('value="Main"', 'value="ops"')),
                       ("/accounts/", ('<option selected value="">',))]:
        first = page_text(admin.get(url))
        form = re.search(r'<form id="account-filters".*?</form>', first, re.S).group(0)
        assert all(part in form for part in typed), url
        assert page_text(admin.get(url)) == first == fresh(admin, cache, url)


def test_after_a_change_only_the_changed_row_renders_again(admin, cache, report):
    main, other = report
    page_text(admin.get("/accounts/"))
    misses, hits = cache.misses, cache.hits

    _rename(main, other)
    page_text(admin.get("/accounts/"))

    # Missed: the results, the page's rows together, and the renamed row; found: the navigation, the filter form, and
    # the two rows that did not change.
    assert (cache.misses - misses, cache.hits - hits) == (3, 4)


def test_the_results_follow_the_count_and_the_pages_when_the_rows_shown_stay_the_same(app, admin, cache, report):
    app.config["PAGE_SIZE"] = 2
    first = page_text(admin.get("/accounts/"))
    assert "3 accounts" in first and "Page 1 of 2" in first

    for _ in range(3):  # on the pages after this one: the rows shown stay the same
        make_account()
    after = page_text(admin.get("/accounts/"))

    assert "6 accounts" in after and "Page 1 of 3" in after
    assert tbody_text(after) == tbody_text(first)
    assert after == fresh(admin, cache)


def tbody_text(text: str) -> str:
    return re.search(r"<tbody>.*</tbody>", text, re.S).group(0)


def test_a_page_from_the_cache_builds_no_model_and_no_sql(admin, cache, report, monkeypatch):
    from webapp.accounts import report as report_module
    from webapp.db import ShapedSql

    built = {"models": 0, "sql": 0}
    make_models, build_sql = report_module.instances, ShapedSql.__call__

    def counting_models(*args):
        built["models"] += 1
        return make_models(*args)

    def counting_sql(self, shape, params, build):
        def counted():
            built["sql"] += 1
            return build()
        return build_sql(self, shape, params, counted)

    monkeypatch.setattr(report_module, "instances", counting_models)
    monkeypatch.setattr(ShapedSql, "__call__", counting_sql)
    url = "/accounts/?name=RELAY&enabled=yes&sort=-name"
    first = page_text(admin.get(url))
    assert built == {"models": 1, "sql": 2}  # the count's and the page's SQL, once for this shape of filter
    assert "Main relay" in first and "Other relay" in first and "Switched off" not in first

    assert page_text(admin.get(url)) == first
    assert page_text(admin.get("/accounts/?name=other&enabled=yes&sort=-name")) != first  # same shape, new values
    assert built == {"models": 2, "sql": 2}


def test_a_row_changes_with_where_its_links_lead_back_to(admin, cache, report):
    main, other = report
    plain = page_text(admin.get("/accounts/"))
    sorted_by_name = page_text(admin.get("/accounts/?sort=name"))
    assert "next=/accounts/?sort%3Dname" in row(sorted_by_name, other)
    assert "next=/accounts/?sort%3Dname" not in row(plain, other)
    assert sorted_by_name == fresh(admin, cache, "/accounts/?sort=name")


def test_one_cache_gives_each_language_and_role_its_own_rows(app, cache):
    account = make_account(name="Shared relay", is_default=True)
    clients = {
        "admin en": make_client(app, "admin"),
        "admin pt_BR": make_client(app, "admin", language="pt_BR"),
        "operator en": make_client(app, "operator"),
        "auditor en": make_client(app, "auditor"),
    }
    cache.clear()
    rows = {who: row(page_text(client.get("/accounts/")), account) for who, client in clients.items()}

    # For each viewer the row, the rows together, the results, the navigation; the filter form in each language.
    assert len(cache) == 4 * 4 + 2 and len(set(rows.values())) == 4
    assert ">Disable<" in rows["admin en"] and ">Desativar<" in rows["admin pt_BR"]
    for viewer in ("operator en", "auditor en"):
        assert "/disable" not in rows[viewer] and "/make-default" not in rows[viewer] and "/edit" not in rows[viewer]
    assert f'hx-get="/accounts/{account.id}/test?next=' in rows["operator en"]
    assert re.search(r"<button [^>]*disabled\s+title=\"Only operators and administrators can test an account.\"",
                     rows["auditor en"])
    for who, client in clients.items():
        assert row(fresh(client, cache), account) == rows[who], who


def test_rows_hold_nothing_of_the_session(app, admin, report):
    main, other = report
    response = admin.get("/accounts/")
    token = re.search(r'"X-CSRFToken": "([^"]+)"', response.get_data(as_text=True)).group(1)
    rows = tbody(response)
    assert "csrf" not in rows and token not in rows
    # Rows and pages of another admin (another session) are the same.
    other_admin = make_client(app, "admin")
    assert tbody(other_admin.get("/accounts/")) == rows
    row_action = admin.htmx("post", f"/accounts/{other.id}/disable").get_data(as_text=True)
    assert "csrf" not in row_action


def test_the_page_holds_one_row_action_form_with_the_sessions_token(app, admin, report):
    text = admin.get("/accounts/").get_data(as_text=True)
    forms = re.findall(r'<form id="row-action" method="post" hidden>(.*?)</form>', text, re.S)
    assert len(forms) == 1
    assert re.fullmatch(r'<input type="hidden" name="csrf_token" value="[^"]+">', forms[0])
    assert text.count('form="row-action"') == 6  # Disable (or Enable) and Make default, in three rows
    # The results block htmx swaps in brings it along; viewers, who have no buttons, get none.
    assert 'id="row-action"' in admin.htmx("get", "/accounts/?name=relay").get_data(as_text=True)
    assert 'id="row-action"' not in make_client(app, "operator").get("/accounts/").get_data(as_text=True)


def _button(text: str, label: str, account) -> dict:
    """A row button's attributes, unescaped as the browser reads them."""
    tag = re.search(rf'<button type="submit" form="row-action" formaction="/accounts/{account.id}/[^>]*>{label}<',
                    text).group(0)
    return {name: html.unescape(value) for name, value in re.findall(r'([\w-]+)="([^"]*)"', tag)}


def test_without_javascript_a_row_button_posts_the_page_form_to_its_formaction(admin, report):
    main, other = report
    text = admin.get("/accounts/?name=relay").get_data(as_text=True)
    token = re.search(r'<form id="row-action"[^>]*><input type="hidden" name="csrf_token" value="([^"]+)"',
                      text).group(1)
    button = _button(text, "Disable", other)
    assert button["formaction"] == f"/accounts/{other.id}/disable?next=/accounts/?name%3Drelay"

    # What the browser sends: the button's form (its token) to the button's formaction; no CSRF header.
    response = admin.post(button["formaction"], data={"csrf_token": token}, csrf=False)

    assert response.status_code == 303
    assert response.headers["Location"] == "/accounts/?name=relay"
    assert not SmtpAccount.get_by_id(other.id).enabled
    assert "Account “Other relay” disabled." in admin.get("/accounts/?name=relay").get_data(as_text=True)
    assert admin.post(button["formaction"], data={}, csrf=False).status_code == 400  # the token is still needed


def test_with_htmx_a_row_button_swaps_in_the_row_the_page_would_show(admin, cache, report):
    main, other = report
    text = admin.get("/accounts/?sort=name").get_data(as_text=True)
    button = _button(text, "Make default", other)
    assert button["hx-post"] == button["formaction"] == f"/accounts/{other.id}/make-default?next=/accounts/?sort%3Dname"
    assert button["hx-target"] == "closest tr"

    # What htmx sends: the button's form (htmx adds a button's form= form to a POST) and the body's CSRF header.
    token = re.search(r'<form id="row-action"[^>]*><input type="hidden" name="csrf_token" value="([^"]+)"',
                      text).group(1)
    response = admin.htmx("post", button["hx-post"], data={"csrf_token": token})

    assert response.status_code == 200
    swapped = response.get_data(as_text=True)
    new_row, old_row = swapped.split(f'<tr id="account-{main.id}" hx-swap-oob="true"')
    old_row = f'<tr id="account-{main.id}" ' + old_row
    after = page_text(admin.get("/accounts/?sort=name"))
    # Both rows are the ones the page now shows, their links leading back to the sorted report.
    assert new_row.strip() == row(after, other)
    assert old_row.strip() == row(after, main)
    assert "badge-default" in new_row and "badge-default" not in old_row
    assert after == fresh(admin, cache, "/accounts/?sort=name")


def test_the_disabled_buttons_keep_their_reasons(admin, report):
    main, other = report
    text = admin.get("/accounts/").get_data(as_text=True)
    switched_off = SmtpAccount.get(SmtpAccount.name == "Switched off")
    assert re.search(r'disabled title="The default account cannot be disabled\.[^"]*">Disable<', row(text, main))
    assert re.search(r'disabled title="This is the default account\.">Make default<', row(text, main))
    assert re.search(r'disabled title="Enable the account first[^"]*">Make default<', row(text, switched_off))
    assert ">Enable<" in row(text, switched_off)
    assert "disabled" not in _button(text, "Disable", other) and "disabled" not in _button(text, "Make default", other)


# --- The cache itself ---------------------------------------------------------------------------------------------


def test_the_cache_keeps_the_most_recently_used_fragments(app):
    cache = FragmentCache(size=2)
    made = []

    def macro(name):
        made.append(name)
        return f"<p>{name}</p>"

    with app.test_request_context():
        for name in ("a", "b", "a", "c", "a", "b"):
            assert cache.cached(macro, name, key=name) == f"<p>{name}</p>"
    assert made == ["a", "b", "c", "b"]  # "a" was used again before "c" came, so "b" went first
    assert len(cache) == 2


def test_the_cache_holds_a_bounded_number_of_characters(app):
    cache = FragmentCache(size=100, chars=25)
    with app.test_request_context():
        for name in ("a", "b", "c"):
            cache.cached(lambda name: name * 10, name, key=name)
        assert len(cache) == 2  # 30 characters were too many: the oldest went
        cache.cached(lambda: "x" * 40, key="big")
    assert len(cache) == 1  # alone over the bound, the newest fragment is still kept until the next one


def test_a_model_in_a_key_stands_for_its_values_not_its_id(app):
    """peewee models compare by id alone: two versions of one row are equal, and must not share a fragment."""
    cache = FragmentCache()
    account = make_account(name="Before")
    renamed = SmtpAccount.get_by_id(account.id)
    renamed.name = "After"
    assert renamed == account

    def name_of(account):
        return account.name

    with app.test_request_context():
        assert cache.cached(name_of, account, key=account) == "Before"
        assert cache.cached(name_of, renamed, key=renamed) == "After"
        assert cache.cached(name_of, account, key=account) == "Before"
    assert len(cache) == 2


def test_the_key_includes_the_language_and_the_url_root(app):
    cache = FragmentCache()
    made = []

    def macro():
        made.append(f"{get_locale()} {request.script_root}")
        return made[-1]

    for language, root in [("en", ""), ("pt_BR", ""), ("en", "/smtpdesk"), ("en", ""), ("pt_BR", "")]:
        # A fresh app context, as each request has (the fixture's would keep one language in g).
        with app.app_context(), app.test_request_context(headers={"Cookie": f"lang={language}"},
                                                         base_url=f"http://localhost{root}/"):
            assert cache.cached(macro, key="same") == f"{language} {root}"
    assert made == ["en ", "pt_BR ", "en /smtpdesk"]
