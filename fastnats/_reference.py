"""Plain, slow, obviously correct implementations of what ``_core`` does.

It is the oracle of the differential tests, and the fallback that runs only when
``FASTNATS_NO_EXTENSIONS=1`` asks for it. It must not import ``_core``.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest

from .interop import Family, client_metrics

IMPLEMENTATION = "reference"


class _Families:
    def __init__(self, families: list[Family]) -> None:
        self._families = families

    def collect(self):
        return client_metrics(self._families)


def render_text(families: Iterable[Family]) -> bytes:
    """Render families with prometheus_client's own exposition code."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(list(families)))
    return generate_latest(registry)
