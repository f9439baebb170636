"""Fixtures shared by the suites; the helpers behind them are in tests.support."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fastnats.nats.launcher import NatsServer
from tests.support.process import running_nats


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    """A nats-server of the test's own, on random loopback ports."""
    with running_nats() as server:
        yield server


@pytest.fixture(scope="module")
def shared_nats_server() -> Iterator[NatsServer]:
    """One nats-server for the tests of a module that only read it: none stops it, and none
    compares the server's totals with counts of its own."""
    with running_nats() as server:
        yield server


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """Write text to a file under tmp_path and return its path."""

    def write(text: str, name: str = "nats.conf") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write
