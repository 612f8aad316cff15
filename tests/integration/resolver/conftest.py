"""Real peers: Knot serving the test zones, Unbound resolving from it (per session), and our own
data plane on the conformance zones (per module; the Unbound plugin's tests use it too)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .peers import Peer, free_port, resolver_config, start_knot, start_resolver, start_unbound


@pytest.fixture(scope="session")
def knot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    peer = start_knot(tmp_path_factory.mktemp("knot"))
    yield peer
    peer.stop()


@pytest.fixture(scope="session")
def unbound(tmp_path_factory: pytest.TempPathFactory, knot: Peer) -> Iterator[Peer]:
    peer = start_unbound(tmp_path_factory.mktemp("unbound"), knot.port)
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory, unbound: Peer) -> Iterator[Peer]:
    """Our data plane with the conformance zones (test_conformance_bind.POLICY), Unbound upstream."""
    from .test_conformance_bind import zone_tables
    work = tmp_path_factory.mktemp("ours")
    port = free_port()
    peer = start_resolver(work, resolver_config(work, port, [unbound.port], zone_tables(work)), port)
    yield peer
    peer.stop()
