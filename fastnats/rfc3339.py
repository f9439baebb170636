"""Go's RFC 3339 timestamps (the ``now`` and ``start`` fields of nats-server's monitoring
endpoints) as Unix nanoseconds. It imports nothing of fastnats, so that the core may use it."""

from __future__ import annotations

import re
from datetime import datetime

_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def parse_rfc3339_ns(text: str) -> int:
    """Unix time in nanoseconds of a Go RFC 3339 timestamp (datetime holds only microseconds).
    Raises ValueError."""
    match = _RFC3339.match(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    base, fraction, zone = match.groups()
    seconds = int(datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone)).timestamp())
    nanos = int(fraction[:9].ljust(9, "0")) if fraction else 0
    return seconds * 1_000_000_000 + nanos
