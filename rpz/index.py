"""Packed lookup structures of a compiled policy zone.

NameTable — every trigger name of one kind (QNAME or NSDNAME) plus every empty non-terminal above
them, as a bucketed hash table over packed arrays (no Python object per rule):

    blob     all names, canonical wire, back to back, in bucket order
    offs     uint32[n+1]   name i is blob[offs[i]:offs[i+1]]
    hashes   uint32[n]     name_hash(name i), checked before the bytes are compared
    bstart   uint32[nb+1]  names of bucket b are rows bstart[b] .. bstart[b+1]-1
    rule     uint32[n]     rule id of the name itself (0: none, an empty non-terminal)
    wrule    uint32[n]     rule id of ``*.<name>`` (0: no wildcard below this name)

A node exists (for DNS wildcard semantics) when it is a row of the table: the wildcard ``*.N`` only
applies to a query whose closest existing ancestor is N, so an empty non-terminal between them stops
it (BIND's behaviour, section 5.3 of the draft).

The arrays are plain buffers, so the same code serves a table built in memory and one mapped from a
snapshot file shared by all worker processes.

PrefixTable — IP triggers of one kind; longest prefix first (sections 5.6, 5.7).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .triggers import Prefix

HASH_PRIME = 4294967291  # largest prime below 2**32
U32 = npt.NDArray[np.uint32]


def name_hash(key: bytes) -> int:
    """The table hash of a canonical wire name (C speed: one big-int conversion and one modulo)."""
    return int.from_bytes(key, "little") % HASH_PRIME


@dataclass(frozen=True, slots=True)
class NameTableArrays:
    """The raw arrays of a NameTable, for building and for snapshot I/O."""

    blob: bytes | memoryview
    offs: memoryview
    hashes: memoryview
    bstart: memoryview
    rule: memoryview
    wrule: memoryview
    maxdepth: int


class NameTable:
    """Lookup over NameTableArrays; see the module docstring."""

    __slots__ = ("_blob", "_bstart", "_hashes", "_mask", "_offs", "arrays", "maxdepth", "rule", "size", "wrule")

    def __init__(self, arrays: NameTableArrays) -> None:
        self.arrays = arrays
        self._blob = arrays.blob
        self._offs = arrays.offs
        self._hashes = arrays.hashes
        self._bstart = arrays.bstart
        self.rule = arrays.rule
        self.wrule = arrays.wrule
        self._mask = len(arrays.bstart) - 2
        self.size = len(arrays.hashes)
        self.maxdepth = arrays.maxdepth

    def find(self, key: bytes) -> int:
        """Row of ``key`` (canonical wire), or -1."""
        h = int.from_bytes(key, "little") % HASH_PRIME
        b = h & self._mask
        i = self._bstart[b]
        end = self._bstart[b + 1]
        hashes = self._hashes
        while i < end:
            if hashes[i] == h:
                offs = self._offs
                if self._blob[offs[i] : offs[i + 1]] == key:
                    return i
            i += 1
        return -1

    def key(self, row: int) -> bytes:
        return bytes(self._blob[self._offs[row] : self._offs[row + 1]])

    def match(self, name: bytes) -> tuple[int, int, bool] | None:
        """DNS-semantics match of ``name``: (rule id, row, is_wildcard) or None.

        An existing node equal to ``name`` decides alone (its own rule, or none for an empty
        non-terminal). Otherwise the closest existing ancestor decides through its wildcard.
        """
        if self.size == 0:
            return None
        off = 0
        depth = 0
        i = 0
        while name[i]:
            i += name[i] + 1
            depth += 1
        # names deeper than any node cannot exist; start at the deepest possible ancestor
        exact = True
        while depth > self.maxdepth:
            off += name[off] + 1
            depth -= 1
            exact = False
        while True:
            key = name[off:] if off else name
            row = self.find(key)
            if row >= 0:
                if exact:
                    r = self.rule[row]
                    return (r, row, False) if r else None
                w = self.wrule[row]
                return (w, row, True) if w else None
            if not name[off]:
                return None
            off += name[off] + 1
            exact = False

    def rows(self) -> Iterable[int]:
        return range(self.size)


def build_name_table(entries: dict[bytes, list[int]]) -> NameTable:
    """Build from {canonical name: [rule, wrule]}; adds every empty non-terminal and the root."""
    nodes = dict(entries)
    if nodes:
        for key in list(entries):
            i = 0
            while key[i]:
                i += key[i] + 1
                anc = key[i:]
                if anc in nodes:
                    break
                nodes[anc] = [0, 0]
    keys = list(nodes)
    n = len(keys)
    nb = 1
    while nb < max(n, 1):
        nb *= 2
    hashes = np.fromiter((name_hash(k) for k in keys), dtype=np.uint32, count=n)
    buckets = hashes & np.uint32(nb - 1)
    order = np.argsort(buckets, kind="stable")
    keys_sorted = [keys[i] for i in order.tolist()]
    lens = np.fromiter((len(k) for k in keys_sorted), dtype=np.uint32, count=n)
    offs = np.zeros(n + 1, dtype=np.uint32)
    np.cumsum(lens, out=offs[1:])
    counts = np.bincount(buckets, minlength=nb).astype(np.uint32)
    bstart = np.zeros(nb + 1, dtype=np.uint32)
    np.cumsum(counts, out=bstart[1:])
    rules = np.fromiter((nodes[k][0] for k in keys_sorted), dtype=np.uint32, count=n)
    wrules = np.fromiter((nodes[k][1] for k in keys_sorted), dtype=np.uint32, count=n)
    maxdepth = max((_depth(k) for k in keys), default=0)
    return NameTable(NameTableArrays(
        blob=b"".join(keys_sorted), offs=_mv(offs), hashes=_mv(hashes[order]), bstart=_mv(bstart),
        rule=_mv(rules), wrule=_mv(wrules), maxdepth=maxdepth))


def _depth(key: bytes) -> int:
    d = 0
    i = 0
    while key[i]:
        i += key[i] + 1
        d += 1
    return d


def _mv(arr: npt.NDArray[np.uint32]) -> memoryview:
    return memoryview(np.ascontiguousarray(arr, dtype=np.uint32).tobytes()).cast("I")


class PrefixTable:
    """IP triggers of one kind: {(v6, length): {network: rule}} searched longest prefix first."""

    __slots__ = ("_by_len", "_order", "entries")

    def __init__(self, entries: Sequence[tuple[Prefix, int]]) -> None:
        self.entries = list(entries)
        by_len: dict[tuple[bool, int], dict[int, int]] = {}
        for prefix, rule in self.entries:
            bits = 128 if prefix.v6 else 32
            by_len.setdefault((prefix.v6, prefix.length), {})[prefix.value >> (bits - prefix.length)] = rule
        self._by_len = by_len
        self._order = sorted(by_len, key=lambda k: -k[1])

    def __len__(self) -> int:
        return len(self.entries)

    def match(self, v6: bool, addr: int) -> tuple[int, Prefix] | None:
        """Longest matching prefix for one address: (rule id, prefix)."""
        bits = 128 if v6 else 32
        for fam, length in self._order:
            if fam != v6:
                continue
            rule = self._by_len[(fam, length)].get(addr >> (bits - length))
            if rule is not None:
                net = (addr >> (bits - length)) << (bits - length)
                return rule, Prefix(v6, length, net)
        return None

    def best(self, addresses: Iterable[tuple[bool, int]]) -> tuple[int, Prefix] | None:
        """Best match over several addresses: longest internal prefix, then smallest address."""
        best: tuple[int, Prefix] | None = None
        for v6, addr in addresses:
            m = self.match(v6, addr)
            if m is None:
                continue
            if best is None or _better(m[1], best[1]):
                best = m
        return best


def _better(a: Prefix, b: Prefix) -> bool:
    if a.internal_length != b.internal_length:
        return a.internal_length > b.internal_length
    return a.value128 < b.value128
