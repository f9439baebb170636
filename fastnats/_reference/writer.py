"""The text writer, as plain string building: the oracle of ``_core/text.pxi``.

It writes the classic exposition format (0.0.4) byte for byte as the compiled writer does, and
raises the same exception types on the same bad input.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..interop import Family
from ..metrics import DISTRIBUTION, Metric


def format_value(value: Any) -> str:
    """A sample value as the text format writes it."""
    if type(value) is float:
        if value != value:
            return "NaN"
        if value == float("inf"):
            return "+Inf"
        if value == float("-inf"):
            return "-Inf"
        if value.is_integer() and abs(value) < 1e15:
            # Whole numbers print without a fraction, as the Go client does.
            return f"{value:.0f}"
        # The shortest repr that reads back the same; from 1e15 to 1e16 a whole number has no
        # exponent, and like the compiled writer it then gets no ".0" either.
        return repr(value).removesuffix(".0")
    if type(value) is int or type(value) is bool:
        return str(int(value))
    return format_value(float(value))


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def escape_label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _label_values(name: str, label_names: tuple[str, ...], values: Any) -> tuple[str, ...]:
    if not isinstance(values, tuple):
        raise TypeError(f"{name}: label values must be a tuple, not {type(values).__name__}")
    if len(values) != len(label_names):
        raise ValueError(f"{name}: {len(values)} label values for labels {label_names!r}")
    return values


def _series(name: str, label_names: tuple[str, ...], values: tuple[str, ...],
            le: str | None = None) -> bytes:
    """``name{labels}`` and the space before the value; ``le`` comes last.

    Each piece is checked and encoded in the order the compiled writer writes it, so that a
    family with two faults fails on the same one in both writers.
    """
    pairs = []
    for label, value in zip(label_names, values):
        if not isinstance(label, str):
            raise TypeError(f"{name}: label name {label!r} is not a str")
        pair = label.encode() + b'="'
        if not isinstance(value, str):
            raise TypeError(f"{name}: label value {value!r} is not a str")
        pairs.append(pair + escape_label_value(value).encode() + b'"')
    if le is not None:
        pairs.append(f'le="{escape_label_value(le)}"'.encode())
    head = name.encode()
    return head + b"{" + b",".join(pairs) + b"} " if pairs else head + b" "


def _line(series: bytes, value: Any) -> bytes:
    return series + format_value(value).encode() + b"\n"


def _histogram_lines(metric: Metric, label_names: tuple[str, ...], samples: list) -> list[bytes]:
    name, buckets = metric.name, metric.buckets
    lines = []
    # Unpacked, so that a sample of another shape is a ValueError or a TypeError.
    for label_values, value in samples:
        values = _label_values(name, label_names, label_values)
        if (type(value) is not tuple or len(value) != 2 or type(value[0]) is not tuple
                or len(value[0]) != len(buckets) or not buckets):
            raise ValueError(f"{name}: a histogram sample is (counts, sum) with one count per "
                             f"bucket {buckets!r}, not {value!r}")
        counts, total = value
        for le, count in zip(buckets, counts):
            lines.append(_line(_series(name + "_bucket", label_names, values, le), count))
        lines.append(_line(_series(name + "_sum", label_names, values), total))
        lines.append(_line(_series(name + "_count", label_names, values), counts[-1]))
    return lines


def render_text(families: Iterable[Family]) -> bytes:
    """Render ``(metric, label_names, samples)`` families as classic text exposition bytes.

    Same contract as ``_core.render_text``: a family without samples is left out, and a
    distribution's samples ``(cumulative bucket counts, sum)`` make one histogram family.
    """
    lines = []
    for metric, label_names, samples in families:
        if not samples:
            continue
        if not isinstance(label_names, tuple):
            raise TypeError(f"{metric.name}: label names must be a tuple")
        if not isinstance(samples, list):
            raise TypeError(f"{metric.name}: samples must be a list")
        lines.append(f"# HELP {metric.name} {escape_help(metric.help)}\n".encode())
        lines.append(f"# TYPE {metric.name} {metric.exposed_type}\n".encode())
        if metric.type == DISTRIBUTION:
            lines.extend(_histogram_lines(metric, label_names, samples))
            continue
        for label_values, value in samples:
            values = _label_values(metric.name, label_names, label_values)
            lines.append(_line(_series(metric.name, label_names, values), value))
    return b"".join(lines)
