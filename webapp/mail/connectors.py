"""TCP connections to a mail server, direct or through a network connector (SOCKS5, SOCKS4, HTTP CONNECT)."""
import base64
import ipaddress
import re
import socket
import threading
import time
from dataclasses import dataclass, field

from python_socks import ProxyError, ProxyTimeoutError, ProxyType
from python_socks.sync import Proxy

from webapp.mail import errors, proxy_errors
from webapp.mail.compose import has_control_characters
from webapp.mail.errors import Step
from webapp.mail.idn import ascii_domain

KINDS = ("socks5", "socks4", "http")
SOCKS_TYPES = {"socks5": ProxyType.SOCKS5, "socks4": ProxyType.SOCKS4}
MAX_PROXY_HEAD = 16384  # an HTTP proxy's answer to CONNECT is a few short lines: reading stops past this
MAX_SOCKS_LOGIN = 255  # RFC 1929: one length byte before the username and before the password
# IPv6 forms that carry an IPv4 address a router or the kernel may turn back into it (checked as that IPv4 too).
NAT64 = ipaddress.ip_network("64:ff9b::/96")
# A host's last label read as a number (decimal, or inet_aton's octal and 0x hexadecimal), and a whole numeric host.
NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*", re.IGNORECASE)
NUMERIC_SPELLING = re.compile(r"[0-9a-fx]+(\.[0-9a-fx]+){0,3}", re.IGNORECASE)
# The longest wait for this machine's resolver before a name goes to a proxy that resolves it (see _check_name_here).
NAME_CHECK_SECONDS = 3.0


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

    blocked_networks (see parse_networks): addresses never contacted (MailError POLICY, before any connection or
    proxy request). An address is checked in whatever spelling a resolver reads (numeric_address), and sent on in
    its usual form. A name is checked on every address it resolves to here; through a proxy that resolves the
    destination name itself (HTTP, SOCKS5 with remote DNS) it is resolved here first too, and a name unknown here
    is left to the proxy, which alone then learns where it leads. An internationalised name is resolved, checked
    and sent to the proxy in one form, its IDNA 2008 A-label (ascii_name).
    """
    blocked = parse_networks(blocked_networks)
    end = time.monotonic() + timeout
    address = _numeric_or_refuse(host, port)
    try:
        # The one ASCII form of the host for resolving, the policy, the proxy's request (and, in client.py, TLS):
        # converted twice, by different rules, a name could be checked as one domain and reached as another.
        target = address or ascii_name(host)
    except OSError as exc:
        raise errors.dns_error(exc, host, port) from None
    if hop is None:
        try:
            return _connect(_resolve_checked(target, port, end, blocked, name=host), end)
        except OSError as exc:
            raise errors.classify(exc, Step.CONNECT, host=host, port=port) from None
    if address is not None:
        check_addresses(host, port, [address], blocked)
    if hop.kind != "http" and not _socks_login_sendable(hop):
        raise proxy_errors.proxy_login_unsendable(hop.label, host, port)
    try:
        proxy_host = _numeric_or_refuse(hop.host, hop.port) or ascii_name(hop.host)
        proxy_infos = _resolve_checked(proxy_host, hop.port, end, blocked, proxy=hop.label, destination=host)
    except OSError as exc:
        raise proxy_errors.proxy_error(exc, hop.label, host, port) from None
    destination = target
    if address is None and not hop.resolves_names:
        try:
            destination = _resolve_checked(target, port, end, blocked, name=host)[0][4][0]
        except OSError as exc:
            raise errors.classify(exc, Step.CONNECT, host=host, port=port) from None
    elif address is None and blocked:
        _check_name_here(target, host, port, end, blocked)
    if hop.kind == "http":
        return _http_tunnel(destination, host, port, hop, proxy_infos, end, timeout)
    proxy = Proxy(
        SOCKS_TYPES[hop.kind], proxy_infos[0][4][0], hop.port,
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
        raise proxy_errors.proxy_failure(exc, hop.label, host, port) from None
    sock.settimeout(timeout)
    return sock


def ascii_name(host: str) -> str:
    """A host name as every connection carries it: its IDNA 2008 A-label (idn.ascii_domain), not the IDNA 2003 form
    socket, ssl and python-socks would make of the text. socket.gaierror for a name without one, or holding white
    space or a control character (they would split or add a line of an HTTP proxy's request)."""
    try:
        name = ascii_domain(host)
    except UnicodeError:
        name = None
    if name is None or has_control_characters(name) or " " in name:
        raise socket.gaierror(socket.EAI_NONAME, "not a valid host name")
    return name


def numeric_address(host: str) -> str | None:
    """The IP address host spells, in its usual form, or None for a name; ValueError for a numeric-looking host
    that is neither. Every spelling a resolver reads as an IPv4 address counts: inet_aton's one to four parts, each
    decimal, octal (leading 0) or hexadecimal (0x), as in 2852039166, 0251.0376.0251.0376, 169.254.43518 and
    0xa9fea9fe; and IPv6, bracketed or not. A host whose last label is a number is never a DNS name (RFC 3696 §2:
    no top-level domain is all-numeric), so one inet_aton refuses (1.2.3.4.5, 999.1.1.1, 127.0.0.2.) is refused
    rather than left to a resolver or proxy that may read it otherwise."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    first_word = (text.split(maxsplit=1) or [""])[0]
    if not NUMERIC_LABEL.fullmatch(first_word.rstrip(".").rpartition(".")[2]):
        return None
    try:
        # inet_aton ignores whatever follows a space, and older resolvers used it: "127.0.0.2 x" was 127.0.0.2.
        if first_word != text or not NUMERIC_SPELLING.fullmatch(text):
            raise OSError
        return socket.inet_ntoa(socket.inet_aton(text))
    except OSError:
        raise ValueError(f"{host!r} is not an IPv4 address a resolver would read the same way") from None


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
            raise proxy_errors.blocked_address(destination if proxy else host, port, address, network, proxy=proxy)


def _numeric_or_refuse(host: str, port: int) -> str | None:
    """numeric_address(host), or MailError POLICY (permanent) for a numeric-looking host that is not an address:
    a resolver or proxy elsewhere could read it as an address the policy never checked."""
    try:
        return numeric_address(host)
    except ValueError:
        raise proxy_errors.not_an_address(host, port) from None


def _check_name_here(name: str, host: str, port: int, end: float, blocked) -> None:
    """A name (ascii_name of host, as the proxy is to get it) a proxy is to resolve, resolved here first: refused if
    any address it has here is blocked. A name unknown here (or a resolver too slow to wait for) is left to the
    proxy: resolving names this machine cannot is what remote DNS is for."""
    try:
        infos = resolve(name, port, min(_left(end), NAME_CHECK_SECONDS))
    except OSError:
        return
    check_addresses(host, port, [info[4][0] for info in infos], blocked)


def _http_tunnel(target_host: str, host: str, port: int, hop: Hop, proxy_infos, end: float,
                 timeout: float) -> socket.socket:
    """HTTP CONNECT (RFC 9110 §9.3.6) to target_host (host as checked: an address in its usual form, or the name's
    ascii_name), reading the proxy's answer up to its blank line and not one byte further.
    Not python-socks here: its single recv() of up to 64 KiB can swallow the SMTP greeting that follows the
    proxy's 200 (the server speaks first), or stop before the blank line and leave it for smtplib to read."""
    target = f"[{target_host}]:{port}" if ":" in target_host else f"{target_host}:{port}"
    try:
        sock = _connect(proxy_infos, end)
    except OSError as exc:
        raise proxy_errors.proxy_error(exc, hop.label, host, port) from None
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
        raise proxy_errors.proxy_error(ProxyTimeoutError("Proxy connection timed out"), hop.label, host, port) from None
    except (ProxyError, OSError) as exc:
        sock.close()
        raise proxy_errors.proxy_failure(exc, hop.label, host, port) from None
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


def _resolve_checked(host: str, port: int, end: float, blocked, *, name: str | None = None,
                     proxy: str | None = None, destination: str | None = None) -> list[tuple]:
    """resolve(), then every address checked (name: how the admin wrote host, for the refusal)."""
    infos = resolve(host, port, _left(end))
    # Every address first: a name with one blocked address among good ones is refused, not tried in turn.
    check_addresses(name or host, port, [info[4][0] for info in infos], blocked, proxy=proxy,
                    destination=destination)
    return infos


def _connect(infos: list[tuple], end: float) -> socket.socket:
    """A TCP connection to the first of the resolved addresses that answers."""
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
