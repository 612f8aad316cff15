"""QNAME decisions for many names at once (``Policy.decide_qnames``), vectorized with numpy.

For each name this decides exactly what ``Policy.evaluate(None, qtype, [Stage(name)],
complete=False)`` decides: no client address, stage 0 only. The work per zone is done column-wise
over the whole batch instead of name by name:

1. the batch is one zero-padded byte matrix with every name's label offsets and the partial
   sums its table hash is made of (``rpz.index.name_hash``: the little-endian value mod
   2**61-1), so the hash of any suffix costs a few operations, whatever its length (_Batch);
2. per zone, every name starts at its deepest suffix the table can hold (``maxdepth``);
3. the buckets (hash mod a prime) are visited in address order, each slot's 32-bit check hash
   compared, and every candidate's key compared with the suffix as rows of 64-bit words;
4. names whose suffix exists stop there (exact node: its own rule; an ancestor: its wildcard
   rule; an empty non-terminal stops a wildcard, as in ``NameTable.match``), the others go one
   label up, until every name found its closest existing node or reached the root.

Zones are applied in order (section 5.2) to the names still undecided, with the rules of
``Policy.evaluate`` as a table:

| zone's override | the name matches a QNAME rule        | no QNAME match                       |
|-----------------|--------------------------------------|--------------------------------------|
| DISABLED        | kept in ``Decision.disabled``, go on | NEED_RESPONSE if the zone has IP/NS  |
|                 |                                      | triggers, else go on                 |
| any other       | the decision                         | NEED_RESPONSE if the zone has IP/NS  |
|                 |                                      | triggers, else go on                 |

and a name only disabled zones matched gets the first of them (action DISABLED), as in
``evaluate``. An overlay table (``rpz.overlay.NameOverlay``, an IXFR's changed owners over the base
table) is probed through its base; a name whose walk meets one of the overlay's changed keys is
decided by the overlay's own ``match``, one by one (a handful of names per change). Batches under
_VECTOR_FROM names are matched name by name with the table's own ``match``: there numpy's cost
per call outweighs what it saves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from . import names
from .actions import Action, ActionKind
from .errors import DnsNameError
from .index import LOW32, NameLookup, NameTable, name_hash
from .overlay import NameOverlay
from .policy import NEED_RESPONSE, Decision, Outcome, Override, Policy, PolicyZone, _effective
from .triggers import TriggerKind
from .vec import MERSENNE

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
U32 = npt.NDArray[np.uint32]
U8 = npt.NDArray[np.uint8]
BOOL = npt.NDArray[np.bool_]

F_NEED_RESPONSE = 1
"""The outcome depends on response data: an earlier zone has IP or NS triggers (NEED_RESPONSE)."""
F_DISABLED = 2
"""One or more disabled (log-only) zones matched: the decision's ``disabled`` is not empty."""
F_NOTE = 4
"""The decision carries a note: local data without the asked type (NODATA), or a walled-garden
target over 255 octets (the zone's fallback action)."""

_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_VECTOR_FROM = 256  # smaller batches are matched name by name: numpy's cost per call would dominate
_SORT_FROM = 4096  # batches from this size probe in bucket order (the sort costs less than it saves)
_M61 = np.uint64(MERSENNE)
_S61 = np.uint64(61)


def _rot(x: U64, s: U64 | np.uint64) -> U64:
    """A number congruent to ``x * 2**s`` mod 2**61-1, below 2**64, for any 64-bit ``x`` and
    0 <= s <= 60: the bits that would pass bit 61 wrap around (2**61 = 1 mod 2**61-1)."""
    out: U64 = ((x << s) & _M61) + (x >> (_S61 - s))
    return out


def _reduce(x: U64) -> U64:
    """``x`` mod 2**61-1 exactly, for any 64-bit ``x``."""
    x = (x & _M61) + (x >> _S61)
    x[x >= _M61] -= _M61
    return x


class _Batch:
    """The names of one batch as a zero-padded byte matrix, with their label offsets and what the
    table hash of every suffix is computed from.

    ``name_hash`` is the name's little-endian value mod M = 2**61-1. Cut into 64-bit words w_k,
    the value is sum(w_k * 2**(64k)) and 2**(64k) = 2**(3k mod 61) (mod M), so each word is
    rotated and summed (``full``), keeping the sums before each word (``before``). The suffix
    starting at byte ``off`` then needs no pass over its bytes: with P the value of the bytes
    before ``off`` (whole words from ``before``, one masked word), suffix = (full - P) * 2**(-8 off).
    """

    def __init__(self, qnames: Sequence[bytes]) -> None:
        n = len(qnames)
        lens = np.fromiter(map(len, qnames), dtype=np.int64, count=n)
        long = np.flatnonzero(lens > 255)
        if len(long):
            i = int(long[0])
            raise DnsNameError(f"name #{i} of the batch is {lens[i]} octets long; a name has at most 255")
        maxlen = int(lens.max())
        width = -(-maxlen // 8) * 8 + 8  # at least 8 zero bytes behind every name
        slack = [b""] * (-(-264 // width))  # zero rows behind the last name: whole-word loads stay inside
        mat = np.array([*qnames, *slack], dtype=f"S{width}").view(np.uint8).reshape(-1, width)
        self.qnames = qnames
        self.n = n
        self.lens = lens
        self.buf = mat.reshape(-1)
        self.base: I64 = np.arange(n, dtype=np.int64) * width
        self.label_starts, self.depth = _label_starts(self.buf, self.base, lens, width)
        self._stacked: I64 | None = None
        w64 = mat.view("<u8")
        self.w64 = w64.reshape(-1)
        self.wcols = w64.shape[1]
        nw = -(-maxlen // 8)
        before = np.empty((nw, n), dtype=np.uint64)
        acc = np.zeros(n, dtype=np.uint64)
        for k in range(nw):
            before[k] = acc
            acc += _rot(w64[:n, k], np.uint64(3 * k % 61))
            acc = (acc & _M61) + (acc >> _S61)
        self.before = before.reshape(-1)
        self.full = _reduce(acc)

    def label_at(self, rows: I64, cut: I64) -> I64:
        """Where (in ``buf``) each row's suffix after ``cut`` labels are removed starts."""
        lo = int(cut.min())
        if lo == int(cut.max()):
            out: I64 = self.label_starts[lo][rows]
            return out
        if self._stacked is None:
            self._stacked = np.stack(self.label_starts).reshape(-1)
        out = self._stacked[cut * self.n + rows]
        return out

    def suffix_hashes(self, rows: I64, off: I64) -> U64:
        """``rpz.index.name_hash`` of the suffix of each row that starts at byte ``off``."""
        full = self.full[rows]
        k = off >> 3
        part = self.w64[rows * self.wcols + k] & ((np.uint64(1) << (off & 7).astype(np.uint64) * np.uint64(8))
                                                  - np.uint64(1))
        ku = k.astype(np.uint64)
        prefix = _reduce(self.before[k * self.n + rows] + _rot(part, ku * np.uint64(3) % _S61))
        e = (_S61 - (off.astype(np.uint64) * np.uint64(8)) % _S61) % _S61
        return _reduce(_rot(full + _M61 - prefix, e))


def _pairs(arr: U32) -> U64:
    """Entries i and i+1 of a uint32 array as one 64-bit load at i (a view): i's in the low half."""
    return np.ndarray((max(len(arr) - 1, 0),), dtype="<u8", buffer=arr, strides=(4,))


def _word_rows(buf: U8, k: int) -> npt.NDArray[np.uint64]:
    """Row i is the ``k`` little-endian 64-bit words starting at byte i of ``buf`` (a view)."""
    count = max(len(buf) - 8 * k + 1, 0)
    return np.ndarray((count, k), dtype="<u8", buffer=buf, strides=(1, 8))


def _masks() -> npt.NDArray[np.uint64]:
    """_MASKS[n, j]: the bits of word j that belong to a key of n bytes."""
    nbytes = np.clip(np.arange(256)[:, None] - 8 * np.arange(32)[None, :], 0, 8).astype(np.uint64)
    return np.where(nbytes == 8, _ALL, (np.uint64(1) << (nbytes * np.uint64(8)) % np.uint64(64)) - np.uint64(1))


_MASKS = _masks()


def _checked_lens(qnames: Sequence[bytes]) -> I64:
    """The lengths of a few names, each checked as _Batch checks a whole batch."""
    for i, q in enumerate(qnames):
        at, end = 0, len(q) - 1
        while at < end and 0 < q[at] <= 63:
            at += q[at] + 1
        if at != end or end > 254 or q[end]:
            raise DnsNameError(f"name #{i} of the batch is not one uncompressed wire name: {q!r}")
    return np.fromiter(map(len, qnames), dtype=np.int64, count=len(qnames))


def _label_starts(buf: U8, base: I64, lens: I64, width: int) -> tuple[list[I64], I64]:
    """(starts, depth): starts[k][i] is where (in ``buf``) name i's suffix after k cut labels
    begins (its root byte once k >= depth[i]). DnsNameError names the first row that is not one
    wire name."""
    n = len(lens)
    at = base
    last = base + (width - 1)  # a zero byte of the row's padding: a runaway walk stops there
    depth = np.zeros(n, dtype=np.int64)
    longest = np.zeros(n, dtype=np.uint8)
    starts = [at]
    while True:
        lab = buf[at]
        going = lab != 0
        if not going.any():
            break
        depth += going
        np.maximum(longest, lab, out=longest)
        at = np.minimum(at + lab + going, last)
        starts.append(at)
    bad = (at != base + lens - 1) | (longest > 63)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raw = bytes(buf[base[i] : base[i] + lens[i]])
        raise DnsNameError(f"name #{i} of the batch is not one uncompressed wire name: {raw!r}")
    return starts, depth


class _Table:
    """Numpy views of one NameTable (no copy) and, for an overlay, the hashes of its changed keys."""

    def __init__(self, lookup: NameLookup) -> None:
        self.lookup = lookup
        base = lookup.base if isinstance(lookup, NameOverlay) else lookup
        assert isinstance(base, NameTable)
        a = base.arrays
        self.maxdepth = int(lookup.maxdepth) if isinstance(lookup, NameOverlay) else base.maxdepth
        self.empty = base.size == 0
        self.nb = np.uint64(len(a.bstart) - 1)
        self.bstart = np.frombuffer(a.bstart, dtype=np.uint32)
        self.hashes = np.frombuffer(a.hashes, dtype=np.uint32)
        self.offs = np.frombuffer(a.offs, dtype=np.uint32)
        self.rule = np.frombuffer(a.rule, dtype=np.uint32)
        self.wrule = np.frombuffer(a.wrule, dtype=np.uint32)
        self.blob = a.blob
        raw = np.frombuffer(a.blob, dtype=np.uint8)
        self.lead = 0
        if len(raw) < 4096:  # a small table: a padded copy, so that every load stays inside
            self.lead = 8
            raw = np.concatenate([np.zeros(8, dtype=np.uint8), raw, np.zeros(264, dtype=np.uint8)])
        self.braw = raw
        # (start, end) of a bucket and (start, end) of a key, each as one unaligned 64-bit load
        self.sort_shift = np.uint64(max(int(self.nb).bit_length() - 16, 0))
        self.bucket_pair = _pairs(self.bstart)
        self.key_pair = _pairs(self.offs)
        nodes = lookup.nodes if isinstance(lookup, NameOverlay) else {}
        self.changed: U64 = np.unique(np.fromiter((name_hash(k) for k in nodes), dtype=np.uint64,
                                                  count=len(nodes)))

    def probe(self, batch: _Batch, at: I64, slen: I64, h: U64, sort_from: int = _SORT_FROM) -> tuple[I64, I64]:
        """The suffixes (hash ``h``, starting at byte ``at`` of the batch, ``slen`` bytes) that are
        keys of the table: (their indexes, their table rows), in bucket order."""
        none = np.zeros(0, dtype=np.int64)
        if self.empty:
            return none, none
        b = h % self.nb
        order: I64 | None = None
        if len(b) >= sort_from:  # visit the table in address order: the memory is read ahead
            order = np.argsort((b >> self.sort_shift).astype(np.uint16), kind="stable")
            b, h = b[order], h[order]
        pair = self.bucket_pair[b.astype(np.int64)]
        start = (pair & np.uint64(LOW32)).astype(np.int64)
        cnt = (pair >> np.uint64(32)).astype(np.int64) - start
        total = int(cnt.sum())
        if not total:
            return none, none
        qi = np.repeat(np.arange(len(b), dtype=np.int64), cnt)
        slot = np.arange(total, dtype=np.int64) + np.repeat(start - (np.cumsum(cnt) - cnt), cnt)
        hit = self.hashes[slot] == (h & np.uint64(LOW32)).astype(np.uint32)[qi]
        cq, cr = qi[hit], slot[hit]
        if order is not None:
            cq = order[cq]
        pair = self.key_pair[cr]
        ko = (pair & np.uint64(LOW32)).astype(np.int64)
        same = (pair >> np.uint64(32)).astype(np.int64) - ko == slen[cq]
        cq, cr, ko = cq[same], cr[same], ko[same]
        if not len(cq):
            return none, none
        sl = slen[cq]
        p0 = at[cq]
        # every candidate's key and suffix as rows of 64-bit words (one gather each), compared
        # under a mask of the key's length; keys too close to the blob's end are compared below
        kw = -(-int(sl.max()) // 8)
        keys = _word_rows(self.braw, kw)
        late = self.lead + ko >= len(keys)
        got = keys[np.where(late, 0, self.lead + ko)]
        ok = ~((got ^ _word_rows(batch.buf, kw)[p0]) & _MASKS[:, :kw][sl]).any(axis=1)
        for i in np.flatnonzero(late).tolist():
            n_i, k_i = int(sl[i]), int(ko[i])
            ok[i] = bytes(self.blob[k_i : k_i + n_i]) == bytes(batch.buf[p0[i] : p0[i] + n_i])
        return cq[ok], cr[ok]

    def match_each(self, qnames: Sequence[bytes], rows: I64) -> tuple[U32, I64, BOOL]:
        """``match`` for a few names: the table's own lookup, one name at a time."""
        lookup = self.lookup.match
        out_rule: list[int] = []
        out_node: list[int] = []
        out_wild: list[bool] = []
        for i in rows.tolist():
            q = qnames[i]
            m = lookup(q)
            if m is None:
                out_rule.append(0)
                out_node.append(0)
                out_wild.append(False)
            else:
                out_rule.append(m[0])
                out_node.append(len(q) - len(m[1]))
                out_wild.append(m[2])
        return (np.array(out_rule, dtype=np.uint32), np.array(out_node, dtype=np.int64),
                np.array(out_wild, dtype=bool))

    def match(self, batch: _Batch, rows: I64, sort_from: int = _SORT_FROM) -> tuple[U32, I64, BOOL]:
        """For each row: (rule id or 0, byte offset of the deciding node in the name, wildcard?),
        with the semantics of ``NameTable.match`` (and of the overlay's, through ``lookup``)."""
        n = len(rows)
        rule = np.zeros(n, dtype=np.uint32)
        node = np.zeros(n, dtype=np.int64)
        wild = np.zeros(n, dtype=bool)
        cut = np.maximum(batch.depth[rows] - self.maxdepth, 0)
        act = np.arange(n, dtype=np.int64)
        fallback: list[I64] = []
        while len(act):
            r = rows[act]
            c = cut[act]
            base = batch.base[r]
            if c.any():
                at = batch.label_at(r, c)
                off = at - base
                h = batch.suffix_hashes(r, off)
            else:  # every name whole: its hash is known
                at, off = base, np.zeros(len(r), dtype=np.int64)
                h = batch.full[r]
            slen = batch.lens[r] - off
            if len(self.changed):
                touched = np.isin(h, self.changed)
                if touched.any():
                    fallback.append(act[touched])
                    keep = ~touched
                    act, c, at, off, slen, h = act[keep], c[keep], at[keep], off[keep], slen[keep], h[keep]
            qi, hr = self.probe(batch, at, slen, h, sort_from)
            ha = act[qi]
            exact = c[qi] == 0
            if exact.all():
                rule[ha] = self.rule[hr]
            elif not exact.any():
                rule[ha] = self.wrule[hr]
                wild[ha] = True
            else:
                rule[ha] = np.where(exact, self.rule[hr], self.wrule[hr])
                wild[ha] = ~exact
            node[ha] = off[qi]
            more = slen > 1  # not found, and not the root yet: one label up
            more[qi] = False
            act = act[more]
            cut[act] += 1
        for i in (np.concatenate(fallback).tolist() if fallback else ()):
            q = batch.qnames[int(rows[i])]
            m = self.lookup.match(q)
            if m is not None:
                rule[i], node[i], wild[i] = m[0], len(q) - len(m[1]), m[2]
        return rule, node, wild


class _ZoneKinds:
    """Per zone and QTYPE, by action id: the effective kind (after the zone's override, local data
    resolved for the QTYPE), whether the decision carries a note, the walled garden's length.
    Filled as rules are met, so a batch pays only for the actions its names reach."""

    def __init__(self, pz: PolicyZone, qtype: int) -> None:
        self.pz = pz
        self.qtype = qtype
        z = pz.zone
        ra = z.rule_action
        base = np.frombuffer(ra, dtype=np.uint32) if isinstance(ra, memoryview) else np.asarray(ra, dtype=np.uint32)
        ext = np.fromiter((aid for aid, _ in z.ext_rules), dtype=np.uint32, count=len(z.ext_rules))
        self.rule_action = np.concatenate([base, ext]) if len(ext) else base
        self.kind = np.zeros(len(z.actions), dtype=np.uint8)  # 0: not computed yet
        self.note = np.zeros(len(z.actions), dtype=bool)
        self.garden = np.zeros(len(z.actions), dtype=np.int64)

    def of(self, rules: U32, lens: I64) -> tuple[U8, BOOL | None]:
        """(kind, note or None when no row has one) of the rules matched by names ``lens`` long."""
        aids = self.rule_action[rules]
        kind = self.kind[aids]
        if not kind.all():
            for aid in np.unique(aids[kind == 0]).tolist():
                act = _effective(self.pz.zone.actions[aid], self.pz.settings)
                k = _kind(act, self.qtype)
                self.kind[aid] = k
                self.note[aid] = k is not act.kind
                self.garden[aid] = len(act.garden) if k is ActionKind.CNAME_WILDCARD else 0
            kind = self.kind[aids]
        note = self.note[aids] if self.note.any() else None
        if self.garden.any():  # a walled-garden target over 255 octets: the zone's fallback (section 3.6)
            garden = self.garden[aids]
            too_long = (garden > 0) & (lens - 1 + garden > names.MAX_NAME)
            if too_long.any():
                kind[too_long] = self.pz.settings.long_cname_fallback
                note = too_long if note is None else note | too_long
        return kind, note


def _kind(action: Action, qtype: int) -> ActionKind:
    """The kind ``Policy._decide`` gives ``action`` (already overridden), before the walled-garden
    length check: local data with no record for QTYPE answers NODATA (section 3.6)."""
    if action.kind is ActionKind.LOCAL_DATA and not action.select(qtype):
        return ActionKind.NODATA
    return action.kind


class BatchState:
    """What a Policy keeps for batches: table views per zone, kinds per (zone, QTYPE)."""

    def __init__(self, policy: Policy) -> None:
        self.tables = [_Table(pz.zone.qname) for pz in policy.zones]
        self.kinds: dict[tuple[int, int], _ZoneKinds] = {}

    def kinds_of(self, policy: Policy, zi: int, qtype: int) -> _ZoneKinds:
        k = self.kinds.get((zi, qtype))
        if k is None:
            k = self.kinds[(zi, qtype)] = _ZoneKinds(policy.zones[zi], qtype)
        return k


@dataclass(frozen=True, slots=True, eq=False)
class QnameDecisions:
    """The QNAME decisions of a batch, as arrays (row i is ``qnames[i]``).

    ``zone``      int16, index of the deciding zone (-1: no policy applies, or NEED_RESPONSE)
    ``rule``      uint32, the zone's rule id (0: none)
    ``wildcard``  bool, the rule is the closest encloser's ``*.`` rule
    ``kind``      uint8, the ``ActionKind`` value of the decision (0: none)
    ``flags``     uint8, F_NEED_RESPONSE | F_DISABLED | F_NOTE

    ``decision(i)`` builds the full outcome of row i on demand, equal to ``Policy.evaluate``'s.
    """

    policy: Policy
    qtype: int
    qnames: Sequence[bytes]
    zone: npt.NDArray[np.int16]
    rule: U32
    wildcard: BOOL
    kind: U8
    flags: U8
    node: I64  # byte offset in the name of the node whose rule decided (the name itself if exact)
    disabled: tuple[tuple[int, U32, I64, BOOL], ...]  # per disabled zone: (index, rule, node, wildcard)
    _memo: dict[tuple[int, bytes, bytes], Decision] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.qnames)

    @property
    def rewrites(self) -> BOOL:
        """Rows whose response differs from the truth (a decision, not PASSTHRU, not log-only)."""
        k = self.kind
        out: BOOL = (k != 0) & (k != ActionKind.PASSTHRU) & (k != ActionKind.DISABLED)
        return out

    def decision(self, i: int) -> Outcome:
        flags = int(self.flags[i])
        if flags & F_NEED_RESPONSE:
            return NEED_RESPONSE
        zi = int(self.zone[i])
        if zi < 0:
            return None
        q = self.qnames[i]
        disabled = tuple(self._one(dz, int(r[i]), q, int(nd[i]), bool(w[i]))
                         for dz, r, nd, w in self.disabled if r[i])
        if self.kind[i] == ActionKind.DISABLED:
            return dataclasses.replace(disabled[0], disabled=disabled)
        d = self._one(zi, int(self.rule[i]), q, int(self.node[i]), bool(self.wildcard[i]))
        return dataclasses.replace(d, disabled=disabled) if disabled else d

    def _one(self, zi: int, rule: int, qname: bytes, node: int, wild: bool) -> Decision:
        """The decision of one zone's rule for ``qname``; shared while it cannot differ (an exact
        rule decides the same for its own name; a wildcard's decision carries the QNAME)."""
        key = b"\x01*" + qname[node:] if wild else qname
        memo = (zi, key, qname)
        d = self._memo.get(memo)
        if d is None:
            d = self._memo[memo] = self.policy._decide(self.policy.zones[zi], zi, rule, TriggerKind.QNAME, qname, 0,
                                                       self.qtype, key=key)
        return d


def decide_qnames(policy: Policy, qnames: Sequence[bytes], qtype: int = 1, *, vector_from: int = _VECTOR_FROM,
                  sort_from: int = _SORT_FROM) -> QnameDecisions:
    """See ``Policy.decide_qnames``. ``vector_from`` and ``sort_from`` are the batch sizes from
    which the vectorized match is used and probes are sorted by bucket (tests force both ways)."""
    n = len(qnames)
    zone = np.full(n, -1, dtype=np.int16)
    rule = np.zeros(n, dtype=np.uint32)
    wild = np.zeros(n, dtype=bool)
    kind = np.zeros(n, dtype=np.uint8)
    flags = np.zeros(n, dtype=np.uint8)
    node = np.zeros(n, dtype=np.int64)
    disabled: list[tuple[int, U32, I64, BOOL]] = []
    if n and policy.zones:
        state = policy.batch_state()
        batch = _Batch(qnames) if n >= vector_from else None
        lens = batch.lens if batch is not None else _checked_lens(qnames)
        first_disabled = np.full(n, -1, dtype=np.int16)
        todo = np.arange(n, dtype=np.int64)
        for zi, pz in enumerate(policy.zones):
            if not len(todo):
                break
            table = state.tables[zi]
            r, nd, w = table.match(batch, todo, sort_from) if batch is not None else table.match_each(qnames, todo)
            hit = r != 0
            rows = todo[hit]
            log_only = pz.settings.override is Override.DISABLED
            if log_only:
                dr = np.zeros(n, dtype=np.uint32)
                dn = np.zeros(n, dtype=np.int64)
                dw = np.zeros(n, dtype=bool)
                dr[rows], dn[rows], dw[rows] = r[hit], nd[hit], w[hit]
                disabled.append((zi, dr, dn, dw))
                flags[rows] |= F_DISABLED
                first_disabled[rows[first_disabled[rows] < 0]] = zi
            elif len(rows):
                zone[rows], rule[rows], node[rows], wild[rows] = zi, r[hit], nd[hit], w[hit]
                k, note = state.kinds_of(policy, zi, qtype).of(r[hit], lens[rows])
                kind[rows] = k
                if note is not None:
                    flags[rows[note]] |= F_NOTE
            if pz.zone.has_response_triggers:  # no QNAME match here: IP or NS rules of this zone may win
                flags[todo[~hit]] = F_NEED_RESPONSE
                todo = rows if log_only else todo[:0]
            else:
                todo = todo if log_only else todo[~hit]
        only_disabled = (zone < 0) & (first_disabled >= 0) & (flags & F_NEED_RESPONSE == 0)
        if only_disabled.any():  # the first disabled match stands for the decision (logged only)
            for zi, dr, dn, dw in disabled:
                rows = np.flatnonzero(only_disabled & (first_disabled == zi))
                zone[rows], rule[rows], node[rows], wild[rows] = zi, dr[rows], dn[rows], dw[rows]
            kind[only_disabled] = ActionKind.DISABLED
    return QnameDecisions(policy, qtype, qnames, zone, rule, wild, kind, flags, node, tuple(disabled))
