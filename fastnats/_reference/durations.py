"""Go durations as nats-server writes them in /connz: the oracle of ``_core/durations.pxi``."""

from __future__ import annotations

_I64_MAX = 2**63 - 1
_DURATION_UNITS = {
    "ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000,
    "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000,
    # nats-server writes uptime and idle as 1y2d3h4m5s, with 365-day years.
    "d": 86_400_000_000_000, "y": 31_536_000_000_000_000,
}


def parse_go_duration(text: str | bytes) -> int:
    """Nanoseconds of a Go duration ("1.234ms", "2m3.5s") or a nats-server uptime ("1d2h3m4s"),
    given as str or bytes; raises ValueError if it is not one.

    A fraction keeps its first 18 digits and is scaled in double precision, as Go does.
    """
    if not isinstance(text, str):
        text = bytes(text).decode()
    s, neg = text, False
    if s[:1] in ("-", "+"):
        neg, s = s[0] == "-", s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    total, i = 0, 0
    while i < len(s):
        j = i
        while i < len(s) and "0" <= s[i] <= "9":
            i += 1
        whole = s[j:i]
        frac = ""
        if i < len(s) and s[i] == ".":
            i += 1
            j = i
            while i < len(s) and "0" <= s[i] <= "9":
                i += 1
            frac = s[j:i]
        if not whole and not frac:
            raise ValueError(f"invalid duration {text!r}")
        j = i
        while i < len(s) and s[i] != "." and not "0" <= s[i] <= "9":
            i += 1
        unit = _DURATION_UNITS.get(s[j:i])
        if unit is None:
            raise ValueError(f"invalid duration unit in {text!r}")
        value = int(whole or "0")
        if value > _I64_MAX // unit:
            raise ValueError(f"duration out of range: {text!r}")
        part = value * unit
        frac = frac[:18]
        if frac:
            part += int(float(int(frac)) * (float(unit) / float(10 ** len(frac))))
        total += part
        if total > _I64_MAX:
            raise ValueError(f"duration out of range: {text!r}")
    return -total if neg else total
