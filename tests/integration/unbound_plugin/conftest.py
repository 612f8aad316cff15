"""Session-scoped real peers for the plugin tests: Knot serving the test zones, and a plain Unbound
resolving from it (the upstream of our own data plane, which the conformance test compares with).
The same fixtures as the resolver's tests (tests/integration/resolver/conftest.py)."""

from __future__ import annotations

from ..resolver.conftest import knot, ours, unbound

__all__ = ["knot", "ours", "unbound"]
