"""TCP connections to a mail server, direct or through a network connector (SOCKS5, SOCKS4, HTTP CONNECT)."""
import base64
import ipaddress
import socket
import threading
import time
from dataclasses import dataclass, field

from python_socks import ProxyError, ProxyTimeoutError, ProxyType
from python_socks.sync import Proxy

from webapp.mail import errors
from webapp.mail.compose import ascii_domain, has_control_characters
from webapp.mail.errors import Step

KINDS = ("socks5", "socks4", "http")
SOCKS_TYPES = {"socks5": ProxyType.SOCKS5, "socks4": ProxyType.SOCKS4}
MAX_PROXY_HEAD = 16384  # an HTTP proxy's answer to CONNECT is a few short lines: reading stops past this
MAX_SOCKS_LOGIN = 255  # RFC 1929: one length byte before the username and before the password
# IPv6 forms that carry an IPv4 address a router or the kernel may turn back into it (checked as that IPv4 too).
NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class Hop:
    """A network connector as plain data."""

    kind: str                   # "socks5" | "socks4" | "http"
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    remote_dns: bool = True     # SOCKS5 only: the proxy resolves the destination name

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown connector kind {self.kind!r}")

    @property
    def label(self) -> str:
        """The hop as the admin recognises it in messages and transcripts: kind and address, no credentials."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.kind} {host}:{self.port}"

    @property
    def resolves_names(self) -> bool:
        """Whether the proxy resolves the destination name (HTTP always; SOCKS5 when so configured)."""
        return self.kind == "http" or (self.kind == "socks5" and self.remote_dns)


def open_connection(host: str, port: int, timeout: float, hop: Hop | None = None,
                    blocked_networks=()) -> socket.socket:
    """A connected TCP socket to host:port, direct or through the hop; raises MailError (DNS/CONNECT/PROXY/TIMEOUT).
    Never falls back to a direct connection when a hop is given.

    blocked_networks (see parse_networks): addresses never contacted, checked after name resolution on every
    address a name resolves to (MailError POLICY, before any connection). Through a proxy that resolves the
    destination name itself (HTTP, SOCKS5 with remote DNS) only the proxy's address and a literal IP destination
    can be checked: the proxy alone learns where the name leads.
    """
    blocked = parse_networks(blocked_networks)
    end = time.monotonic() + timeout
    if hop is None:
        try:
            return _connect_direct(host, port, end, blocked)
        except OSError as exc:
            raise errors.classify(exc, Step.CONNECT, host=host, port=port) from None
    if hop.resolves_names:
        _check_literal(host, port, blocked)
    if hop.kind == "http":
        return _http_tunnel(host, port, hop, end, timeout, blocked)
    if not _socks_login_sendable(hop):
        raise errors.proxy_login_unsendable(hop.label, host, port)
    try:
        proxy_infos = resolve(hop.host, hop.port, _left(end))
    except OSError as exc:
        raise errors.proxy_error(exc, hop.label, host, port) from None
    check_addresses(hop.host, port, [info[4][0] for info in proxy_infos], blocked, proxy=hop.label,
                    destination=host)
    proxy_address = proxy_infos[0][4][0]
    destination = host
    if not hop.resolves_names:
        try:
            infos = resolve(host, port, _left(end))
        except OSError as exc:
            raise errors.classify(exc, Step.CONNECT, host=host, port=port) from None
        check_addresses(host, port, [info[4][0] for info in infos], blocked)
        destination = infos[0][4][0]
    proxy = Proxy(
        SOCKS_TYPES[hop.kind], proxy_address, hop.port,
        # SOCKS4 has a user id and no password; python-socks takes the id as `username`.
        username=hop.username or None,
        password=(hop.password or None) if hop.kind != "socks4" else None,
        # Names resolved here were turned into addresses above; rdns for an address changes nothing.
        rdns=hop.kind == "socks5" and hop.remote_dns,
    )
    try:
        sock = proxy.connect(dest_host=destination, dest_port=port, timeout=_left(end))
    except (ProxyError, OSError) as exc:
        # OSError: the proxy is unreachable (ProxyConnectionError) or too slow (ProxyTimeoutError).
        raise errors.classify(exc, Step.PROXY, host=host, port=port, proxy=hop.label) from None
    sock.settimeout(timeout)
    return sock


def parse_networks(value) -> tuple:
    """OUTBOUND_BLOCKED_NETWORKS as ip_network objects: from a list of networks or strings, or one string of
    entries separated by commas or spaces (an environment variable); a bare address is a /32 or /128.
    Raises ValueError naming the entry that is not a network."""
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    networks = []
    for entry in value or ():
        if isinstance(entry, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            networks.append(entry)
            continue
        try:
            networks.append(ipaddress.ip_network(str(entry).strip(), strict=False))
        except ValueError:
            raise ValueError(f"OUTBOUND_BLOCKED_NETWORKS: {entry!r} is not an IP network") from None
    return tuple(networks)


def blocked_network(address: str, blocked) -> str | None:
    """The blocked network (as text) that holds address, else None. An IPv6 address carrying an IPv4 one
    (IPv4-mapped, NAT64, 6to4) is checked as that IPv4 address too."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # a link-local address may carry its zone: fe80::1%eth0
    candidates = [ip]
    if ip.version == 6:
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            candidates.append(embedded)
    for network in parse_networks(blocked):
        if any(candidate.version == network.version and candidate in network for candidate in candidates):
            return str(network)
    return None


def check_addresses(host: str, port: int, addresses, blocked, *, proxy: str | None = None,
                    destination: str | None = None) -> None:
    """Raise MailError POLICY when any of the addresses host resolved to lies in a blocked network.
    proxy: the addresses are the connector's own (host is then the connector's host, destination the mail host)."""
    for address in addresses:
        network = blocked_network(address, blocked)
        if network is not None:
            raise errors.blocked_address(destination if proxy else host, port, address, network, proxy=proxy)


def _check_literal(host: str, port: int, blocked) -> None:
    """A destination the proxy resolves: only a literal address can be checked here."""
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return
    check_addresses(host, port, [host.strip("[]")], blocked)


def _http_tunnel(host: str, port: int, hop: Hop, end: float, timeout: float, blocked=()) -> socket.socket:
    """HTTP CONNECT (RFC 9110 §9.3.6), reading the proxy's answer up to its blank line and not one byte further.
    Not python-socks here: its single recv() of up to 64 KiB can swallow the SMTP greeting that follows the
    proxy's 200 (the server speaks first), or stop before the blank line and leave it for smtplib to read."""
    try:
        target = f"[{host}]:{port}" if ":" in host else f"{ascii_domain(host)}:{port}"
    except UnicodeError:
        target = None
    if target is None or has_control_characters(target):  # a line break would add a header to the request
        raise errors.dns_error(socket.gaierror(socket.EAI_NONAME, "not a valid host name"), host, port)
    try:
        sock = _connect_direct(hop.host, hop.port, end, blocked, proxy=hop.label, destination=host)
    except OSError as exc:
        raise errors.proxy_error(exc, hop.label, host, port) from None
    request = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
    if hop.username or hop.password:
        token = base64.b64encode(f"{hop.username or ''}:{hop.password or ''}".encode("utf-8")).decode("ascii")
        request += f"Proxy-Authorization: Basic {token}\r\n"
    try:
        sock.sendall((request + "\r\n").encode("utf-8"))
        head = bytearray()
        while not head.endswith(b"\r\n\r\n"):
            if len(head) > MAX_PROXY_HEAD:
                raise errors.OversizedReply(MAX_PROXY_HEAD)
            sock.settimeout(_left(end))
            byte = sock.recv(1)
            if not byte:
                raise ProxyError("the proxy closed the connection without an HTTP answer" if not head
                                 else "the proxy closed the connection in the middle of its answer")
            head += byte
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        version, _, rest = status_line.partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/") or not code.isdigit():
            raise ProxyError(f"Invalid status line: {status_line}")
        if not code.startswith("2"):
            raise ProxyError(f"{code} {reason}".strip(), error_code=int(code))
    except TimeoutError:
        sock.close()
        raise errors.proxy_error(ProxyTimeoutError("Proxy connection timed out"), hop.label, host, port) from None
    except (ProxyError, OSError) as exc:
        sock.close()
        raise errors.classify(exc, Step.PROXY, host=host, port=port, proxy=hop.label) from None
    sock.settimeout(timeout)
    return sock


def _socks_login_sendable(hop: Hop) -> bool:
    """Whether python-socks can send the hop's login: as ASCII, and for SOCKS5 each part behind one length byte.
    Checked first because its UnicodeEncodeError would quote a character of the password, and escape as a crash."""
    parts = [hop.username] if hop.kind == "socks4" else [hop.username, hop.password]  # SOCKS4: a user id only
    limit = MAX_SOCKS_LOGIN if hop.kind == "socks5" else float("inf")
    return all(part.isascii() and len(part) <= limit for part in parts if part)


def resolve(host: str, port: int, timeout: float) -> list[tuple]:
    """getaddrinfo() for TCP, IPv4 first, bounded by timeout: the C resolver's own timeouts cannot be set per call,
    so a slow name server would hold the request thread past its deadline."""
    def getaddrinfo():
        try:
            return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except UnicodeError:  # the idna codec refuses the name before any lookup
            raise socket.gaierror(socket.EAI_NONAME, "not a valid host name") from None

    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return getaddrinfo()
    outcome = {}

    def lookup():
        try:
            outcome["infos"] = getaddrinfo()
        except OSError as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=lookup, name="smtpdesk-resolve", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise socket.gaierror(socket.EAI_AGAIN, "the name server did not answer in time")
    if "error" in outcome:
        raise outcome["error"]
    return sorted(outcome["infos"], key=lambda info: info[0])


def _connect_direct(host: str, port: int, end: float, blocked=(), *, proxy: str | None = None,
                    destination: str | None = None) -> socket.socket:
    infos = resolve(host, port, _left(end))
    # Every address first: a name with one blocked address among good ones is refused, not tried in turn.
    check_addresses(host, port, [info[4][0] for info in infos], blocked, proxy=proxy, destination=destination)
    last_error = None
    for *_, address in infos:
        try:
            return socket.create_connection(address[:2], timeout=_left(end))
        except OSError as exc:
            last_error = exc
    raise last_error or socket.gaierror(socket.EAI_NONAME, "no address")


def _left(end: float) -> float:
    """Seconds left until end; a connect with 0 would block, so at least a millisecond (it then times out)."""
    return max(end - time.monotonic(), 0.001)
