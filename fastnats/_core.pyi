"""Typed surface of the compiled core, fastnats._core (kept in step with _core.pyx and _core/)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, TypeAlias

from typing_extensions import disjoint_base

from .interop import Family, Sample

IMPLEMENTATION: str

# --- Text writer (_core/text.pxi) ---

def render_text(families: Iterable[Family]) -> bytes: ...

# --- Go durations (_core/durations.pxi) ---

def parse_go_duration(s: str | bytes) -> int: ...

# --- /connz scanner and aggregator (_core/connz_*.pxi) ---

_Body: TypeAlias = bytes | bytearray | memoryview

@disjoint_base
class ConnzAggregator:
    """Per-group client aggregates, distributions and top-K from /connz; see
    _core/connz_aggregate.pxi."""

    def __init__(
        self,
        group_by: Iterable[str] = ("account", "name"),
        max_groups: int = 1000,
        group_ttl: float = 3600.0,
        top_k: int = 10,
        per_connection: bool = False,
        per_connection_max: int = 1000,
        closed_slack: float = 2.0,
    ) -> None: ...
    @property
    def group_by(self) -> tuple[str, ...]: ...
    @property
    def max_groups(self) -> int: ...
    @property
    def group_ttl(self) -> float: ...
    @property
    def top_k(self) -> int: ...
    @property
    def per_connection(self) -> bool: ...
    @property
    def per_connection_max(self) -> int: ...
    @property
    def closed_slack(self) -> float: ...
    @property
    def total(self) -> int: ...
    @property
    def count(self) -> int: ...
    @property
    def lost_known(self) -> int: ...
    @property
    def lost_unknown(self) -> int: ...
    def update(
        self, open_body: _Body | Sequence[_Body], closed_body: _Body | Sequence[_Body] | None,
        now: float, closed_overflow: bool = False, accepted: int | None = None,
    ) -> None: ...
    def families(self) -> dict[str, list[Sample]]: ...

# --- /leafz aggregator (_core/leafz.pxi) ---

@disjoint_base
class LeafzAggregator:
    """Per-group leafnode aggregates, an rtt distribution and top-K from /leafz, with the final
    counters of closed leafnodes from /connz?state=closed; see _core/leafz.pxi."""

    def __init__(
        self,
        group_by: Iterable[str] = ("account", "name"),
        max_groups: int = 1000,
        group_ttl: float = 3600.0,
        top_k: int = 10,
        closed_slack: float = 2.0,
    ) -> None: ...
    @property
    def group_by(self) -> tuple[str, ...]: ...
    @property
    def max_groups(self) -> int: ...
    @property
    def group_ttl(self) -> float: ...
    @property
    def top_k(self) -> int: ...
    @property
    def closed_slack(self) -> float: ...
    @property
    def count(self) -> int: ...
    @property
    def closed(self) -> int: ...
    @property
    def lost(self) -> int: ...
    def scan(self, body: _Body) -> int: ...
    def match_closed(self, page: _Body) -> int: ...
    def commit(self, now: float) -> None: ...
    def update(
        self, body: _Body, closed_body: _Body | Sequence[_Body] | None, now: float
    ) -> None: ...
    def families(self) -> dict[str, list[Sample]]: ...

# --- Wire byte counter (_core/sockdiag.pxi) ---

@disjoint_base
class WireCounter:
    """Wire bytes per NATS listener from sock_diag dumps and destroy events; see
    _core/sockdiag.pxi."""

    def __init__(
        self, ports: Mapping[int, str], mode: Literal["poll", "destroy_events"] = "poll"
    ) -> None: ...
    @property
    def mode(self) -> Literal["poll", "destroy_events"]: ...
    @property
    def ports(self) -> dict[int, str]: ...
    @property
    def sockets(self) -> int: ...
    def update(self, buffers: Sequence[bytes | bytearray | memoryview]) -> None: ...
    def families(self) -> dict[str, list[tuple[tuple[str, ...], int]]]: ...
