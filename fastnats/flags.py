"""argparse value types shared by the command line and the collectors' own flags."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

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


positive_float = number(float, "number", lambda v: v > 0, "must be a positive number of seconds")
non_negative_float = number(float, "number", lambda v: v >= 0,
                            "must be a non-negative number of seconds")
non_negative_int = number(int, "whole number", lambda v: v >= 0, "must not be negative")
positive_int = number(int, "whole number", lambda v: v >= 1, "must be at least 1")
