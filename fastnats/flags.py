"""argparse value types shared by the command line and the collectors' own flags."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Collection
from typing import TypeVar

from ._impl import impl

T = TypeVar("T", int, float)


def number(convert: Callable[[str], T], what: str, is_allowed: Callable[[T], bool],
           requirement: str) -> Callable[[str], T]:
    """An argparse type: ``convert`` the text, then check it against ``is_allowed``."""
    def parse(text: str) -> T:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {what}: {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")) or not is_allowed(value):
            raise argparse.ArgumentTypeError(f"{requirement}: {text!r}")
        return value
    return parse


def seconds(text: str) -> float:
    """Plain seconds ("2.5") or a Go duration ("500ms", "1m30s"), as Prometheus and the Go
    exporters take them."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return impl.parse_go_duration(text) / 1e9
    except ValueError:
        raise ValueError(text) from None


positive_seconds = number(seconds, "duration (seconds, or Go style: 500ms, 5s, 1m)",
                          lambda v: v > 0, "must be a positive duration")
non_negative_seconds = number(seconds, "duration (seconds, or Go style: 500ms, 5s, 1m)",
                              lambda v: v >= 0, "must not be a negative duration")
non_negative_int = number(int, "whole number", lambda v: v >= 0, "must not be negative")
positive_int = number(int, "whole number", lambda v: v >= 1, "must be at least 1")


# Binary multiples under either name, as Prometheus reads its own size flags.
_SIZE_UNITS = {"": 1, "b": 1, **{f"{prefix}{suffix}": 1 << (10 * power)
                                 for power, prefix in enumerate("kmg", 1)
                                 for suffix in ("", "b", "ib")}}


def bytes_size(text: str) -> int:
    """Bytes, or a number with K/M/G (KB, KiB, ...: binary multiples, as Prometheus reads)."""
    amount = text.rstrip("BbIiKkMmGg")
    unit = _SIZE_UNITS.get(text[len(amount):].lower())
    if unit is None:
        raise ValueError(text)
    return int(amount) * unit


size = number(bytes_size, "size (bytes, or 512KiB, 16MiB, 1GiB)", lambda v: v >= 0,
              "must not be negative")
positive_size = number(bytes_size, "size (bytes, or 512KiB, 16MiB, 1GiB)", lambda v: v > 0,
                       "must be at least 1 byte")


def field_list(choices: Collection[str], what: str = "field to group by"
               ) -> Callable[[str], tuple[str, ...]]:
    """An argparse type: comma-separated names from ``choices`` (each a ``what``), each at most
    once; empty items are skipped."""
    def parse(text: str) -> tuple[str, ...]:
        fields = tuple(field.strip() for field in text.split(",") if field.strip())
        for field in fields:
            if field not in choices:
                raise argparse.ArgumentTypeError(
                    f"no {what} {field!r}; choose from {', '.join(choices)}")
        if len(set(fields)) != len(fields):
            raise argparse.ArgumentTypeError(f"a {what} is listed twice: {text!r}")
        return fields
    return parse
