from __future__ import annotations

from collections.abc import Iterator

import pytest

from .harness import World, start_world


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    w = start_world(tmp_path)
    try:
        yield w
    finally:
        w.client.close()
        w.server.stop()
