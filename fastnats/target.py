"""A monitored server: its ``server`` label value, its monitoring URL and the credentials the URL
may carry, parsed from a flag.

Credentials are taken out of the URL as it is parsed: ``url`` never holds them, so nothing that
prints it or hands it to aiohttp can leak them. Every message that names a target uses ``shown``,
the one redacted form: ``http://user:***@host:8222`` (the user is shown, the password never).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit, urlunsplit

#: What stands for a password wherever a URL or a message would show it.
MASK = "***"

# The user information of a URL, after "//" or, without a scheme, at the start of a word (in a
# message, after a space, a quote or a bracket). Up to the last "@" before the host, since a
# password may hold one.
_USERINFO = re.compile(r"(?:(?<=//)|(?<![^\s'\"(\[<=,]))[^/\s'\"]+@")


@dataclass(frozen=True, slots=True)
class Target:
    """One monitored server: ``name`` is its ``server`` label value, ``url`` its monitor URL
    (without credentials); ``user`` and ``password``, percent-decoded, are sent as HTTP Basic
    authentication when ``user`` is set."""

    name: str
    url: str
    user: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def shown(self) -> str:
        """``url`` as every message shows it: the user, if any, and a masked password."""
        return shown_url(self.url, self.user)

    def with_password(self, password: str) -> Target:
        return dataclasses.replace(self, password=password)

    def redact(self, text: str) -> str:
        """``text`` with this target's password masked, as given and as percent-encoded."""
        if not self.password:
            return text
        for form in {self.password, quote(self.password, safe=""), quote(self.password)}:
            text = text.replace(form, MASK)
        return text


def redact_userinfo(text: str) -> str:
    """``text`` with the user and password of every URL in it masked, scheme or not:
    ``nats://u:p@h:4222`` and ``u:p@h:4222`` show as ``nats://***@h:4222`` and ``***@h:4222``."""
    return _USERINFO.sub(MASK + "@", text)


def redact_urls(urls: Iterable[str]) -> str:
    """``urls`` as messages list them: masked (``redact_userinfo``), comma-separated."""
    return ", ".join(map(redact_userinfo, urls))


def shown_url(url: str, user: str | None) -> str:
    """``url`` (without credentials) as messages show it when ``user`` authenticates to it."""
    if user is None:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{quote(user, safe='')}:{MASK}@{rest}"


def parse_target(spec: str) -> Target:
    """Parse ``URL`` or ``name=URL``; the name defaults to the URL's host:port.

    ``http://USER:PASSWORD@HOST:PORT`` gives credentials, percent-encoded as URLs require.
    """
    name, sep, url = spec.partition("=")
    # "u:pa=ss@host" is a URL whose password holds "=", not a name "u:pa": a password must
    # never become a label.
    in_password = ":" in name and "://" not in url and "@" in url.partition("/")[0]
    if not sep or "://" in name or "@" in name or in_password:
        name, url = "", spec
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    user = None if parts.username is None else unquote(parts.username)
    password = None if parts.password is None else unquote(parts.password)
    if user is not None and ":" in user:
        raise ValueError("a monitoring URL's user cannot hold ':' (HTTP Basic authentication "
                         "ends the user at the first ':')")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        # The endpoints' paths are appended to the URL, so a query would end up in the middle
        # of each and a fragment would be dropped. The URL is not quoted: a password holding
        # an unencoded ? or # is split there, and part of it would show.
        raise ValueError("a monitoring URL takes no query or fragment (? or #): give "
                         "http://HOST:PORT or a path prefix; write ? and # in a password as "
                         "%3F and %23")
    netloc = parts.netloc.rpartition("@")[2]
    quoted = shown_url(urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")), user)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not a monitoring URL: {quoted!r} (expected http://HOST:PORT)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in monitoring URL: {quoted!r}") from None
    if port is None:
        netloc = f"{netloc}:8222"
        port = 8222
    plain = urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")).rstrip("/")
    return Target(name or f"{parts.hostname}:{port}", plain, user, password)
