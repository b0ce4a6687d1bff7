"""The failures of a network connector (proxy) and the refusals of the outbound policy, explained as MailErrors in
the admin's words (see errors.py: messages and hints marked with N_(), params never holding a secret)."""
from python_socks import ProxyConnectionError, ProxyTimeoutError

from webapp.mail.errors import N_, MailError, OversizedReply, Step

# RFC 1928 replies that will not change by trying again: not allowed by ruleset, command / address type unsupported.
PERMANENT_SOCKS5_REPLIES = {2, 7, 8}


def proxy_failure(exc: Exception, proxy: str, host: str, port: int) -> MailError:
    """Whatever went wrong while the connector opened the way to host:port (python-socks' errors, an HTTP proxy's
    answer, a socket error, an oversized answer)."""
    if isinstance(exc, MailError):
        return exc
    if isinstance(exc, OversizedReply):
        return oversized_answer(proxy, host, exc.limit)
    return proxy_error(exc, proxy, host, port)


def proxy_error(exc: Exception, proxy: str, host: str, port: int) -> MailError:
    """A failure of the network connector, with the proxy's own reason (RFC 1928 reply, HTTP status, ...)."""
    cause = exc.__cause__ if isinstance(exc, ProxyConnectionError) and exc.__cause__ else exc
    reason = (getattr(cause, "strerror", None) if isinstance(cause, OSError) else None) or str(cause)
    params = {"proxy": proxy, "host": host, "port": port, "reason": reason}
    if isinstance(exc, ProxyTimeoutError):
        return MailError(Step.PROXY, True, N_("The network connector %(proxy)s did not answer in time."),
                         N_("Check that the connector (proxy) is running and not overloaded."), params)
    if isinstance(exc, OSError):  # ProxyConnectionError, the proxy's name not resolved, a reset
        return MailError(Step.PROXY, True, N_("Could not reach the network connector %(proxy)s (%(reason)s)."),
                         N_("Check that the connector (proxy) is running and that its host and port are right. "
                            "Nothing was sent directly."), params)
    code = getattr(exc, "error_code", None)
    # python-socks reports SOCKS5 authentication failures without a code; its texts are stable English. An HTTP
    # proxy should answer 407, but some (tinyproxy) answer a wrong password with 401.
    if code in (401, 407) or "authentication" in reason.lower():
        return MailError(Step.PROXY, False, N_("The network connector %(proxy)s refused the login (%(reason)s)."),
                         N_("Check the connector's username and password."), params)
    if isinstance(code, int) and code >= 100:  # an HTTP status: 4xx will not change, 5xx may
        transient = code >= 500
    else:
        transient = code not in PERMANENT_SOCKS5_REPLIES
    return MailError(Step.PROXY, transient,
                     N_("The network connector %(proxy)s could not open a connection to %(host)s port %(port)s "
                        "(%(reason)s)."),
                     N_("Check that the proxy may reach the mail server (its rules and firewall) and that the host "
                        "and port are right."), params)


def oversized_answer(proxy: str, host: str, limit: int) -> MailError:
    """An HTTP proxy's answer to CONNECT past our limit."""
    return MailError(Step.PROXY, False,
                     N_("The network connector %(proxy)s sent an oversized reply (more than %(limit)s) to the "
                        "connection request, so the connection was closed."),
                     N_("Check that the connector's host and port are those of an HTTP proxy."),
                     {"proxy": proxy, "host": host, "limit": f"{limit // 1024} KiB"})


def proxy_login_unsendable(proxy: str, host: str, port: int) -> MailError:
    """The connector's username or password cannot go over SOCKS (ASCII, 255 characters at most); nothing was sent."""
    # The msgids of a refused login (already translated); the reason says it was refused here, before connecting.
    return MailError(Step.PROXY, False, N_("The network connector %(proxy)s refused the login (%(reason)s)."),
                     N_("Check the connector's username and password."),
                     {"proxy": proxy, "host": host, "port": port,
                      "reason": "SOCKS carries only a username and password of ASCII characters, at most 255 each; "
                                "nothing was sent"})


def blocked_address(host: str, port: int, address: str, network: str, proxy: str | None = None) -> MailError:
    """Our outbound policy (OUTBOUND_BLOCKED_NETWORKS) refused an address before any connection: permanent."""
    params = {"host": host, "port": port, "address": address, "network": network}
    if proxy is not None:
        params["proxy"] = proxy
        message = N_("The network connector %(proxy)s is at %(address)s, in the blocked network %(network)s "
                     "(setting OUTBOUND_BLOCKED_NETWORKS), so no connection was made.")
    elif host.strip("[]") == address:
        message = N_("%(address)s is in the blocked network %(network)s (setting OUTBOUND_BLOCKED_NETWORKS), "
                     "so no connection was made.")
    else:
        message = N_("%(host)s is at %(address)s, in the blocked network %(network)s "
                     "(setting OUTBOUND_BLOCKED_NETWORKS), so no connection was made.")
    return MailError(Step.POLICY, False, message,
                     N_("Link-local and cloud metadata addresses are never contacted. Use another host, or ask the "
                        "server's administrator to change OUTBOUND_BLOCKED_NETWORKS."), params)


def not_an_address(host: str, port: int) -> MailError:
    """A host that looks numeric and is no IP address (see connectors.numeric_address): refused for good, since a
    resolver or proxy elsewhere could read it as an address the policy never checked."""
    return MailError(Step.POLICY, False,
                     N_("%(host)s looks like an IP address but is not a valid one, so no connection was made."),
                     N_("Write an IPv4 address as four numbers from 0 to 255 (192.0.2.10), or use the server's "
                        "name."), {"host": host, "port": port})
