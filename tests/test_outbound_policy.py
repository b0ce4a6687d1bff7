"""Outbound policy: OUTBOUND_BLOCKED_NETWORKS is checked after name resolution, before any connection,
for the test dialog, "test these settings", "test connector" and the worker, on the SMTP host and the proxy's own
address; a refusal is a permanent POLICY error naming the address and the setting. An address counts in every
spelling a resolver or proxy reads (SECURITY 31)."""
import ipaddress
import re
import socket
import threading

import pytest

from tests.fixtures.certs import ServerCertificate
from tests.support.factories import account_form, make_account, make_client, make_connector
from tests.support.mail import BOUNCE, RECIPIENT, make_message
from tests.support.outbox import account_for, fast_worker
from webapp.config import Defaults
from webapp.mail import send_message
from webapp.mail.connectors import Hop, blocked_network, numeric_address, open_connection, parse_networks
from webapp.mail.errors import MailError, Step
from webapp.models import DeliveryAttempt, Notification
from webapp.outbox import OutboxSettings, send_notification
from webapp.outbox.message import reply_words

LOOPBACK_BLOCKED = ["169.254.0.0/16", "127.0.0.1/32"]
DEFAULTS = parse_networks(Defaults.OUTBOUND_BLOCKED_NETWORKS)


@pytest.fixture
def loopback_blocked(app):
    """The app's policy with 127.0.0.1 blocked, as an admin would configure it (a string, like the variable)."""
    app.config["OUTBOUND_BLOCKED_NETWORKS"] = ", ".join(LOOPBACK_BLOCKED)


def dialog_of(response) -> str:
    return re.search(r'<dialog open id="test-dialog".*?</dialog>', response.get_data(as_text=True), re.S).group(0)


def delivered_once(**settings) -> Notification:
    """One notification through the default account, after one round of a worker with these settings."""
    notification_id = send_notification(to=["ana@example.org"], subject="Disk almost full", text="91% used.")
    worker = fast_worker(**settings)
    try:
        worker.run_once()
    finally:
        worker.close()
    return Notification.get_by_id(notification_id)


def refusal_shown(dialog: str) -> bool:
    return ("<strong>Step: refused by policy</strong>" in dialog and "127.0.0.1/32" in dialog
            and "(setting OUTBOUND_BLOCKED_NETWORKS), so no connection was made." in dialog)


# --- The policy itself ------------------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["169.254.169.254", "169.254.0.23", "fe80::1", "fe80::1%eth0", "fd00:ec2::254",
                                     "100.100.100.200", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe"])
def test_link_local_and_metadata_addresses_are_blocked_by_default(address):
    assert blocked_network(address, DEFAULTS) is not None


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "10.0.0.25", "10.255.1.1", "172.16.5.5", "192.168.1.10",
                                     "fd12:3456::25", "203.0.113.7"])
def test_loopback_private_lan_and_public_addresses_are_allowed_by_default(address):
    assert blocked_network(address, DEFAULTS) is None


def test_the_setting_takes_a_list_or_a_string_and_refuses_nonsense():
    assert parse_networks("10.0.0.0/8, 192.0.2.1  fe80::/10") == parse_networks(["10.0.0.0/8", "192.0.2.1/32",
                                                                                 "fe80::/10"])
    assert parse_networks("") == ()
    with pytest.raises(ValueError, match="'not-a-network'"):
        parse_networks(["10.0.0.0/8", "not-a-network"])


def test_the_worker_reads_the_setting_and_defaults_to_the_app_defaults():
    assert OutboxSettings().blocked_networks == DEFAULTS
    settings = OutboxSettings.from_config({"OUTBOUND_BLOCKED_NETWORKS": "127.0.0.1"})
    assert [str(n) for n in settings.blocked_networks] == ["127.0.0.1/32"]


def test_a_name_is_checked_on_what_it_resolves_to(smtp_server):
    server = smtp_server("plain")
    with pytest.raises(MailError) as caught:
        open_connection("localhost", server.port, 2, blocked_networks=["127.0.0.0/8", "::1/128"])
    error = caught.value
    assert (error.step, error.transient) == (Step.POLICY, False)
    assert error.params["host"] == "localhost" and error.params["address"] in ("127.0.0.1", "::1")
    assert str(error).startswith("localhost is at ")
    assert server.connections == 0


def test_with_the_defaults_loopback_is_reached(smtp_server):
    server = smtp_server("plain")
    open_connection("127.0.0.1", server.port, 2, blocked_networks=DEFAULTS).close()
    assert server.connections_after(1) == 1


def test_a_literal_destination_is_checked_even_when_the_proxy_resolves_names():
    # The proxy would resolve a name itself; a literal address is refused before the proxy is even contacted
    # (nothing listens at the proxy's address: reaching it would be a PROXY error, not POLICY).
    hop = Hop(kind="socks5", host="127.0.0.1", port=9, remote_dns=True)
    with pytest.raises(MailError) as caught:
        open_connection("169.254.169.254", 25, 2, hop, blocked_networks=DEFAULTS)
    assert caught.value.step == Step.POLICY
    assert str(caught.value) == ("169.254.169.254 is in the blocked network 169.254.0.0/16 "
                                 "(setting OUTBOUND_BLOCKED_NETWORKS), so no connection was made.")


@pytest.mark.parametrize("kind", ["socks5", "socks4", "http"])
def test_the_proxys_own_address_is_checked(kind, smtp_server):
    server = smtp_server("plain")  # stands in for the proxy: it must see no connection
    hop = Hop(kind=kind, host="localhost", port=server.port)
    with pytest.raises(MailError) as caught:
        open_connection("mail.example.com", 25, 2, hop, blocked_networks=["127.0.0.0/8", "::1/128"])
    error = caught.value
    assert (error.step, error.transient) == (Step.POLICY, False)
    assert error.params["proxy"] == f"{kind} localhost:{server.port}" and error.params["host"] == "mail.example.com"
    assert str(error).startswith(f"The network connector {kind} localhost:{server.port} is at ")
    assert server.connections == 0


# --- Every way the app connects ---------------------------------------------------------------------------


def test_the_test_dialog_refuses_a_blocked_host(admin, smtp_server, loopback_blocked):
    server = smtp_server("plain")
    account = make_account(name="Relay", host=server.host, port=server.port)
    response = admin.htmx("post", f"/accounts/{account.id}/test",
                          data={"to": "rita@example.org", "subject": "Check", "body": "Hi", "next": "/accounts/"})
    assert response.status_code == 200
    dialog = dialog_of(response)
    assert refusal_shown(dialog)
    assert "127.0.0.1 is in the blocked network 127.0.0.1/32" in dialog
    assert server.connections == 0


def test_the_test_dialog_says_it_in_portuguese(app, smtp_server, loopback_blocked):
    client = make_client(app, "admin", language="pt_BR")
    server = smtp_server("plain")
    account = make_account(name="Relay", host=server.host, port=server.port)
    response = client.htmx("post", f"/accounts/{account.id}/test",
                           data={"to": "rita@example.org", "subject": "Check", "body": "Hi", "next": "/accounts/"})
    dialog = dialog_of(response)
    assert "127.0.0.1/32" in dialog and "OUTBOUND_BLOCKED_NETWORKS" in dialog
    assert "so no connection was made" not in dialog
    assert server.connections == 0


def test_test_these_settings_refuses_a_blocked_host(admin, smtp_server, loopback_blocked):
    server = smtp_server("plain")
    data = account_form(host=server.host, port=str(server.port), secure="no", test_to="rita@example.org",
                        sender="Ops <ops@example.com>", return_path="bounces@example.com")
    response = admin.htmx("post", "/accounts/test-settings", data=data)
    assert response.status_code == 200
    assert refusal_shown(dialog_of(response))
    assert server.connections == 0


def test_test_connector_refuses_a_blocked_proxy(admin, smtp_server, socks5_proxy, loopback_blocked):
    server = smtp_server("plain")
    connector = make_connector(name="Office proxy", kind="socks5", host=socks5_proxy.host, port=socks5_proxy.port)
    # A literal destination in a blocked network is refused before the proxy is asked...
    response = admin.htmx("post", f"/connectors/{connector.id}/test",
                          data={"host": "127.0.0.1", "port": str(server.port)})
    assert response.status_code == 200
    assert refusal_shown(dialog_of(response))
    # ...and a name the proxy would resolve itself is refused because the proxy's own address is blocked.
    response = admin.htmx("post", f"/connectors/{connector.id}/test",
                          data={"host": "localhost", "port": str(server.port)})
    dialog = dialog_of(response)
    assert refusal_shown(dialog)
    assert f"The network connector socks5 127.0.0.1:{socks5_proxy.port} is at 127.0.0.1" in dialog
    assert server.connections == 0


def test_the_worker_refuses_a_blocked_host_for_good(app, smtp_server):
    server = smtp_server("plain")
    account_for(server)
    notification = delivered_once(blocked_networks=LOOPBACK_BLOCKED)
    assert notification.status == "failed" and notification.last_step == "policy"
    [attempt] = DeliveryAttempt.select().where(DeliveryAttempt.notification == notification.id)
    assert attempt.ok is False and attempt.transient is False
    assert server.connections == 0 and server.received == []


def test_security_36_a_host_refused_at_connect_time_is_refused_once_for_the_whole_group(app, smtp_server,
                                                                                       monkeypatch):
    server = smtp_server("plain")
    account_for(server, host="localhost")
    looked_up, getaddrinfo = [], socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *args, **kwargs: looked_up.append(host) or
                        getaddrinfo(host, *args, **kwargs))
    batch = [send_notification(to=["ana@example.org"], subject=f"n{n}", text="x") for n in range(3)]
    worker = fast_worker(blocked_networks=["127.0.0.0/8", "::1/128"])
    try:
        worker.run_once()
    finally:
        worker.close()
    assert looked_up.count("localhost") == 1  # the first message's refusal stands for the rest of the group
    for notification in map(Notification.get_by_id, batch):
        assert (notification.status, notification.last_step, notification.attempts) == ("failed", "policy", 1)
        assert "in the blocked network 127.0.0.0/8" in reply_words(notification.last_reply)
    assert server.connections == 0


def test_an_unusable_blocked_networks_setting_stops_start_up_with_its_name(tmp_path):
    from cryptography.fernet import Fernet

    from webapp import create_app
    from webapp.config import ConfigError

    with pytest.raises(ConfigError, match="OUTBOUND_BLOCKED_NETWORKS: 'not-a-network'"):
        create_app({"TESTING": True, "SECRET_KEY": "x", "DATABASE": str(tmp_path / "x.db"),
                    "VAULT_KEYS": Fernet.generate_key().decode(),
                    "OUTBOUND_BLOCKED_NETWORKS": ["169.254.0.0/16", "not-a-network"]})


# --- Every spelling of a blocked address (SECURITY 31) ----------------------------------------------------

# The spellings of 169.254.169.254 that inet_aton and the resolvers behind SOCKS5 and HTTP proxies read as that
# address, and ipaddress does not.
METADATA_SPELLINGS = ["2852039166", "0251.0376.0251.0376", "169.254.43518", "0xa9fea9fe", "0xA9.0xFE.0xA9.0xFE",
                      "[::ffff:169.254.169.254]"]
# The same for 127.0.0.2, which stands in for it on loopback: blocked here, with a real SMTP server behind it.
TARGET_BLOCKED = "169.254.0.0/16, 127.0.0.2/32"
TARGET_SPELLINGS = ["2130706434", "0177.0000.0000.0002", "127.0.2", "127.2", "0x7f000002", "0x7F.0.0.0x2",
                    "[::ffff:127.0.0.2]"]
PROXIES = ["socks5_proxy", "socks4_proxy", "http_proxy"]


@pytest.fixture
def target(smtp_server):
    """A real SMTP server on 127.0.0.2, the blocked address: the proxies would reach it, it must hear nothing."""
    return smtp_server("plain", host="127.0.0.2")


@pytest.fixture
def target_blocked(app):
    app.config["OUTBOUND_BLOCKED_NETWORKS"] = TARGET_BLOCKED


def listener() -> socket.socket:
    """A loopback port that records connections in its backlog: a stand-in proxy that must never be contacted."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    return sock


def contacted(sock: socket.socket) -> bool:
    try:
        sock.accept()[0].close()
    except BlockingIOError:
        return False
    return True


def refused_for_policy(host: str, port: int, hop: Hop | None, blocked=TARGET_BLOCKED) -> MailError:
    with pytest.raises(MailError) as caught:
        open_connection(host, port, 2, hop, blocked_networks=blocked)
    return caught.value


@pytest.mark.parametrize("spelling", METADATA_SPELLINGS)
def test_the_spellings_of_the_metadata_address_read_as_it(spelling):
    assert blocked_network(numeric_address(spelling), DEFAULTS) == "169.254.0.0/16"


@pytest.mark.parametrize("host,address", [
    ("2852039166", "169.254.169.254"), ("0251.0376.0251.0376", "169.254.169.254"), ("169.254.43518", "169.254.169.254"),
    ("0xa9fea9fe", "169.254.169.254"), ("0XA9FEA9FE", "169.254.169.254"), ("127.1", "127.0.0.1"),
    ("0", "0.0.0.0"), ("10.0.0.25", "10.0.0.25"), ("[::ffff:169.254.169.254]", "::ffff:a9fe:a9fe"),
    ("[::1]", "::1"), ("fe80::1%eth0", "fe80::1%eth0"),
    ("smtp.example.com", None), ("localhost", None), ("0x7f.example", None), ("1e3", None), ("cafe.beef", None),
])
def test_numeric_spellings_are_read_as_inet_aton_reads_them_and_names_stay_names(host, address):
    assert numeric_address(host) == address


@pytest.mark.parametrize("host", ["127.0.0.2.", "2130706434.", "1.2.3.4.5", "999.1.1.1", "1.2.3.08", "08",
                                  "4294967296", "0x100000000", "0x", "mail.0x7f", "host.123", "1..2", "1.2.3.4 x",
                                  "127.0.0.2 5", "127.0.0.2\tx"])
def test_a_numeric_looking_host_that_is_no_address_is_refused_everywhere(host):
    with pytest.raises(ValueError):
        numeric_address(host)
    for hop in (None, Hop(kind="socks5", host="127.0.0.1", port=9), Hop(kind="http", host="127.0.0.1", port=9)):
        error = refused_for_policy(host, 25, hop, blocked=())
        assert (error.step, error.transient) == (Step.POLICY, False)
        assert str(error) == f"{host} looks like an IP address but is not a valid one, so no connection was made."


@pytest.mark.parametrize("spelling", METADATA_SPELLINGS)
def test_security_31_the_metadata_address_is_refused_in_every_spelling_before_the_proxy(spelling):
    # Nothing listens at the proxy's address: reaching it would be a PROXY error, not POLICY.
    for kind in ("socks5", "http"):
        error = refused_for_policy(spelling, 25, Hop(kind=kind, host="127.0.0.1", port=9), blocked=DEFAULTS)
        assert error.step == Step.POLICY and error.params["network"] == "169.254.0.0/16"


def test_the_stand_in_target_is_reached_through_each_proxy_when_nothing_is_blocked(target, socks5_proxy,
                                                                                     socks4_proxy, http_proxy):
    # The control for the tests below: each proxy does reach 127.0.0.2, in the spelling given.
    for proxy in (socks5_proxy, socks4_proxy, http_proxy):
        open_connection("2130706434", target.port, 2, proxy.hop(), blocked_networks=()).close()
    assert target.connections_after(3) == 3


@pytest.mark.parametrize("route", ["direct", *PROXIES])
def test_security_31_numeric_spellings_of_a_blocked_address_are_refused_through_real_proxies(route, target,
                                                                                             request):
    hop = None if route == "direct" else request.getfixturevalue(route).hop()
    for spelling in TARGET_SPELLINGS:
        error = refused_for_policy(spelling, target.port, hop)
        assert (error.step, error.transient) == (Step.POLICY, False), spelling
        assert blocked_network(error.params["address"], ["127.0.0.2/32"]) and error.params["network"] == "127.0.0.2/32"
    assert target.connections == 0


@pytest.mark.parametrize("kind", ["socks5", "socks4", "http"])
def test_security_31_the_proxy_hears_no_request_for_a_blocked_spelling(kind):
    stand_in = listener()
    try:
        hop = Hop(kind=kind, host="127.0.0.1", port=stand_in.getsockname()[1])
        for spelling in TARGET_SPELLINGS:
            assert refused_for_policy(spelling, 25, hop).step == Step.POLICY, spelling
        assert not contacted(stand_in)
    finally:
        stand_in.close()


@pytest.mark.parametrize("kind", ["socks5", "http"])
def test_security_31_a_name_the_proxy_would_resolve_is_resolved_here_first(kind, proxy_at, smtp_server):
    """localhost is 127.0.0.1 here, blocked; the proxy (on 127.0.0.3, allowed) would resolve it the same way."""
    server = smtp_server("plain")
    proxy = proxy_at(kind, "127.0.0.3")
    error = refused_for_policy("localhost", server.port, proxy.hop(), blocked=["127.0.0.1/32"])
    assert (error.step, error.params["address"]) == (Step.POLICY, "127.0.0.1")
    assert str(error).startswith("localhost is at 127.0.0.1, in the blocked network 127.0.0.1/32")
    assert server.connections == 0
    # Unblocked, the same name goes to the proxy, which reaches the server.
    open_connection("localhost", server.port, 2, proxy.hop(), blocked_networks=TARGET_BLOCKED).close()


def test_a_name_unknown_here_is_still_left_to_the_proxy(socks5_proxy):
    # Resolving names this machine cannot is what remote DNS is for: the proxy's own answer is reported.
    error = refused_for_policy("nonexistent.invalid", 25, socks5_proxy.hop(remote_dns=True))
    assert error.step == Step.PROXY


# --- ... on every path the app connects by ----------------------------------------------------------------


@pytest.mark.parametrize("proxy", PROXIES)
def test_security_31_test_connector_refuses_a_numeric_spelling(proxy, admin, target, target_blocked, request):
    proxy = request.getfixturevalue(proxy)
    connector = make_connector(kind=proxy.kind, host=proxy.host, port=proxy.port)
    for spelling in ("2130706434", "0x7f000002", "127.2"):
        response = admin.htmx("post", f"/connectors/{connector.id}/test",
                              data={"host": spelling, "port": str(target.port)})
        dialog = dialog_of(response)
        assert "<strong>Step: refused by policy</strong>" in dialog and "127.0.0.2/32" in dialog, spelling
    assert target.connections == 0


@pytest.mark.parametrize("proxy", PROXIES)
def test_security_31_the_test_dialog_refuses_a_numeric_spelling(proxy, admin, target, target_blocked, request):
    proxy = request.getfixturevalue(proxy)
    connector = make_connector(kind=proxy.kind, host=proxy.host, port=proxy.port)
    # Saved before numeric spellings were read as addresses: the host is stored as typed.
    account = make_account(name="Relay", host="0177.0000.0000.0002", port=target.port, use_connector=True,
                           connector=connector)
    response = admin.htmx("post", f"/accounts/{account.id}/test",
                          data={"to": "rita@example.org", "subject": "Check", "body": "Hi", "next": "/accounts/"})
    dialog = dialog_of(response)
    assert "<strong>Step: refused by policy</strong>" in dialog
    assert "0177.0000.0000.0002 is at 127.0.0.2, in the blocked network 127.0.0.2/32" in dialog
    assert target.connections == 0 and target.received == []


@pytest.mark.parametrize("proxy", PROXIES)
def test_security_31_test_these_settings_refuses_a_numeric_spelling(proxy, admin, target, target_blocked, request):
    proxy = request.getfixturevalue(proxy)
    connector = make_connector(kind=proxy.kind, host=proxy.host, port=proxy.port)
    data = account_form(host="0x7f000002", port=str(target.port), secure="no", test_to="rita@example.org",
                        use_connector="yes", connector=str(connector.id))
    dialog = dialog_of(admin.htmx("post", "/accounts/test-settings", data=data))
    assert "<strong>Step: refused by policy</strong>" in dialog and "127.0.0.2/32" in dialog
    assert target.connections == 0 and target.received == []


@pytest.mark.parametrize("proxy", PROXIES)
def test_security_31_the_worker_refuses_a_numeric_spelling_for_good(proxy, app, target, request):
    proxy = request.getfixturevalue(proxy)
    connector = make_connector(kind=proxy.kind, host=proxy.host, port=proxy.port)
    make_account(name="Relay", host="2130706434", port=target.port, is_default=True, use_connector=True,
                 connector=connector)
    notification = delivered_once(blocked_networks=TARGET_BLOCKED)
    assert notification.status == "failed" and notification.last_step == "policy"
    assert target.connections == 0 and target.received == []


# --- An internationalised name: one A-label for every use (SECURITY 31) ---------------------------------------

# IDNA 2008 turns faß into xn--fa-hia; Python's own codec (IDNA 2003), which socket, ssl and python-socks apply to a
# name given as text, turns it into fass: another domain, which may resolve elsewhere or not at all.
IDN_NAME, A_LABEL = "faß.test", "xn--fa-hia.test"


@pytest.fixture
def idn_resolver(monkeypatch):
    """This machine's resolver stood in for at its edge, socket.getaddrinfo: idn_resolver(address) makes A_LABEL
    resolve to that loopback address and every other .test name unknown, and returns the list of .test names looked
    up, in the ASCII form the lookup carries (getaddrinfo applies Python's idna codec to a name given as text).
    Other names and addresses go to the real resolver."""
    real = socket.getaddrinfo
    asked = []

    def start(address: str) -> list[str]:
        def getaddrinfo(host, port, *args, **kwargs):
            name = host.encode("idna").decode("ascii") if isinstance(host, str) else host
            if not isinstance(name, str) or not name.endswith(".test"):
                return real(host, port, *args, **kwargs)
            asked.append(name)
            if name != A_LABEL:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return real(address, port, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        return asked

    return start


class RecordingProxy:
    """A stand-in proxy on loopback (SOCKS5, SOCKS4 or HTTP CONNECT) that notes the destination host each request
    names, then refuses it, as a proxy that cannot reach it would."""

    def __init__(self, kind: str):
        self.kind = kind
        self.destinations: list[str] = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.listener.settimeout(0.1)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def hop(self, **options) -> Hop:
        return Hop(kind=self.kind, host="127.0.0.1", port=self.listener.getsockname()[1], **options)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.listener.close()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    getattr(self, f"_answer_{self.kind}")(conn)
                except OSError:
                    pass

    def _answer_socks5(self, conn) -> None:
        greeting = _read(conn, 2)
        _read(conn, greeting[1])
        conn.sendall(b"\x05\x00")  # no authentication
        _version, _command, _reserved, kind = _read(conn, 4)
        if kind == 3:  # a name, behind its length
            host = _read(conn, _read(conn, 1)[0]).decode("ascii")
        else:
            host = str(ipaddress.ip_address(_read(conn, 4 if kind == 1 else 16)))
        _read(conn, 2)
        self.destinations.append(host)
        conn.sendall(b"\x05\x05\x00\x01" + bytes(6))  # connection refused

    def _answer_socks4(self, conn) -> None:
        request = _read(conn, 8)
        while _read(conn, 1) != b"\x00":  # the user id
            pass
        self.destinations.append(str(ipaddress.ip_address(request[4:8])))
        conn.sendall(b"\x00\x5b" + bytes(6))  # request rejected

    def _answer_http(self, conn) -> None:
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += _read(conn, 1)
        target = head.split(b" ")[1].decode("ascii")
        self.destinations.append(target.rpartition(":")[0])
        conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")


def _read(conn, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError
        data += chunk
    return data


@pytest.fixture
def recording_proxy():
    """recording_proxy(kind) -> a RecordingProxy, closed at teardown."""
    started = []

    def start(kind: str) -> RecordingProxy:
        started.append(RecordingProxy(kind))
        return started[-1]

    yield start
    for proxy in started:
        proxy.close()


@pytest.mark.parametrize("kind,remote_dns,sent", [
    ("socks5", True, A_LABEL), ("http", True, A_LABEL),           # the proxy resolves the name it is sent
    ("socks5", False, "127.0.0.1"), ("socks4", False, "127.0.0.1"),  # the name is resolved here, the address sent
])
def test_security_31_an_international_name_is_resolved_checked_and_sent_as_one_a_label(kind, remote_dns, sent,
                                                                                     idn_resolver, recording_proxy):
    asked = idn_resolver("127.0.0.1")
    proxy = recording_proxy(kind)
    with pytest.raises(MailError) as caught:
        open_connection(IDN_NAME, 25, 2, proxy.hop(remote_dns=remote_dns), blocked_networks=DEFAULTS)
    assert caught.value.step is Step.PROXY  # the stand-in refused what it was asked for
    assert asked == [A_LABEL]  # looked up here once: the policy check and the proxy's destination are the same name
    assert proxy.destinations == [sent]


def test_security_31_a_direct_connection_resolves_the_a_label(idn_resolver, smtp_server):
    asked = idn_resolver("127.0.0.1")
    server = smtp_server("plain")
    open_connection(IDN_NAME, server.port, 2, blocked_networks=DEFAULTS).close()
    assert asked == [A_LABEL]
    assert server.connections_after(1) == 1


@pytest.mark.parametrize("route", ["direct", *PROXIES])
def test_security_31_an_international_name_at_a_blocked_address_is_refused_before_any_proxy(route, target,
                                                                                          idn_resolver, request):
    idn_resolver(target.host)
    hop = None if route == "direct" else request.getfixturevalue(route).hop()
    error = refused_for_policy(IDN_NAME, target.port, hop)
    assert (error.step, error.params["address"]) == (Step.POLICY, "127.0.0.2")
    assert str(error).startswith(f"{IDN_NAME} is at 127.0.0.2, in the blocked network 127.0.0.2/32")
    assert target.connections == 0


@pytest.mark.parametrize("mode", ["ssl", "starttls"])
def test_security_31_tls_asks_for_and_checks_the_same_a_label(mode, idn_resolver, smtp_server, certificates,
                                                              monkeypatch):
    """SNI, and the name the certificate is checked against, are the A-label the connection resolved."""
    server_names = []
    server_context = ServerCertificate.server_context

    def recording_context(certificate):
        context = server_context(certificate)
        context.sni_callback = lambda tls, name, context: server_names.append(name)
        return context

    monkeypatch.setattr(ServerCertificate, "server_context", recording_context)
    idn_resolver("127.0.0.1")
    server = smtp_server(mode)
    server_names.clear()  # the fixture's own readiness probe, without SNI
    settings = server.settings(host=IDN_NAME, ca_pem=certificates.ca_pem)

    checked = send_message(settings, make_message(), envelope_from=BOUNCE, recipients=[RECIPIENT])
    # The test certificate is for localhost: checked against the A-label, it is another host's.
    assert checked.error.step is Step.CERTIFICATE and "issued for another host name" in str(checked.error)
    unchecked = send_message(server.settings(host=IDN_NAME, verify_tls=False), make_message(),
                             envelope_from=BOUNCE, recipients=[RECIPIENT])
    assert unchecked.ok, unchecked.error
    assert server_names == [A_LABEL, A_LABEL]
