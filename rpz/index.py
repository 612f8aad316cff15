"""Packed lookup structures of a compiled policy zone.

NameTable — every trigger name of one kind (QNAME or NSDNAME) plus every empty non-terminal above
them, as a bucketed hash table over packed arrays (no Python object per rule):

    blob     all names, canonical wire, back to back, in bucket order
    offs     uint32[n+1]   name i is blob[offs[i]:offs[i+1]]
    hashes   uint32[n]     name_hash(name i), checked before the bytes are compared
    bstart   uint32[nb+1]  names of bucket b are rows bstart[b] .. bstart[b+1]-1
    rule     uint32[n]     rule id of the name itself (0: none, an empty non-terminal)
    wrule    uint32[n]     rule id of ``*.<name>`` (0: no wildcard below this name)
    kids     uint32[n]     number of child nodes (incremental changes keep DNS existence exact)

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
from typing import Protocol

import numpy as np
import numpy.typing as npt

from .triggers import Prefix

HASH_PRIME = 4294967291  # largest prime below 2**32 (rpz.vec's second dedup hash)
U32 = npt.NDArray[np.uint32]
LOW32 = 0xFFFFFFFF


def name_hash(key: bytes) -> int:
    """The table hash of a canonical wire name: CPython's own (unsalted) int hash of the name's
    little-endian value, i.e. that value mod 2**61-1. Two C calls, no big-int division."""
    return hash(int.from_bytes(key, "little"))


class NameLookup(Protocol):
    """What evaluation needs of a name table (NameTable, or rpz.overlay.NameOverlay over one)."""

    @property
    def size(self) -> int: ...

    def match(self, name: bytes) -> tuple[int, bytes, bool] | None: ...

    def state(self, key: bytes) -> tuple[int, int, int] | None: ...


@dataclass(frozen=True, slots=True)
class NameTableArrays:
    """The raw arrays of a NameTable, for building and for snapshot I/O."""

    blob: bytes | memoryview
    offs: memoryview
    hashes: memoryview
    bstart: memoryview
    rule: memoryview
    wrule: memoryview
    kids: memoryview
    maxdepth: int


class NameTable:
    """Lookup over NameTableArrays; see the module docstring."""

    __slots__ = ("_blob", "_bstart", "_hashes", "_nb", "_offs", "arrays", "maxdepth", "rule", "size", "wrule")

    def __init__(self, arrays: NameTableArrays) -> None:
        self.arrays = arrays
        self._blob = arrays.blob
        self._offs = arrays.offs
        self._hashes = arrays.hashes
        self._bstart = arrays.bstart
        self.rule = arrays.rule
        self.wrule = arrays.wrule
        self._nb = len(arrays.bstart) - 1  # a prime: bucket = hash mod nb spreads every bit
        self.size = len(arrays.hashes)
        self.maxdepth = arrays.maxdepth

    def find(self, key: bytes) -> int:
        """Row of ``key`` (canonical wire), or -1."""
        h = hash(int.from_bytes(key, "little"))
        b = h % self._nb
        i = self._bstart[b]
        end = self._bstart[b + 1]
        hashes = self._hashes
        h &= LOW32
        while i < end:
            if hashes[i] == h:
                offs = self._offs
                if self._blob[offs[i] : offs[i + 1]] == key:
                    return i
            i += 1
        return -1

    def key(self, row: int) -> bytes:
        return bytes(self._blob[self._offs[row] : self._offs[row + 1]])

    def state(self, key: bytes) -> tuple[int, int, int] | None:
        """(rule, wrule, children) of an existing node, or None (the name does not exist)."""
        row = self.find(key)
        if row < 0:
            return None
        return self.rule[row], self.wrule[row], self.arrays.kids[row]

    def match(self, name: bytes) -> tuple[int, bytes, bool] | None:
        """DNS-semantics match of ``name``: (rule id, node key, is_wildcard) or None.

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
                    return (r, key, False) if r else None
                w = self.wrule[row]
                return (w, key, True) if w else None
            if not name[off]:
                return None
            off += name[off] + 1
            exact = False

    def rows(self) -> Iterable[int]:
        return range(self.size)


def build_name_table(entries: dict[bytes, list[int]]) -> NameTable:
    """Build from {canonical name: [rule, wrule]}; adds every empty non-terminal and the root."""
    from .vec import from_keys
    keys = list(entries)
    m, lens = from_keys(keys)
    rule = np.fromiter((entries[k][0] for k in keys), dtype=np.uint32, count=len(keys))
    wrule = np.fromiter((entries[k][1] for k in keys), dtype=np.uint32, count=len(keys))
    return build_name_table_matrix(m, lens, rule, wrule)


def build_name_table_matrix(m: npt.NDArray[np.uint8], lens: npt.NDArray[np.int64], rule: U32,
                            wrule: U32, h64: npt.NDArray[np.uint64] | None = None,
                            known: _Known | None = None) -> NameTable:
    """Build from distinct names held as a matrix (see rpz.vec); adds every empty non-terminal
    and counts each node's children (what incremental changes need to keep DNS semantics).
    ``h64`` is ``rpz.vec.hash64(m)`` and ``known`` a _Known over exactly these rows, when the
    caller has them already."""
    from .vec import hash64, parents, table_hash, to_blob, unique_rows
    if h64 is None:
        h64 = hash64(m)
    mats, lenss, rules, wrules = [m], [lens], [rule], [wrule]
    parent_parts: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] = []
    total = len(lens)
    if total:
        if known is None:
            known = _Known(m, lens, _composite(h64, lens))
        frontier_m, frontier_l = m, lens
        frontier_idx = np.arange(total, dtype=np.int64)
        while len(frontier_l):
            pm, pl, has = parents(frontier_m, frontier_l)
            pm, pl, rows = pm[has], pl[has], frontier_idx[has]
            if not len(pl):
                break
            ph = hash64(pm)
            rep, inv = unique_rows(pm, pl, ph)
            cm, cl, ck = pm[rep], pl[rep], _composite(ph[rep], pl[rep])
            at = known.index_of(cm, cl, ck)
            new = at < 0
            at[new] = total + np.arange(int(new.sum()))
            parent_parts.append((rows, at[inv]))
            if not new.any():
                break
            frontier_m, frontier_l, frontier_idx = cm[new], cl[new], at[new]
            total += len(frontier_l)
            known.add(frontier_m, frontier_l, ck[new])
            mats.append(frontier_m)
            lenss.append(frontier_l)
            zeros = np.zeros(len(frontier_l), dtype=np.uint32)
            rules.append(zeros)
            wrules.append(zeros)
    width = max(x.shape[1] for x in mats)
    allm = np.concatenate([x if x.shape[1] == width else np.pad(x, ((0, 0), (0, width - x.shape[1])))
                           for x in mats])
    alll = np.concatenate(lenss)
    allr = np.concatenate(rules)
    allw = np.concatenate(wrules)
    n = len(alll)
    kids = np.zeros(n, dtype=np.uint32)
    for _, par in parent_parts:
        kids += np.bincount(par, minlength=n).astype(np.uint32)
    nb = bucket_count(n)
    full = table_hash(allm)  # == name_hash() of each row
    buckets = (full % np.uint64(nb)).astype(np.uint32)
    hashes = (full & np.uint64(LOW32)).astype(np.uint32)
    order = _radix_order(buckets)
    allm, alll = allm[order], alll[order]
    offs = np.zeros(n + 1, dtype=np.uint32)
    np.cumsum(alll, out=offs[1:])
    bstart = np.zeros(nb + 1, dtype=np.uint32)
    np.cumsum(np.bincount(buckets, minlength=nb), out=bstart[1:])
    return NameTable(NameTableArrays(
        blob=to_blob(allm, alll), offs=_mv(offs), hashes=_mv(hashes[order]), bstart=_mv(bstart),
        rule=_mv(allr[order]), wrule=_mv(allw[order]), kids=_mv(kids[order]), maxdepth=_maxdepth(allm)))


class _Known:
    """Exact membership of name rows: grouped by key, confirmed byte by byte."""

    def __init__(self, m: npt.NDArray[np.uint8], lens: npt.NDArray[np.int64], keys: npt.NDArray[np.uint64],
                 order: npt.NDArray[np.int64] | None = None) -> None:
        self.m, self.lens = m, lens
        self.order = np.argsort(keys, kind="stable") if order is None else order
        self.keys = keys[self.order]

    def subset(self, mask: npt.NDArray[np.bool_]) -> _Known:
        """The known names of the rows in ``mask``, renumbered, without sorting again."""
        new_index = np.cumsum(mask) - 1
        keep = mask[self.order]
        sub = _Known.__new__(_Known)
        sub.m, sub.lens = self.m[mask], self.lens[mask]
        sub.order = new_index[self.order[keep]]
        sub.keys = self.keys[keep]
        return sub

    def alone(self) -> npt.NDArray[np.bool_]:
        """Rows that no other row equals."""
        n = len(self.keys)
        same_next = np.zeros(n, dtype=bool)
        if n > 1:
            same_next[:-1] = self.keys[1:] == self.keys[:-1]
        shared = same_next.copy()
        shared[1:] |= same_next[:-1]
        out = np.ones(len(self.lens), dtype=bool)
        idx = np.flatnonzero(shared)
        if len(idx):  # equal keys: compare the bytes (a different name under one key stays alone)
            rows = self.order[idx]
            groups: dict[int, list[int]] = {}
            for k, r in zip(self.keys[idx].tolist(), rows.tolist(), strict=True):
                groups.setdefault(k, []).append(r)
            for members in groups.values():
                seen: dict[bytes, int] = {}
                for r in members:
                    b = bytes(self.m[r, : int(self.lens[r])])
                    if b in seen:
                        out[r] = False
                        out[seen[b]] = False
                    else:
                        seen[b] = r
        return out

    def contains(self, cm: npt.NDArray[np.uint8], cl: npt.NDArray[np.int64],
                 ck: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        return self.index_of(cm, cl, ck) >= 0

    def index_of(self, cm: npt.NDArray[np.uint8], cl: npt.NDArray[np.int64],
                 ck: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        """Row of each candidate among the known names, or -1."""
        lo = np.searchsorted(self.keys, ck, side="left")
        hi = np.searchsorted(self.keys, ck, side="right")
        out = np.full(len(ck), -1, dtype=np.int64)
        one = (hi - lo) == 1
        rows = self.order[lo[one]]
        w = min(cm.shape[1], self.m.shape[1])
        same = (cm[one, :w] == self.m[rows, :w]).all(axis=1) & (cl[one] == self.lens[rows])
        if cm.shape[1] > w:
            same &= ~cm[one, w:].any(axis=1)
        if self.m.shape[1] > w:
            same &= ~self.m[rows, w:].any(axis=1)
        out[np.flatnonzero(one)[same]] = rows[same]
        for i in np.flatnonzero((hi - lo) > 1).tolist():  # a 64-bit key shared by different names
            want = bytes(cm[i, : int(cl[i])])
            for r in self.order[lo[i] : hi[i]].tolist():
                if bytes(self.m[r, : int(self.lens[r])]) == want:
                    out[i] = r
        return out

    def add(self, m: npt.NDArray[np.uint8], lens: npt.NDArray[np.int64], keys: npt.NDArray[np.uint64]) -> None:
        width = max(self.m.shape[1], m.shape[1])
        base = len(self.lens)
        self.m = np.concatenate([np.pad(self.m, ((0, 0), (0, width - self.m.shape[1]))),
                                 np.pad(m, ((0, 0), (0, width - m.shape[1])))])
        self.lens = np.concatenate([self.lens, lens])
        allk = np.concatenate([self.keys, keys])
        allo = np.concatenate([self.order, base + np.arange(len(keys))])
        o = np.argsort(allk, kind="stable")
        self.keys, self.order = allk[o], allo[o]


def bucket_count(n: int) -> int:
    """The smallest prime >= n (at least 2): buckets are ``hash mod prime``."""
    c = max(n, 2)
    while True:
        if (c % 2 and all(c % d for d in range(3, int(c**0.5) + 1, 2))) or c == 2:
            return c
        c += 1


def _radix_order(keys: U32) -> npt.NDArray[np.int64]:
    """Stable argsort of 32-bit keys as two 16-bit radix passes (numpy radix-sorts 16-bit keys)."""
    o1 = np.argsort((keys & np.uint32(0xFFFF)).astype(np.uint16), kind="stable")
    hi = (keys >> np.uint32(16)).astype(np.uint16)
    return o1[np.argsort(hi[o1], kind="stable")]


def _composite(h: npt.NDArray[np.uint64], lens: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    return h ^ (lens.astype(np.uint64) << np.uint64(56))


def _maxdepth(m: npt.NDArray[np.uint8]) -> int:
    n = m.shape[0]
    if n == 0:
        return 0
    pos = np.zeros(n, dtype=np.int64)
    depth = np.zeros(n, dtype=np.int64)
    rows = np.arange(n)
    active = m[:, 0] > 0
    while active.any():
        depth[active] += 1
        pos[active] += m[rows[active], pos[active]].astype(np.int64) + 1
        active = m[rows, np.minimum(pos, m.shape[1] - 1)] > 0
    return int(depth.max())


def _mv(arr: npt.NDArray[np.uint32]) -> memoryview:
    """A memoryview over the array's own buffer (no copy); indexing it yields Python ints."""
    return np.ascontiguousarray(arr, dtype=np.uint32).data


class StringTable:
    """Strings (order references) packed as one UTF-8 blob with offsets; entry 0 is empty."""

    __slots__ = ("blob", "offs")

    def __init__(self, blob: bytes | memoryview, offs: memoryview) -> None:
        self.blob = blob
        self.offs = offs

    @classmethod
    def build(cls, strings: Sequence[str]) -> StringTable:
        return cls.build_bytes([x.encode("utf-8") for x in strings])

    @classmethod
    def build_bytes(cls, enc: Sequence[bytes]) -> StringTable:
        offs = np.zeros(len(enc) + 1, dtype=np.uint32)
        np.cumsum(np.fromiter(map(len, enc), dtype=np.uint32, count=len(enc)), out=offs[1:])
        return cls(b"".join(enc), _mv(offs))

    def __len__(self) -> int:
        return len(self.offs) - 1

    def get(self, i: int) -> str:
        return bytes(self.blob[self.offs[i] : self.offs[i + 1]]).decode("utf-8")


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

    def best(self, addresses: Iterable[tuple[tuple[bool, int], bytes]]) -> tuple[int, Prefix, bytes] | None:
        """Best match over several ((v6, value), packed) addresses: longest internal prefix, then
        the smallest trigger address (sections 5.6, 5.7). Returns (rule, prefix, packed address)."""
        best: tuple[int, Prefix, bytes] | None = None
        for (v6, addr), packed in addresses:
            m = self.match(v6, addr)
            if m is None:
                continue
            if best is None or _better(m[1], best[1]):
                best = (m[0], m[1], packed)
        return best


def _better(a: Prefix, b: Prefix) -> bool:
    if a.internal_length != b.internal_length:
        return a.internal_length > b.internal_length
    return a.value128 < b.value128
