"""Plain, slow, obviously correct twin of ``fastnats._core``, module for part.

It is the oracle of the differential tests, and the fallback that runs only when
``FASTNATS_NO_EXTENSIONS=1`` asks for it. It imports neither ``_core`` nor prometheus_client, and
writes the same bytes as the compiled core:

- ``writer``: ``render_text`` (``_core/text.pxi``);
- ``durations``: ``parse_go_duration`` (``_core/durations.pxi``);
- ``connz``: ``ConnzAggregator`` (``_core/json.pxi``, ``connz_*.pxi``), with orjson for the JSON;
- ``leafz``: ``LeafzAggregator`` (``_core/leafz.pxi``), likewise;
- ``common``: what those two share (``_core/json.pxi``, ``tables.pxi``): number rules, saturating
  sums, distributions, the group table;
- ``wire``: ``WireCounter`` and ``wire_parse`` (``_core/sockdiag.pxi``);
- ``jsz``: ``JszListing`` (``_core/jsz*.pxi``), orjson and ``collectors.decode.Fields``;
- ``accstatz``: ``AccstatzTable`` (``_core/accstatz*.pxi``), likewise.
"""

from __future__ import annotations

from .connz import ConnzAggregator
from .durations import parse_go_duration
from .leafz import LeafzAggregator
from .wire import WireCounter, wire_parse
from .writer import render_text

IMPLEMENTATION = "reference"

__all__ = ["IMPLEMENTATION", "AccstatzTable", "ConnzAggregator", "JszListing", "LeafzAggregator",
           "WireCounter", "parse_go_duration", "render_text", "wire_parse"]


def __getattr__(name: str) -> object:
    # jsz and accstatz read through collectors.decode, and importing the collectors imports
    # _impl, which imports this package: they are imported on first use.
    if name == "JszListing":
        from .jsz import JszListing
        return JszListing
    if name == "AccstatzTable":
        from .accstatz import AccstatzTable
        return AccstatzTable
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
