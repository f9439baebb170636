"""A monitored server: its ``server`` label value and its monitoring URL, parsed from a flag."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Target:
    """One monitored server: ``name`` is its ``server`` label value, ``url`` its monitor URL."""

    name: str
    url: str

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""


def parse_target(spec: str) -> Target:
    """Parse ``URL`` or ``name=URL``; the name defaults to the URL's host:port."""
    name, sep, url = spec.partition("=")
    if not sep or "://" in name:
        name, url = "", spec
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not a monitoring URL: {spec!r} (expected http://HOST:PORT)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in monitoring URL: {spec!r}") from None
    if port is None:
        url = f"{parts.scheme}://{parts.netloc}:8222{parts.path}"
        port = 8222
    return Target(name or f"{parts.hostname}:{port}", url.rstrip("/"))
