"""Internationalised domain names in the one ASCII form the whole app uses: IDNA 2008 (UTS #46), as email-validator
reads addresses. Python's own "idna" codec, which socket, ssl and python-socks apply to a name given as text, is
IDNA 2003: it maps faß.de to fass.de, another domain."""
import idna


def ascii_domain(domain: str) -> str:
    """An internationalised domain (or host name) as its IDNA 2008 A-label, such as xn--fa-hia.de for faß.de;
    ASCII unchanged (IP literals too). UnicodeError (idna.IDNAError) for a name IDNA 2008 does not allow."""
    if domain.isascii():
        return domain
    return idna.encode(domain.rstrip("."), uts46=True).decode("ascii")
