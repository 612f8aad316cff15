"""Vectorized reading of large policy zones.

Most lines of a big RPZ look alike: ``<relative name> [ttl] [class] TYPE rdata`` with a plain
LDH owner. This module finds those lines with numpy, turns their owners into canonical wire
names in bulk, parses each *distinct* right-hand side once with the careful reader's grammar
(rpz.zonetext.parse_fields), and classifies it once. Every other line — directives, parentheses,
comments, escapes, absolute or unusual owners, ``rpz-*`` triggers, owners with several records —
goes through the careful path (rpz.zonetext + rpz.zone.ZoneBuilder), so both paths share one
grammar and one meaning; tests/property/test_fastzone_equivalence.py holds them equal.

The pipeline, for n lines:
  1. classify lines (one pass over the bytes, a few vector compares);
  2. careful path over the lines that are not simple, in order (directives, SOA, contexts);
  3. owners of simple lines -> a matrix of wire names (dots become label lengths);
  4. distinct right-hand sides (64-bit hash, verified row by row) parsed and classified once;
  5. owners seen more than once, or also on the careful path, are regrouped on the careful path;
  6. the name table is built from matrices (rpz.index.build_name_table_matrix).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from . import names
from .actions import RR, T_CNAME, Action, ActionKind, classify, companion_base
from .errors import DnsNameError, RecordError, ZoneReadError
from .index import PrefixTable, _Known, build_name_table_matrix
from .triggers import Trigger, TriggerKind
from .vec import hash64, parents, row_keys, unique_rows
from .zone import CompiledZone, Progress, ZoneBuilder
from .zonetext import Fields, ParsedRR, ZoneReader, parse_fields

FAST_MIN_BYTES = 1 << 16  # below this the careful path alone is quicker to start
OWNER_W = 64  # owners of up to 62 characters take the fast path
REST_W = 48  # right-hand sides of up to 48 characters take the fast path

_BAD = np.zeros(256, dtype=bool)
for _c in b'();\\$@':
    _BAD[_c] = True
_BAD[128:] = True
_BAD[:32] = True
_BAD[[9, 10, 13]] = False
_FIRST_OK = np.zeros(256, dtype=bool)
for _c in b"abcdefghijklmnopqrstuvwxyz0123456789_-*":
    _FIRST_OK[_c] = True
_PLAIN = b"abcdefghijklmnopqrstuvwxyz0123456789-_.* \t\r\n"

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]


class _LineView:
    """Physical lines of the original text, sliced on demand (no list of a million bytes)."""

    def __init__(self, data: bytes, starts: I64, ends: I64) -> None:
        self.data = data
        self.starts = starts
        self.ends = ends

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> bytes:
        return self.data[int(self.starts[i]) : int(self.ends[i])]


@dataclass(slots=True)
class _Fast:
    """Simple lines: line numbers, owner rows, owner wire lengths, right-hand side spans."""

    line: I64  # 0-based physical line numbers
    owner: U8  # wire owner rows (relative trigger names, lower case)
    olen: I64
    rest_start: I64  # offsets into the original data
    rest_end: I64
    h64: npt.NDArray[np.uint64]

    def select(self, mask: npt.NDArray[np.bool_]) -> _Fast:
        return _Fast(self.line[mask], self.owner[mask], self.olen[mask], self.rest_start[mask],
                     self.rest_end[mask], self.h64[mask])


def compile_text_fast(data: bytes, source: str, apex: bytes | None, progress: Progress | None,
                      min_bytes: int = FAST_MIN_BYTES) -> CompiledZone:
    """Compile zone text, taking the vectorized path when it is at least ``min_bytes`` long."""
    if len(data) < min_bytes:
        from .zone import compile_text
        return compile_text(data, source, apex, progress, fast=False)
    return _FastLoader(data, source, apex, progress).run()


class _FastLoader:
    def __init__(self, data: bytes, source: str, apex: bytes | None, progress: Progress | None) -> None:
        self.data = data
        self.source = source
        self.apex = apex
        self.progress = progress

    def _tick(self, step: int) -> None:
        if self.progress is not None:
            self.progress(step, 6)

    def run(self) -> CompiledZone:
        data = self.data
        pad = b"\0" * OWNER_W
        low_bytes = b"\n" + data.lower() + b"\n" + pad
        low = np.frombuffer(low_bytes, dtype=np.uint8)
        nbuf = len(data) + 2
        nl = np.flatnonzero(low[:nbuf] == 10).astype(np.int64)
        starts = nl[:-1] + 1  # buffer coordinates (data offset + 1)
        ends = nl[1:]
        lines = _LineView(data, starts - 1, ends - 1)
        fast_mask = self._classify(low, nl, starts, ends, low_bytes)
        self._tick(1)
        fast, back = self._owners(low, low_bytes, nl, starts, ends, fast_mask)
        fast_mask[back] = False
        self._tick(2)

        reader = ZoneReader(data, self.source, self.apex)
        slow_records, dropped = self._careful_pass(reader, lines, fast_mask, low, starts, ends)
        if reader.soa is None or reader.apex is None:
            raise ZoneReadError(self.source, "no SOA record at the zone apex: not a zone")
        apex = reader.apex
        ctx_lines = np.array([c[0] for c in reader.contexts], dtype=np.int64)
        keep = ~np.isin(fast.line, np.asarray(dropped, dtype=np.int64))
        too_long = fast.olen - 1 + len(apex) > names.MAX_NAME
        for r in np.flatnonzero(keep & too_long).tolist():  # the careful path words the rejection
            line = int(fast.line[r])
            ci = int(np.searchsorted(ctx_lines, line + 1, side="right") - 1)
            slow_records.extend(reader.read_line_in_context(lines, line, *self._ctx(reader, ci)))
        fast = fast.select(keep & ~too_long)
        ctx_of_line = np.searchsorted(ctx_lines, fast.line + 1, side="right") - 1
        self._tick(3)

        builder = ZoneBuilder(apex, self.source)
        builder.rejections.extend(reader.rejections)
        soa_min = int.from_bytes(reader.soa.rr.rdata[-4:], "big")
        # owners: which fast owners are alone (one record, not also on the careful path)
        owners = _Known(fast.owner, fast.olen, row_keys(fast.owner, fast.olen, fast.h64))
        alone = owners.alone()
        slow_rel: set[bytes] = set()
        for prr in slow_records:
            # an order reference at <name>.rpz-order joins its rule's owner on the careful path
            base = companion_base(prr.owner, apex) if b"rpz-order" in prr.owner else None
            rel = names.relativize(base if base is not None else prr.owner, apex)
            if rel is not None:
                slow_rel.add(rel)
        if slow_rel:
            alone &= ~self._rows_in(fast, list(slow_rel))
        alone_rows = np.flatnonzero(alone)
        rest_inv, rest_rule, rest_err, reasons, rest_py = self._rests(fast, ctx_of_line, alone_rows, reader,
                                                                      soa_min, builder)
        rules = np.zeros(len(fast.line), dtype=np.uint32)
        rules[alone_rows] = rest_rule[rest_inv]
        to_group = ~alone
        to_group[alone_rows[rest_py[rest_inv]]] = True
        for k in np.flatnonzero(rest_err[rest_inv]).tolist():
            r = int(alone_rows[k])
            builder.reject(int(fast.line[r]) + 1, self._owner_abs(fast, r, apex), reasons[int(rest_inv[k])])
        self._tick(4)

        # owners on the careful path: regroup fast lines of the same owner with them
        for r in np.flatnonzero(to_group).tolist():
            owner = self._owner_abs(fast, r, apex)
            start, end = int(fast.rest_start[r]), int(fast.rest_end[r])
            origin, dttl = self._ctx(reader, int(ctx_of_line[r]))
            try:
                f = parse_fields(data[start:end].decode("latin-1"), _dns_origin(origin))
            except RecordError as exc:
                builder.reject(int(fast.line[r]) + 1, owner, exc.reason)
                continue
            builder.add(owner, _rr(f, dttl, soa_min), int(fast.line[r]) + 1)
        for prr in slow_records:
            builder.add(prr.owner, prr.rr, prr.line)
        for owner, items in builder.groups.items():
            builder._compile_group(owner, items)
        self._tick(5)

        take = ~to_group & (rules > 0)
        zone = self._finish(builder, fast, rules, take, reader.soa.rr, owners)
        self._tick(6)
        return zone

    # -- 1. classification -------------------------------------------------------------------
    def _classify(self, low: U8, nl: I64, starts: I64, ends: I64, low_bytes: bytes) -> npt.NDArray[np.bool_]:
        """Lines the fast path may take: a plain first character, no character that needs the
        careful reader. Unusual characters are rare, so they are found by value, not by scanning
        every byte through a table."""
        ok = (ends > starts) & _FIRST_OK[low[starts]]
        special = set(low_bytes.translate(None, _PLAIN))
        self.soft_pos = np.zeros(0, dtype=np.int64)
        if not special:
            return ok
        hard = [c for c in special if _BAD[c]]
        soft = [c for c in special if not _BAD[c]]
        body = low[: nl[-1]]
        if hard:
            pos = np.concatenate([np.flatnonzero(body == c) for c in hard])
            ok[np.searchsorted(nl, pos, side="right") - 1] = False
        if soft:
            self.soft_pos = np.sort(np.concatenate([np.flatnonzero(body == c) for c in soft]))
        return ok

    # -- 2. careful pass ---------------------------------------------------------------------
    def _careful_pass(self, reader: ZoneReader, lines: _LineView, fast_mask: npt.NDArray[np.bool_], low: U8,
                      starts: I64, ends: I64) -> tuple[list[ParsedRR], list[int]]:
        slow = np.flatnonzero(~fast_mask)
        out: list[ParsedRR] = []
        dropped: list[int] = []
        i = 0
        nslow = len(slow)
        consumed_to = -1
        while i < nslow:
            a = int(slow[i])
            if a <= consumed_to:
                i += 1
                continue
            b = a
            while i + 1 < nslow and slow[i + 1] == b + 1:
                i += 1
                b += 1
            i += 1
            prev = a - 1
            if prev >= 0 and fast_mask[prev] and reader.origin is not None:
                tok = bytes(low[starts[prev] : ends[prev]]).split(None, 1)[0]
                with contextlib.suppress(DnsNameError, UnicodeDecodeError):
                    reader.note_owner(names.from_text(tok.decode("ascii"), reader.origin).lower())
            reader.last_consumed = b
            for prr in reader.read_lines(lines, a, b):
                out.append(prr)
            if reader.last_consumed > b:
                dropped.extend(range(b + 1, reader.last_consumed + 1))
                consumed_to = reader.last_consumed
        return out, dropped

    # -- 3. owners to wire -------------------------------------------------------------------
    def _owners(self, low: U8, low_bytes: bytes, nl: I64, starts: I64, ends: I64,
                fast_mask: npt.NDArray[np.bool_]) -> tuple[_Fast, I64]:
        """Owners of candidate lines as wire rows; lines that turn out not to be simple go back."""
        idx = np.flatnonzero(fast_mask)
        s = starts[idx]
        e = ends[idx]
        ws = np.flatnonzero((low == 32) | (low == 9) | (low == 13)).astype(np.int64)
        k = np.minimum(np.searchsorted(ws, s), max(len(ws) - 1, 0))
        oend = ws[k] if len(ws) else np.full(len(s), np.iinfo(np.int64).max)
        olen = oend - s
        good = (oend < e) & (olen >= 1) & (olen <= OWNER_W - 2)
        good &= low[np.clip(oend - 1, 0, len(low) - 1)] != 46  # absolute owners take the careful path
        line_of = np.full(len(starts), -1, dtype=np.int64)
        line_of[idx] = np.arange(len(idx))

        def in_owner(pos: I64) -> I64:
            """Candidate indexes whose owner contains one of these buffer positions."""
            if not len(pos):
                return np.zeros(0, dtype=np.int64)
            cand = line_of[np.searchsorted(nl, pos, side="right") - 1]
            valid = cand >= 0
            cand, pos = cand[valid], pos[valid]
            return cand[pos < oend[cand]]

        good[in_owner(self.soft_pos)] = False
        if b"*" in low_bytes:
            star = np.flatnonzero(low == 42).astype(np.int64)
            cand = line_of[np.searchsorted(nl, star, side="right") - 1]
            valid = cand >= 0
            cand, star = cand[valid], star[valid]
            inside = star < oend[cand]
            cand, star = cand[inside], star[inside]
            lead = (star == s[cand]) & (low[star + 1] == 46)
            good[cand[~lead]] = False  # a '*' anywhere but a leading "*." label
        if b"rpz-" in low_bytes:
            rpz = np.fromiter((mt.start() for mt in re.finditer(rb"rpz-", low_bytes)), dtype=np.int64)
            good[in_owner(rpz)] = False
        idx, s, e, oend, olen = idx[good], s[good], e[good], oend[good], olen[good]
        width = min(OWNER_W, -(-(int(olen.max()) + 2) // 8) * 8) if len(olen) else 8
        m = np.array(sliding_window_view(low, width)[s - 1])  # row: '\n' owner ws ...
        m *= np.arange(width, dtype=np.int16)[None, :] <= olen.astype(np.int16)[:, None]
        # dots -> label lengths; column 0 (the '\n') becomes the first label's length
        n = len(olen)
        flat = m.reshape(-1)
        rowst = np.arange(n, dtype=np.int64) * width
        term = rowst + olen + 1
        ev = flat == 46
        ev[rowst] = True
        ev[term] = True
        pos = np.flatnonzero(ev)
        is_term = np.zeros(len(pos), dtype=bool)
        is_term[np.searchsorted(pos, term)] = True
        sep = ~is_term[:-1]
        seps_pos = pos[:-1][sep]
        lab_len = (pos[1:] - pos[:-1] - 1)[sep]
        label_ok = np.ones(n, dtype=bool)
        label_ok[np.unique(seps_pos[(lab_len < 1) | (lab_len > names.MAX_LABEL)] // width)] = False
        flat[seps_pos] = np.clip(lab_len, 0, 255).astype(np.uint8)
        flat[term] = 0
        back_mask = fast_mask.copy()
        keep_lines = idx[label_ok]
        back_mask[keep_lines] = False
        m, e, oend, olen = m[label_ok], e[label_ok], oend[label_ok], olen[label_ok]
        fast = _Fast(line=keep_lines, owner=m, olen=olen + 2, rest_start=oend - 1, rest_end=e - 1, h64=hash64(m))
        return fast, np.flatnonzero(back_mask)

    # -- 4. distinct right-hand sides -------------------------------------------------------
    def _rests(self, fast: _Fast, ctx_of_line: I64, rows: I64, reader: ZoneReader, soa_min: int,
               builder: ZoneBuilder) -> tuple[I64, npt.NDArray[np.uint32], npt.NDArray[np.bool_], list[str],
                                              npt.NDArray[np.bool_]]:
        """Parse and classify each distinct (right-hand side, context) once.

        Returns, for the given rows: the distinct-rest index of each row, and per distinct rest its
        rule id, whether it is an error (and why), and whether it needs the per-owner careful path.
        """
        rs = fast.rest_start[rows]
        rl = fast.rest_end[rows] - rs
        dbuf = np.frombuffer(self.data + b"\0" * REST_W, dtype=np.uint8)
        short = rl <= REST_W
        m = np.array(sliding_window_view(dbuf, REST_W)[rs])
        m *= np.arange(REST_W)[None, :] < np.minimum(rl, REST_W)[:, None]
        key = hash64(m)
        key ^= ctx_of_line[rows].astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        key ^= rl.astype(np.uint64) << np.uint64(48)
        # long right-hand sides are keyed by their own row so they never share a representative
        nlong = int((~short).sum())
        key[~short] = (np.uint64(1) << np.uint64(63)) | np.arange(nlong, dtype=np.uint64)
        _, rep, inv = np.unique(key, return_index=True, return_inverse=True)
        inv = inv.reshape(-1).astype(np.int64)
        rep = rep.astype(np.int64)
        same = ((m == m[rep[inv]]).all(axis=1) & (rl == rl[rep[inv]])
                & (ctx_of_line[rows] == ctx_of_line[rows[rep[inv]]]))
        if not same.all():  # a 64-bit collision between two different texts: key them apart
            extra = np.flatnonzero(~same)
            inv[extra] = np.arange(len(rep), len(rep) + len(extra))
            rep = np.concatenate([rep, extra])
        nrep = len(rep)
        rule = np.zeros(nrep, dtype=np.uint32)
        err = np.zeros(nrep, dtype=bool)
        py = np.zeros(nrep, dtype=bool)
        reasons: list[str] = [""] * nrep
        for j, r in enumerate(rep.tolist()):
            row = int(rows[r])
            origin, dttl = self._ctx(reader, int(ctx_of_line[row]))
            text = self.data[int(fast.rest_start[row]) : int(fast.rest_end[row])].decode("latin-1")
            try:
                rr = _rr(parse_fields(text, _dns_origin(origin)), dttl, soa_min)
                act, ref = classify([rr], None)
                if rr.rdtype == T_CNAME and act.kind is ActionKind.LOCAL_DATA:
                    py[j] = True  # a CNAME to a name may be the legacy self-PASSTHRU: decide per owner
                    continue
                rule[j] = builder.rule_id(act, ref)
            except RecordError as exc:
                err[j] = True
                reasons[j] = exc.reason
        return inv, rule, err, reasons, py

    # -- helpers -----------------------------------------------------------------------------
    def _ctx(self, reader: ZoneReader, i: int) -> tuple[bytes, int | None]:
        _, origin, dttl = reader.contexts[i]
        if origin is None:
            origin = reader.apex
        assert origin is not None
        return origin, dttl

    def _owner_abs(self, fast: _Fast, r: int, apex: bytes) -> bytes:
        rel = bytes(fast.owner[r, : int(fast.olen[r])])
        full = names.concat(rel, apex)
        return full if full is not None else rel

    def _rows_in(self, fast: _Fast, keys: list[bytes]) -> npt.NDArray[np.bool_]:
        """Which owner rows equal one of ``keys``."""
        from .vec import from_keys, row_keys
        width = fast.owner.shape[1]
        keys = [k for k in keys if len(k) <= width]
        km, kl = from_keys(keys, width)
        kh = np.sort(row_keys(km, kl))
        hit = np.isin(row_keys(fast.owner, fast.olen, fast.h64), kh)
        keyset = set(keys)
        for r in np.flatnonzero(hit).tolist():
            hit[r] = bytes(fast.owner[r, : int(fast.olen[r])]) in keyset
        return hit

    def _finish(self, builder: ZoneBuilder, fast: _Fast, rules: npt.NDArray[np.uint32],
                take: npt.NDArray[np.bool_], soa: RR, owners: _Known) -> CompiledZone:
        rows = np.flatnonzero(take)
        return finish_zone(builder, fast.owner[rows], fast.olen[rows], fast.h64[rows], rules[rows], soa,
                           owners.subset(take), len(fast.line))


def finish_zone(builder: ZoneBuilder, m: U8, lens: I64, h: npt.NDArray[np.uint64], r: npt.NDArray[np.uint32],
                soa: RR, known: _Known, nrecords: int) -> CompiledZone:
    """Build the zone from distinct simple QNAME owners held as wire rows (``*.`` first for a
    wildcard) with their rule ids, plus whatever the careful path put into ``builder``."""
    wild = (m[:, 0] == 1) & (m[:, 1] == 42)
    # counts
    kinds = np.array([a.kind for a in builder._action_list], dtype=np.int64)
    ra = np.asarray(builder.rule_action, dtype=np.int64)
    act_kind = kinds[ra[r]] if len(r) else np.zeros(0, dtype=np.int64)
    stats = builder.stats
    nw = int(wild.sum())
    for label, cnt in (("QNAME", len(r) - nw), ("QNAME wildcard", nw)):
        if cnt:
            stats.by_trigger[label] = stats.by_trigger.get(label, 0) + cnt
    for k, cnt in zip(*np.unique(act_kind, return_counts=True), strict=True):
        lab = ActionKind(int(k)).label
        stats.by_action[lab] = stats.by_action.get(lab, 0) + int(cnt)
    stats.rules += len(r)
    stats.records += nrecords
    # entries: exact owners, "*.name" owners (as exact nodes) and their parents (wildcard rule)
    pm, pl, _ = parents(m[wild], lens[wild])
    from .vec import from_keys
    extra = builder.qname
    em, el = from_keys(list(extra)) if extra else (np.zeros((0, 8), np.uint8), np.zeros(0, np.int64))
    er = np.fromiter((v[0] for v in extra.values()), dtype=np.uint32, count=len(extra))
    ew = np.fromiter((v[1] for v in extra.values()), dtype=np.uint32, count=len(extra))
    # the owners are distinct already; merge the few other names into them exactly
    ur = r.copy()
    uw = np.zeros(len(r), dtype=np.uint32)
    width = max(m.shape[1], pm.shape[1], em.shape[1])
    if width > m.shape[1]:   # a wider matrix hashes every row differently: key them again
        m = _widen(m, width)
        h = hash64(m)
        known = _Known(m, lens, row_keys(m, lens, h))
    add_h: list[npt.NDArray[np.uint64]] = []
    for xm0, xl, xr, xw in ((pm, pl, np.zeros(len(pl), np.uint32), r[wild]), (em, el, er, ew)):
        if not len(xl):
            continue
        xm = _widen(xm0, width)
        xh = hash64(xm)
        rep, inv = unique_rows(xm, xl, xh)
        # merge duplicates within this group first
        gr = np.zeros(len(rep), np.uint32)
        gw = np.zeros(len(rep), np.uint32)
        np.maximum.at(gr, inv, xr)
        np.maximum.at(gw, inv, xw)
        xm, xlu, xh = xm[rep], xl[rep], xh[rep]
        at = known.index_of(xm, xlu, row_keys(xm, xlu, xh))
        hit = at >= 0
        xl = xlu  # noqa: PLW2901 - the distinct names from here on
        np.maximum.at(ur, at[hit], gr[hit])
        np.maximum.at(uw, at[hit], gw[hit])
        new = ~hit
        if new.any():
            ur = np.concatenate([ur, gr[new]])
            uw = np.concatenate([uw, gw[new]])
            add_h.append(xh[new])
            known.add(xm[new], xl[new], row_keys(xm[new], xl[new], xh[new]))
    qname = build_name_table_matrix(known.m, known.lens, ur, uw, np.concatenate([h, *add_h]), known)
    from .index import build_name_table
    return CompiledZone(
        origin=builder.apex, soa=soa, source=builder.source, actions=builder._action_list,
        rule_action=builder.rule_action, rule_ref=builder.rule_ref, refs=builder.ref_table(),
        qname=qname, nsdname=build_name_table(builder.nsdname),
        client_ip=PrefixTable(list(builder.prefixes[TriggerKind.CLIENT_IP].items())),
        ip=PrefixTable(list(builder.prefixes[TriggerKind.IP].items())),
        nsip=PrefixTable(list(builder.prefixes[TriggerKind.NSIP].items())),
        rejections=sorted(builder.rejections, key=lambda x: (x.line is None, x.line or 0)), stats=stats)




def _widen(m: U8, width: int) -> U8:
    return m if m.shape[1] == width else np.pad(m, ((0, 0), (0, width - m.shape[1])))


def _has_rpz_dash(m: U8) -> npt.NDArray[np.bool_]:
    w = m.shape[1]
    if w < 4:
        return np.zeros(m.shape[0], dtype=bool)
    hit: npt.NDArray[np.bool_] = ((m[:, : w - 3] == ord("r")) & (m[:, 1 : w - 2] == ord("p"))
                                  & (m[:, 2 : w - 1] == ord("z")) & (m[:, 3:] == ord("-"))).any(axis=1)
    return hit


def _rr(f: Fields, default_ttl: int | None, soa_min: int) -> RR:
    ttl = f.ttl if f.ttl is not None else (default_ttl if default_ttl is not None else soa_min)
    return RR(f.rdtype, ttl, f.rdata)


_ORIGINS: dict[bytes, object] = {}


def _dns_origin(origin: bytes):  # type: ignore[no-untyped-def]
    import dns.name
    o = _ORIGINS.get(origin)
    if o is None:
        o = _ORIGINS[origin] = dns.name.from_wire(origin, 0)[0]
    return o


__all__ = ["Action", "Trigger", "compile_text_fast"]
