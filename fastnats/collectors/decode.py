"""Decoding helpers the collectors share: JSON documents and Go's RFC 3339 times."""

from __future__ import annotations

import re
from datetime import datetime

import orjson

from ..errors import ScrapeError
from .base import DECODE


def decode_json(endpoint: str, body: bytes | bytearray) -> dict:
    """The JSON object in ``body``; anything else raises ``ScrapeError(endpoint, "decode")``."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ScrapeError(endpoint, DECODE, f"malformed JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ScrapeError(endpoint, DECODE, f"expected a JSON object, got {type(doc).__name__}")
    return doc


_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def parse_rfc3339_ns(text: str) -> int:
    """Unix time in nanoseconds of a Go RFC 3339 timestamp (datetime holds only microseconds)."""
    match = _RFC3339.match(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    base, fraction, zone = match.groups()
    seconds = int(datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone)).timestamp())
    nanos = int(fraction[:9].ljust(9, "0")) if fraction else 0
    return seconds * 1_000_000_000 + nanos
