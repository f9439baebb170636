"""Typed surface of the compiled core, fastnats._core (kept in step with _core.pyx)."""

from __future__ import annotations

# --- Wire byte counter (_wire.pxi) ---

from collections.abc import Mapping, Sequence
from typing import Literal

class WireCounter:
    """Wire bytes per NATS listener from sock_diag dumps and destroy events; see _wire.pxi."""

    mode: Literal["poll", "destroy_events"]
    def __init__(
        self, ports: Mapping[int, str], mode: Literal["poll", "destroy_events"] = "poll"
    ) -> None: ...
    @property
    def ports(self) -> dict[int, str]: ...
    @property
    def sockets(self) -> int: ...
    def update(self, buffers: Sequence[bytes | bytearray | memoryview]) -> None: ...
    def families(self) -> dict[str, list[tuple[tuple[str, ...], int]]]: ...
