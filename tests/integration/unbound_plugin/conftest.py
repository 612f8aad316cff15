"""Session-scoped real peers for the plugin tests: Knot serving the test zones, and a plain Unbound
resolving from it (the upstream of our own data plane, which the conformance test compares with)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..resolver.peers import Peer, start_knot, start_unbound


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
