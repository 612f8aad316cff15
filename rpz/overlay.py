"""Incremental changes over a compiled zone, for IXFR-sized updates applied in milliseconds.

A zone transfer that changes a thousand owners of a million-rule zone should not rebuild the
million. ``CompiledZone.with_owners`` (rpz.zone) decodes just the changed owners and records them
in a NameOverlay in front of the base NameTable; lookups ask the overlay first.

DNS existence stays exact: a node exists while it has a rule or a child. Every node keeps its
child count, so removing the last name under an empty non-terminal removes that non-terminal too
(and a wildcard above it applies again), exactly as a full rebuild would decide; the property test
tests/property/test_overlay.py holds the two equal.

Feeds compact an overlay into a fresh base from time to time (a full compile).
"""

from __future__ import annotations

from .index import NameTable

# per node: [rule, wrule, kids]; a node absent from ``nodes`` has the base's state
_State = list[int]


class NameOverlay:
    """Changed nodes over a base NameTable. Built by ``apply``; immutable once handed out."""

    __slots__ = ("base", "maxdepth", "nodes")

    def __init__(self, base: NameTable, nodes: dict[bytes, tuple[int, int, int]] | None = None,
                 maxdepth: int | None = None) -> None:
        self.base = base
        self.nodes: dict[bytes, tuple[int, int, int]] = dict(nodes or {})
        self.maxdepth = base.maxdepth if maxdepth is None else maxdepth

    @property
    def size(self) -> int:
        """An upper bound of the number of nodes; only ``size == 0`` (empty) is relied on."""
        return self.base.size + len(self.nodes)

    # -- reading ----------------------------------------------------------------------------
    def state(self, key: bytes) -> tuple[int, int, int] | None:
        st = self.nodes.get(key)
        if st is not None:
            return st if (st[0] or st[2]) else None
        return self.base.state(key)

    def match(self, name: bytes) -> tuple[int, bytes, bool] | None:
        """Same semantics as NameTable.match, over base + changes."""
        off = 0
        depth = 0
        i = 0
        while name[i]:
            i += name[i] + 1
            depth += 1
        exact = True
        while depth > self.maxdepth:
            off += name[off] + 1
            depth -= 1
            exact = False
        while True:
            key = name[off:] if off else name
            st = self.state(key)
            if st is not None:
                if exact:
                    return (st[0], key, False) if st[0] else None
                return (st[1], key, True) if st[1] else None
            if not name[off]:
                return None
            off += name[off] + 1
            exact = False

    # -- building ---------------------------------------------------------------------------
    def _get(self, key: bytes) -> _State:
        st = self.nodes.get(key)
        if st is None:
            st = self.base.state(key) or (0, 0, 0)
        return list(st)

    def _put(self, key: bytes, st: _State) -> None:
        self.nodes[key] = (st[0], st[1], st[2])
        depth = 0
        i = 0
        while key[i]:
            i += key[i] + 1
            depth += 1
        if (st[0] or st[2]) and depth > self.maxdepth:
            self.maxdepth = depth

    def _existence_changed(self, key: bytes, delta: int) -> None:
        """``key`` started (+1) or stopped (-1) existing: adjust its parent, and upwards."""
        while key != b"\x00":
            parent = key[key[0] + 1 :]
            st = self._get(parent)
            before = bool(st[0] or st[2])
            st[2] += delta
            self._put(parent, st)
            after = bool(st[0] or st[2])
            if before == after:
                return
            key = parent

    def set_rule(self, key: bytes, rule: int) -> None:
        """The rule of the owner ``key`` itself (0: the owner is gone)."""
        st = self._get(key)
        before = bool(st[0] or st[2])
        st[0] = rule
        self._put(key, st)
        after = bool(st[0] or st[2])
        if before != after:
            self._existence_changed(key, 1 if after else -1)

    def set_wildcard(self, parent: bytes, rule: int) -> None:
        """The rule of ``*.parent`` (0: the wildcard is gone): the ``*`` node and its parent's mark."""
        self.set_rule(b"\x01*" + parent, rule)
        st = self._get(parent)
        st[1] = rule
        self._put(parent, st)
