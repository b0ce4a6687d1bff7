"""Test connector: a TCP connection through the hop to a host:port, against real proxies (microsocks, pproxy).

DESIGN.md "Network connectors"; SECURITY.md items 18 (proxy down, wrong proxy password, refused destination:
the proxy's own reason, never a direct connection), 25 (CSRF), 26 (roles) and 32 (the stored password stays
with the proxy it was saved for).
"""
import base64
import re
import socket
import time

import pytest

from tests.fixtures.proxies import PROXY_PASSWORD, PROXY_USER
from tests.support.dialog import dialog_of, text_of
from tests.support.factories import make_account, make_client, make_connector
from webapp.models import AuditEntry, Connector


def connector_for(proxy, **overrides):
    fields = dict(name="Office proxy", kind=proxy.kind, host=proxy.host, port=proxy.port,
                  username=proxy.username or "", password=proxy.password)
    fields.update(overrides)
    return make_connector(**fields)


def try_connector(client, connector, host="127.0.0.1", port="25", htmx=True):
    data = {"host": host, "port": str(port)}
    url = f"/connectors/{connector.id}/test"
    return client.htmx("post", url, data=data) if htmx else client.post(url, data=data)


def audit_entries(connector) -> list[AuditEntry]:
    return list(AuditEntry.select().where(AuditEntry.action == "test", AuditEntry.object_id == connector.id,
                                          AuditEntry.object_type == "connector"))


def test_the_list_opens_the_dialog_in_place_or_as_a_page(admin):
    connector = make_connector(name="Office proxy")
    html = text_of(admin.get("/connectors/"))
    assert re.search(rf'<a href="/connectors/{connector.id}/test"\s+hx-get="/connectors/{connector.id}/test"\s+'
                     r'hx-target="#test-dialog" hx-swap="outerHTML">Test connector</a>', html)
    assert '<div id="test-dialog" hidden></div>' in html
    fragment = text_of(admin.htmx("get", f"/connectors/{connector.id}/test"))
    assert "<html" not in fragment
    assert re.search(r'<dialog open id="test-dialog"[^>]*hx-target="this" hx-swap="outerHTML"', fragment)
    assert '<h2 id="test-dialog-title">Test connector <em>Office proxy</em></h2>' in fragment
    page = text_of(admin.get(f"/connectors/{connector.id}/test"))
    assert "<html" in page and f'<form method="post" action="/connectors/{connector.id}/test"' in page
    # The edit form links to it too.
    assert f'href="/connectors/{connector.id}/test"' in text_of(admin.get(f"/connectors/{connector.id}/edit"))


def test_the_destination_defaults_to_an_account_using_the_connector(admin):
    connector = make_connector(name="Office proxy")
    html = text_of(admin.htmx("get", f"/connectors/{connector.id}/test"))
    assert re.search(r'<input [^>]*name="host"[^>]*value=""', html)
    make_account(host="smtp.example.net", secure=True, secure_type="tls", use_connector=True, connector=connector)
    html = text_of(admin.htmx("get", f"/connectors/{connector.id}/test"))
    assert re.search(r'<input [^>]*name="host"[^>]*value="smtp.example.net"', html)
    assert re.search(r'<input [^>]*name="port"[^>]*value="587"', html)


def test_success_through_microsocks(admin, socks5_proxy, smtp_server):
    server = smtp_server("plain")
    connector = connector_for(socks5_proxy)
    response = try_connector(admin, connector, port=server.port)
    assert response.status_code == 200
    dialog = dialog_of(text_of(response))
    assert '<span class="badge badge-ok">Connected</span>' in dialog
    assert re.search(rf"The connector reached 127\.0\.0\.1:{server.port} in \d+ ms\.", dialog)
    assert server.connections_after(1) == 1  # the proxy did connect; nothing was said
    assert server.commands == []
    [entry] = audit_entries(connector)
    assert entry.changes == {"ok": True, "target": f"127.0.0.1:{server.port}", "step": None}
    assert entry.actor_name == admin.user.username


@pytest.mark.parametrize("proxy_fixture", ["socks5_auth_proxy", "http_proxy", "http_auth_proxy", "socks4_proxy"])
def test_success_through_every_kind_of_hop(request, admin, smtp_server, proxy_fixture):
    proxy = request.getfixturevalue(proxy_fixture)
    server = smtp_server("plain")
    dialog = dialog_of(text_of(try_connector(admin, connector_for(proxy), port=server.port)))
    assert '<span class="badge badge-ok">Connected</span>' in dialog
    assert PROXY_PASSWORD not in dialog


def test_a_refused_destination_shows_the_proxys_own_reason(admin, socks5_proxy, closed_port):
    connector = connector_for(socks5_proxy)
    dialog = dialog_of(text_of(try_connector(admin, connector, port=closed_port)))
    assert "<strong>Step: proxy</strong>" in dialog
    assert (f"The network connector socks5 127.0.0.1:{socks5_proxy.port} could not open a connection to "
            f"127.0.0.1 port {closed_port} (") in dialog
    assert re.search(r"\(Connection refused\)|\(.*refused.*\)", dialog, re.I)
    [entry] = audit_entries(connector)
    assert entry.changes["ok"] is False and entry.changes["step"] == "proxy"


def test_a_proxy_that_is_down_is_explained_and_nothing_goes_direct(admin, proxy_down, smtp_server):
    server = smtp_server("plain")
    connector = connector_for(proxy_down)
    started = time.monotonic()
    dialog = dialog_of(text_of(try_connector(admin, connector, port=server.port)))
    assert time.monotonic() - started < 3
    assert "<strong>Step: proxy</strong>" in dialog
    assert f"Could not reach the network connector socks5 127.0.0.1:{proxy_down.port}" in dialog
    assert "temporary — may work later" in dialog
    assert server.connections == 0  # no direct fallback


def test_a_wrong_proxy_password_is_explained_without_the_password(admin, http_auth_proxy, smtp_server):
    server = smtp_server("plain")
    connector = connector_for(http_auth_proxy, password="Wrong-proxy-pass-77")
    html = text_of(try_connector(admin, connector, port=server.port))
    dialog = dialog_of(html)
    assert "<strong>Step: proxy</strong>" in dialog
    assert "refused the login" in dialog and "407" in dialog
    assert "Wrong-proxy-pass-77" not in html and server.connections == 0


@pytest.mark.parametrize("data,field,error", [
    ({"host": "", "port": "25"}, "host", "This field is required."),
    ({"host": "smtp.example.com\r\nX", "port": "25"}, "host", "Enter a host name"),
    ({"host": "smtp.example.com", "port": ""}, "port", "This field is required."),
    ({"host": "smtp.example.com", "port": "70000"}, "port", "Enter a port number from 1 to 65535."),
])
def test_invalid_destinations_answer_422_and_connect_nowhere(admin, data, field, error):
    connector = make_connector()
    response = admin.htmx("post", f"/connectors/{connector.id}/test", data=data)
    assert response.status_code == 422
    assert error in re.search(rf'<small class="field-error" id="{field}-error">(.*?)</small>',
                              text_of(response), re.S).group(1)
    assert audit_entries(connector) == []


def test_operators_may_test_auditors_may_not_anonymous_signs_in(app, client, socks5_proxy, smtp_server):
    server = smtp_server("plain")
    connector = connector_for(socks5_proxy)
    operator = make_client(app, "operator")
    assert "Test connector" in text_of(operator.get("/connectors/"))
    assert "badge-ok" in text_of(try_connector(operator, connector, port=server.port))
    auditor = make_client(app, "auditor")
    assert f"/connectors/{connector.id}/test" not in text_of(auditor.get("/connectors/"))
    assert auditor.get(f"/connectors/{connector.id}/test").status_code == 403
    assert try_connector(auditor, connector, port=server.port).status_code == 403
    assert client.htmx("get", f"/connectors/{connector.id}/test").status_code == 401
    assert server.connections_after(1) == 1


def test_without_the_csrf_token_no_socket_is_opened(admin, socks5_proxy, smtp_server):
    server = smtp_server("plain")
    connector = connector_for(socks5_proxy)
    response = admin.post(f"/connectors/{connector.id}/test", data={"host": "127.0.0.1", "port": server.port},
                          csrf=False)
    assert response.status_code == 400
    assert server.connections == 0 and audit_entries(connector) == []


def test_without_javascript_the_outcome_is_a_page(admin, socks5_proxy, smtp_server):
    server = smtp_server("plain")
    html = text_of(try_connector(admin, connector_for(socks5_proxy), port=server.port, htmx=False))
    assert "<html" in html and '<span class="badge badge-ok">Connected</span>' in html


def test_markup_in_the_connector_name_is_escaped(admin):
    connector = make_connector(name='<script>alert(1)</script>')
    html = text_of(admin.htmx("get", f"/connectors/{connector.id}/test"))
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# --- The stored password stays with its proxy (SECURITY 32) -----------------------------------------------

ENDPOINT_CHANGED = ("The stored password goes only to the proxy it was saved for, and the type, host or port changed: "
                    "enter the password again, or remove it.")


def edit_form(connector, **overrides) -> dict:
    """The edit form as the browser submits it untouched: the password field empty (keep the stored one)."""
    data = {"name": connector.name, "kind": connector.kind, "host": connector.host, "port": str(connector.port),
            "username": connector.username, "password": "", "remove_password": "no",
            "remote_dns": "yes" if connector.remote_dns else "no", "is_default": "no"}
    data.update(overrides)
    return data


def heard(listener: socket.socket) -> bytes:
    """What reached a stand-in proxy: the bytes of every connection waiting in its backlog."""
    received = b""
    listener.setblocking(False)
    while True:
        try:
            connection, _ = listener.accept()
        except BlockingIOError:
            return received
        with connection:
            connection.settimeout(1)
            try:
                while chunk := connection.recv(65536):
                    received += chunk
            except TimeoutError:
                pass


@pytest.fixture
def stand_in_proxy():
    """A loopback port anyone could listen on, standing in for another party's proxy: it records and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield listener
    listener.close()


@pytest.mark.parametrize("change", [{"kind": "http"}, {"port": "new"}, {"host": "localhost"},
                                    {"kind": "http", "port": "new"}], ids=["kind", "port", "host", "kind-and-port"])
def test_security_32_the_stored_password_does_not_follow_the_connector_to_a_new_endpoint(
        admin, socks5_auth_proxy, stand_in_proxy, smtp_server, change):
    server = smtp_server("plain")
    connector = connector_for(socks5_auth_proxy)
    new_port = str(stand_in_proxy.getsockname()[1])
    change = {name: new_port if value == "new" else value for name, value in change.items()}
    if change.get("kind") == "http" and "port" not in change:
        change["port"] = new_port  # an HTTP proxy on the stand-in's port: it would read the password in clear

    response = admin.htmx("post", f"/connectors/{connector.id}/edit", data=edit_form(connector, **change))
    try_connector(admin, connector, port=server.port)  # through whatever is saved now
    token = base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode().encode()
    received = heard(stand_in_proxy)
    assert PROXY_PASSWORD.encode() not in received and token not in received
    assert response.status_code == 422
    html = text_of(response)
    assert re.search(r'<small class="field-error" id="password-error">(.*?)</small>', html).group(1) == \
        ENDPOINT_CHANGED
    saved = Connector.get_by_id(connector.id)
    assert (saved.kind, saved.host, saved.port, saved.reveal_secret()) == (
        "socks5", socks5_auth_proxy.host, socks5_auth_proxy.port, PROXY_PASSWORD)
    assert server.connections_after(1) == 1  # the test went through the saved proxy, which took the stored password


def test_a_new_endpoint_is_saved_with_the_password_typed_again_or_removed(admin, socks5_auth_proxy, http_auth_proxy,
                                                                          smtp_server):
    server = smtp_server("plain")
    connector = connector_for(socks5_auth_proxy)
    data = edit_form(connector, kind="http", port=str(http_auth_proxy.port), password=PROXY_PASSWORD)
    assert admin.post(f"/connectors/{connector.id}/edit", data=data).status_code == 303
    dialog = dialog_of(text_of(try_connector(admin, connector, port=server.port)))
    assert '<span class="badge badge-ok">Connected</span>' in dialog

    connector = Connector.get_by_id(connector.id)
    data = edit_form(connector, port=str(socks5_auth_proxy.port), remove_password="yes", username="")
    assert admin.post(f"/connectors/{connector.id}/edit", data=data).status_code == 303
    assert Connector.get_by_id(connector.id).has_secret is False

    # Without a password, nothing follows: the endpoint may change freely.
    data = edit_form(Connector.get_by_id(connector.id), kind="socks5", port=str(http_auth_proxy.port))
    assert admin.post(f"/connectors/{connector.id}/edit", data=data).status_code == 303
