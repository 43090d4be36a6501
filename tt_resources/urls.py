"""Checks of URL-typed settings on their text, before a library parses them the way the user did not mean.

Each check returns None or one line saying what is wrong and how to fix it. No line ever contains any part
of the URL's userinfo (`user:password@`), so a password typed wrong is never echoed either.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
HOST_NAME = re.compile(
    r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
ESCAPE_HINT = "escape @ in the password as %40 (and % as %25, / as %2F, : as %3A)"


def authority_problem(url: str) -> str | None:
    """Why the `scheme://user:password@host:port/...` part of `url` cannot be read as meant, or None: more
    than one `@` before the host (an unescaped `@` in the password), a port that is not a number in
    1..65535. URLs without `//` (e.g. `sqlite:///file`) have no authority to check."""
    _, sep, rest = url.partition("://")
    if not sep:
        return None
    before_query = re.split(r"[?#]", rest, maxsplit=1)[0]
    if before_query.count("@") > 1:
        return f"more than one '@' before the host; {ESCAPE_HINT}"
    netloc = before_query.rpartition("@")[2].split("/", 1)[0]
    port = netloc.rpartition("]")[2] if netloc.startswith("[") else netloc
    if ":" not in port:
        return None
    port = port.rpartition(":")[2]
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        # the port is not echoed: without an '@' it could be a password typed where the host goes
        return "the port after the host is not a number in 1..65535 (host:port, e.g. 127.0.0.1:5432)"
    return None


def web_url_problem(url: str) -> str | None:
    """Why `url` is not an http(s) address a browser can open (e.g. `http://127.0.0.1:3000`), or None."""
    if any(c.isspace() for c in url):
        return "contains white space; give an address like http://127.0.0.1:3000"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "not an http(s) address; give one like http://127.0.0.1:3000"
    return authority_problem(url) or host_problem(parts.hostname)


def broker_url_problem(url: str) -> str | None:
    """Why `url` is not a Celery broker URL (`transport://user:password@host:port/vhost`), or None."""
    if any(c.isspace() for c in url) or not SCHEME.match(url):
        return "not a broker URL; give one like amqp://guest@127.0.0.1:5672//"
    return authority_problem(url)


def host_problem(host: str) -> str | None:
    """Why `host` is not a host name or IP address, or None (an empty one included)."""
    import ipaddress

    if not host.strip():
        return "empty; give a host name or IP address, e.g. 127.0.0.1"
    try:
        ipaddress.ip_address(host.strip("[]"))
        return None
    except ValueError:
        pass
    if re.fullmatch(r"[0-9.]+", host) or not HOST_NAME.match(host):
        return f"{host!r} is not a host name or IP address"
    return None
