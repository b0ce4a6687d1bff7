"""SMTP through real proxies on 127.0.0.1 (microsocks SOCKS5, pproxy HTTP CONNECT and SOCKS4): every TLS mode works
through every hop, and every proxy failure is a PROXY error with the proxy's own reason, never a direct connection."""
import socket
import threading
import time

import pytest

from tests.fixtures.proxies import PROXY_PASSWORD
from webapp.mail import (
    Hop,
    MailError,
    SmtpSettings,
    Step,
    compose_test_message,
    connectors,
    open_connection,
    send_message,
)

USER = "mailer@example.com"
PASSWORD = "Sm7p-s3cret-pa55"
BOUNCE = "bounce@example.com"
RECIPIENT = "to@example.net"
PROXIES = ["socks5_proxy", "socks5_auth_proxy", "http_proxy", "http_auth_proxy", "tinyproxy_auth_proxy",
           "socks4_proxy"]
MODES = {
    "plain": {},
    "starttls+auth": {"users": {USER: PASSWORD}},
    "ssl+auth": {"users": {USER: PASSWORD}},
}


def send(settings):
    message = compose_test_message(sender="Ops <ops@example.com>", to=RECIPIENT, subject="TEST MESSAGE!",
                                   body="ATTENTION: THIS IS A TEST MESSAGE!")
    return send_message(settings, message, envelope_from=BOUNCE, recipients=[RECIPIENT])


def behind(hop, port, host="127.0.0.1"):
    """Settings for a destination behind the hop (no SMTP server needed: the hop fails first)."""
    return SmtpSettings(host=host, port=port, mode="plain", hop=hop, timeout=2, deadline=4)


def shown(result) -> str:
    error = result.error
    return "\n".join([*result.transcript, str(error), repr(error), error.hint % error.params,
                      *map(str, error.params.values())])


@pytest.mark.parametrize("proxy_name", PROXIES)
@pytest.mark.parametrize("mode", MODES)
def test_delivery_through_every_hop_in_every_mode(request, smtp_server, certificates, proxy_name, mode):
    proxy = request.getfixturevalue(proxy_name)
    server = smtp_server(mode.split("+")[0], **MODES[mode])
    auth = {"username": USER, "password": PASSWORD} if "auth" in mode else {}

    result = send(server.settings(hop=proxy.hop(), ca_pem=certificates.ca_pem, **auth))

    assert result.ok, result.error
    assert result.tls == ("none" if mode == "plain" else "verified")
    assert result.transcript[0] == f"*: connected to 127.0.0.1:{server.port} through the connector {proxy.hop().label}"
    [received] = server.received
    assert received.mail_from == BOUNCE and received.rcpt_tos == [RECIPIENT]
    assert received.message["Subject"] == "TEST MESSAGE!"
    assert server.connections == 1
    if auth:
        assert [login for _, login in server.handler.logins] == [USER]


def test_security_18_proxy_down_is_a_proxy_error_and_never_a_direct_connection(smtp_server, proxy_down):
    server = smtp_server("plain")

    result = send(server.settings(hop=proxy_down.hop()))

    assert result.error.step is Step.PROXY and result.error.transient
    assert result.error.params["reason"] == "Connection refused"
    assert proxy_down.hop().label in str(result.error)
    assert server.connections == 0


@pytest.mark.parametrize("proxy_name, credentials, reason", [
    ("socks5_auth_proxy", {"password": "Not-the-proxy-pa55"}, "Username and password authentication failure"),
    ("http_auth_proxy", {"password": "Not-the-proxy-pa55"}, "407 Proxy Authentication Required"),
    ("socks5_auth_proxy", {"username": None, "password": None}, "No acceptable authentication methods were offered"),
    ("http_auth_proxy", {"username": None, "password": None}, "407 Proxy Authentication Required"),
    ("tinyproxy_auth_proxy", {"username": None, "password": None}, "407 Proxy Authentication Required"),
])
def test_security_18_wrong_or_missing_proxy_credentials(request, smtp_server, proxy_name, credentials, reason):
    proxy = request.getfixturevalue(proxy_name)
    server = smtp_server("plain")

    result = send(server.settings(hop=proxy.hop(**credentials)))

    assert result.error.step is Step.PROXY and not result.error.transient
    assert result.error.params["reason"] == reason
    assert "refused the login" in str(result.error)
    assert "Not-the-proxy-pa55" not in shown(result) and PROXY_PASSWORD not in shown(result)
    assert server.connections == 0


@pytest.mark.parametrize("credentials, reason", [
    ({"password": "Not-the-proxy-pa55"}, "401 Unauthorized"),
    ({"username": "someone-else"}, "401 Unauthorized"),
])
def test_security_41_an_http_proxy_refusing_the_login_with_401_is_a_login_refusal(
        smtp_server, tinyproxy_auth_proxy, credentials, reason):
    server = smtp_server("plain")

    result = send(server.settings(hop=tinyproxy_auth_proxy.hop(**credentials)))

    error = result.error
    assert error.step is Step.PROXY and not error.transient
    assert error.params["reason"] == reason
    assert f"The network connector {tinyproxy_auth_proxy.hop().label} refused the login ({reason})." == str(error)
    assert error.hint == "Check the connector's username and password."
    assert "Not-the-proxy-pa55" not in shown(result) and PROXY_PASSWORD not in shown(result)
    assert server.connections == 0


@pytest.mark.parametrize("proxy_name, reason", [
    ("socks5_proxy", "Connection refused by destination host"),  # RFC 1928 reply X'05'
    ("http_proxy", "the proxy closed the connection without an HTTP answer"),  # what pproxy does
])
def test_security_18_refused_destination_is_a_proxy_error_with_the_proxy_reason(
        request, closed_port, proxy_name, reason):
    proxy = request.getfixturevalue(proxy_name)
    hop = proxy.hop()

    result = send(behind(hop, closed_port))

    assert result.error.step is Step.PROXY
    assert result.error.params["reason"] == reason
    assert f"could not open a connection to 127.0.0.1 port {closed_port}" in str(result.error)


def test_refused_destination_behind_pproxy_socks4_is_a_lost_connection_naming_the_connector(socks4_proxy, closed_port):
    # pproxy grants a SOCKS4 request before it connects, then closes: there is no SOCKS4 reply to report.
    result = send(behind(socks4_proxy.hop(), closed_port))

    assert result.error.step is Step.CONNECTION_LOST and result.error.transient
    assert socks4_proxy.hop().label in str(result.error)


def test_name_resolved_by_the_socks5_proxy_reports_the_proxy_reason(socks5_proxy):
    result = send(behind(socks5_proxy.hop(remote_dns=True), 25, host="nonexistent.invalid"))

    assert result.error.step is Step.PROXY
    assert result.error.params["reason"] == "General SOCKS server failure"  # microsocks could not resolve it


@pytest.mark.parametrize("proxy_name", ["socks5_proxy", "socks4_proxy"])
def test_name_resolved_here_is_a_dns_error_and_the_proxy_is_not_asked(request, proxy_name, monkeypatch):
    proxy = request.getfixturevalue(proxy_name)

    def no_proxy_connection(*args, **kwargs):
        raise AssertionError("the proxy was asked")

    monkeypatch.setattr(connectors.Proxy, "connect", no_proxy_connection)
    result = send(behind(proxy.hop(remote_dns=False), 25, host="nonexistent.invalid"))

    assert result.error.step is Step.DNS
    assert "nonexistent.invalid" in str(result.error)


def test_slow_smtp_server_behind_a_proxy_is_still_bounded(smtp_server, socks5_proxy):
    server = smtp_server("plain", stall={"DATA": 30})

    started = time.monotonic()
    result = send(server.settings(hop=socks5_proxy.hop()))

    assert result.error.step is Step.TIMEOUT
    assert time.monotonic() - started < 4 + 1


@pytest.mark.parametrize("proxy_name", PROXIES)
def test_open_connection_through_each_hop(request, smtp_server, proxy_name):
    proxy = request.getfixturevalue(proxy_name)
    server = smtp_server("plain")

    with open_connection("127.0.0.1", server.port, timeout=2, hop=proxy.hop()) as sock:
        assert sock.gettimeout() == 2
        assert sock.recv(100).startswith(b"220 ")


def test_open_connection_raises_mail_errors(proxy_down, closed_port):
    with pytest.raises(MailError) as proxy_failure:
        open_connection("127.0.0.1", 25, timeout=2, hop=proxy_down.hop())
    with pytest.raises(MailError) as direct_failure:
        open_connection("127.0.0.1", closed_port, timeout=2)

    assert proxy_failure.value.step is Step.PROXY
    assert direct_failure.value.step is Step.CONNECT


@pytest.mark.parametrize("password", ["Pässwörd-9931", "Px-" + "9" * 300])
def test_a_socks5_password_socks_cannot_carry_is_refused_before_connecting(smtp_server, socks5_auth_proxy,
                                                                           password):
    """python-socks would raise UnicodeEncodeError (quoting a character of the password) or ValueError."""
    server = smtp_server("plain")

    result = send(server.settings(hop=socks5_auth_proxy.hop(password=password)))

    assert result.error.step is Step.PROXY and not result.error.transient
    assert "ASCII" in result.error.params["reason"]
    # Six nines: a port number (five digits at most) may hold three.
    assert password[:8] not in shown(result) and "ä" not in shown(result) and "9" * 6 not in shown(result)
    assert server.connections == 0


def test_a_line_break_in_the_host_never_reaches_the_http_connect_request(http_proxy):
    with pytest.raises(MailError) as refused:
        open_connection("smtp.example.com\r\nX-Injected: 1", 25, timeout=2, hop=http_proxy.hop())

    assert refused.value.step is Step.DNS and not refused.value.transient


def test_hop_shows_no_credentials():
    hop = Hop("http", "proxy.example", 3128, username="relay", password="Px-secret-1")

    assert "Px-secret-1" not in repr(hop)
    assert hop.label == "http proxy.example:3128"
    assert Hop("socks5", "::1", 1080).label == "socks5 [::1]:1080"
    with pytest.raises(ValueError):
        Hop("socks6", "proxy.example", 1080)



@pytest.fixture
def eager_http_proxy():
    """A fake HTTP proxy that answers CONNECT in pieces and sends the server's greeting in the same segment as its
    blank line, as a fast proxy next to a fast server does: start(answer_parts) -> Hop."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    threads = []

    def start(parts):
        def serve():
            conn, _ = listener.accept()
            with conn:
                request = b""
                while not request.endswith(b"\r\n\r\n"):
                    request += conn.recv(1024)
                for part in parts:
                    conn.sendall(part)
                    time.sleep(0.05)
                conn.recv(1024)  # until the client closes

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        return Hop("http", *listener.getsockname())

    yield start
    listener.close()
    for thread in threads:
        thread.join(timeout=5)


@pytest.mark.parametrize("parts", [
    [b"HTTP/1.1 200 Connection established\r\n\r\n220 smtp.test ready\r\n"],
    [b"HTTP/1.1 200 Connection established\r\n", b"Via: 1.1 proxy\r\n\r\n220 smtp.test", b" ready\r\n"],
])
def test_http_tunnel_keeps_the_greeting_that_follows_the_proxy_answer(eager_http_proxy, parts):
    hop = eager_http_proxy(parts)

    with open_connection("127.0.0.1", 25, timeout=2, hop=hop) as sock:
        greeting = b""
        while not greeting.endswith(b"\r\n"):
            greeting += sock.recv(100)

    assert greeting == b"220 smtp.test ready\r\n"
