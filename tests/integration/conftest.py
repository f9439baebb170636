"""Fixtures of the integration suite that need more than one nats-server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import cluster
from tests.support.process import require_tool


@pytest.fixture(scope="session")
def supercluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cluster.Supercluster]:
    """Clusters A (A1-A3, routed, JetStream, leafnode listeners; A1 is the hub) and B (B1),
    gateways both ways, accounts SYS/T1/T2: see tests.support.cluster.

    Shared by the whole session, so its users follow two rules. A test that stops a node
    restarts it before it ends (``node.start()`` then ``supercluster.wait_formed()``, in a
    ``finally``), so the next test finds the topology whole. And no test expects a counter, a
    connection count or a leaf count to start from zero: measure a difference, or filter by
    names of the test's own.
    """
    require_tool("nats-server")
    with cluster.supercluster(tmp_path_factory.mktemp("supercluster")) as started:
        yield started


@pytest.fixture(scope="session")
def jetstream_assets(supercluster: cluster.Supercluster):
    """Streams and consumers in T1 and T2 on cluster A, with messages, pending and ack pending:
    see tests.support.jetstream. A test that stops a node restarts it and waits for
    ``jetstream_assets.settled()`` before it ends; a test that publishes keeps
    ``published`` true by publishing through ``jetstream_assets.publish``."""
    # Imported here: only the JetStream tests need nats-py.
    from tests.support.jetstream import JetStreamAssets

    supercluster.wait_formed()
    return JetStreamAssets.create(supercluster)
