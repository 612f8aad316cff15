"""Compiling record sets in bulk, as zone transfers and compiled takedown bundles deliver them.

Almost every owner of a large policy zone has one of two shapes: a single action record
(``CNAME .``, ``CNAME *.``, ``CNAME rpz-...``, a walled-garden CNAME), or that record plus the
rule's order reference (``TXT "order=..."``). Those owners are decided here with a dictionary of
already-classified right-hand sides and go into the name table in bulk (rpz.fastzone.finish_zone);
every other owner — local data, IP and NSDNAME triggers, anything odd — goes through the careful
builder (rpz.zone.ZoneBuilder), so both mean the same (tests/property/test_bulk_records.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from .actions import ORDER_PREFIX, RR, T_CNAME, T_TXT, Action, ActionKind, cname_action, companion_base, order_ref_of
from .errors import RecordError, ZoneReadError
from .index import _Known
from .vec import from_keys, from_names, hash64, row_keys
from .zone import CompiledZone, Progress, ZoneBuilder

Record = tuple[bytes, int, int, bytes]


def compile_records_bulk(apex: bytes, records: Iterable[Record], source: str,
                         progress: Progress | None = None) -> CompiledZone:
    recs = records if isinstance(records, list) else list(records)
    recs = fold_companions(apex, recs)
    builder = ZoneBuilder(apex, source)
    soa: RR | None = None
    la = len(apex)
    keys: list[bytes] = []
    aids: list[int] = []
    refs: list[bytes] = []
    careful: dict[bytes, list[Record]] = {}
    action_ids: dict[tuple[bytes, int], int] = {}
    actions: list[Action] = []
    seen: set[bytes] = set()
    nrec = 0
    # one pass over runs of records with the same owner (transfers and bundles keep an owner's
    # records together; an owner met again later is handled by the careful builder)
    run: list[Record] = []
    run_owner = b""
    i = 0
    n = len(recs)
    while i <= n:
        rec = recs[i] if i < n else None
        owner = rec[0].lower() if rec is not None else b""
        if rec is not None and owner == run_owner and run and rec[1] != 6:
            run.append(rec)
            nrec += 1
            i += 1
            continue
        if run:  # decide the finished run
            if run_owner in seen or run_owner in careful:
                careful.setdefault(run_owner, []).extend(run)
            else:
                seen.add(run_owner)
                got = _simple(run_owner, run, apex, la, action_ids, actions)
                if got is None:
                    careful[run_owner] = list(run)
                else:
                    keys.append(got[0])
                    aids.append(got[1])
                    refs.append(got[2])
        if rec is None:
            break
        i += 1
        if rec[1] == 6:
            if owner != apex:
                builder.reject(None, owner, "SOA record outside the zone apex")
            elif soa is None:
                soa = RR(6, rec[2], rec[3])
            run = []
            run_owner = b""
            continue
        nrec += 1
        run = [rec]
        run_owner = owner
    if soa is None:
        raise ZoneReadError(source, "no SOA record at the zone apex: not a zone")
    if progress is not None:
        progress(1, 3)
    # an owner decided in bulk and met again later: move its first run to the careful builder too
    if careful:
        moved = [j for j, k in enumerate(keys) if k[:-1] + apex in careful]
        if moved:
            drop = set(moved)
            for j in moved:
                careful[keys[j][:-1] + apex][:0] = _records_of(keys[j][:-1] + apex, recs)
            keys = [k for j, k in enumerate(keys) if j not in drop]
            aids = [a for j, a in enumerate(aids) if j not in drop]
            refs = [r for j, r in enumerate(refs) if j not in drop]
    m, lens = from_keys(keys)
    bad = _invalid_rows(m, lens)
    if bad.any():  # the apex not at a label boundary, or a '*' not as the leading label
        for j in np.flatnonzero(bad).tolist():
            owner = keys[j][:-1] + apex
            careful[owner] = _records_of(owner, recs)
        keep = ~bad
        m, lens = m[keep], lens[keep]
        aids = [a for a, k in zip(aids, keep.tolist(), strict=True) if k]
        refs = [r for r, k in zip(refs, keep.tolist(), strict=True) if k]
    if progress is not None:
        progress(2, 3)
    for owner, items in careful.items():
        for _, rdtype, ttl, rdata in items:
            builder.add(owner, RR(rdtype, ttl, rdata), None)
    for owner, items2 in builder.groups.items():
        builder._compile_group(owner, items2)
    rules = _rule_ids(builder, actions, aids, refs)  # after the careful owners: their refs come first
    from .fastzone import finish_zone
    h = hash64(m)
    zone = finish_zone(builder, m, lens, h, rules, soa, _Known(m, lens, row_keys(m, lens, h)), 0)
    zone.stats.records = nrec
    if progress is not None:
        progress(3, 3)
    return zone


def compile_rule_columns(apex: bytes, head: Sequence[Record], owners: list[str], action: Sequence[int],
                         targets: Sequence[bytes], ttl: int, refs: Sequence[bytes], source: str) -> CompiledZone:
    """A zone of QNAME rules given as columns, without record tuples: what ``compile_records``
    makes of ``head`` (the apex SOA and NS) plus, for each row, ``owners[i] CNAME targets[action[i]]``
    and, when ``refs[i]`` is not empty, ``owners[i] TXT "order=<refs[i]>"``.

    ``owners`` are distinct relative names in presentation form (lower case, ``*.`` first for a
    wildcard, no escapes); a compiled takedown bundle has only this shape (feedsync.bundlebulk).
    Anything else (an owner under ``rpz-`` labels, a misplaced ``*``, an over-long name, an
    unusable target) is a ZoneReadError naming it: the caller's own checks missed it.
    """
    builder = ZoneBuilder(apex, source)
    soa: RR | None = None
    for owner, rdtype, rttl, rdata in head:
        if rdtype == 6 and owner.lower() == apex:
            soa = RR(6, rttl, rdata)
        else:
            builder.add(owner.lower(), RR(rdtype, rttl, rdata), None)
    if soa is None:
        raise ZoneReadError(source, "no SOA record at the zone apex: not a zone")
    actions: list[Action] = []
    for t in targets:
        try:
            actions.append(cname_action(t.lower(), ttl, None))
        except RecordError as exc:
            raise ZoneReadError(source, f"CNAME target {t!r}: {exc}") from exc
    n = len(owners)
    try:
        m, lens = from_names(owners)
    except ValueError as exc:
        raise ZoneReadError(source, str(exc)) from exc
    from .fastzone import _has_rpz_dash
    bad = _invalid_rows(m, lens) | (lens + len(apex) - 1 > 255)
    dash = np.flatnonzero(_has_rpz_dash(m))   # "rpz-" somewhere: a problem only at a label's start
    if len(dash):
        bad[dash[[any(lab.startswith("rpz-") for lab in owners[j].split(".")) for j in dash.tolist()]]] = True
    if bad.any():
        raise ZoneReadError(source, f"{owners[int(np.flatnonzero(bad)[0])]!r} cannot be a QNAME rule owner here")
    own = [j for j, a in enumerate(actions) if a.kind is ActionKind.LOCAL_DATA and targets[j].lower().endswith(apex)]
    aids = np.asarray(action, dtype=np.int64)
    if own:   # a walled-garden CNAME to the rule's own name is the legacy PASSTHRU encoding: not here
        keys = set(_row_bytes(m, lens, np.flatnonzero(np.isin(aids, own))))
        if keys & {targets[j].lower()[: len(targets[j]) - len(apex)] + b"\x00" for j in own}:
            raise ZoneReadError(source, "a rule's CNAME points at its own owner (the legacy PASSTHRU form)")
    for owner_w, items in builder.groups.items():
        builder._compile_group(owner_w, items)
    rules = _rule_ids(builder, actions, aids, refs)  # after the head's owners: their refs come first
    h = hash64(m)
    from .fastzone import finish_zone
    zone = finish_zone(builder, m, lens, h, rules, soa, _Known(m, lens, row_keys(m, lens, h)), 0)
    zone.stats.records = sum(1 for r in head if r[1] != 6) + n + len(refs) - list(refs).count(b"")
    return zone


def _row_bytes(m: npt.NDArray[np.uint8], lens: npt.NDArray[np.int64], rows: npt.NDArray[np.int64]) -> list[bytes]:
    return [m[r, : lens[r]].tobytes() for r in rows.tolist()]


def fold_companions(apex: bytes, recs: list[Record]) -> list[Record]:
    """Order references at ``<name>.rpz-order`` (rpz.actions.companion_base) moved to their rule's
    owner, right after that owner's run of records, so the common shape (action + reference) stays
    on the bulk path. Anything else at an rpz-order name keeps its owner: the careful builder
    refuses it with the reason. A zone without such names is returned as it is (one scan)."""
    if b"rpz-order" not in b"\n".join(r[0] for r in recs).lower():
        return recs
    moved: dict[bytes, list[Record]] = {}
    rest: list[Record] = []
    for r in recs:
        owner = r[0].lower()
        base = companion_base(owner, apex) if b"rpz-order" in owner else None
        if base is not None and base != apex and r[1] == T_TXT and order_ref_of(r[3]) is not None:
            moved.setdefault(base, []).append((base, r[1], r[2], r[3]))
        else:
            rest.append(r)
    out: list[Record] = []
    n = len(rest)
    for i, r in enumerate(rest):
        out.append(r)
        if moved:
            owner = r[0].lower()
            if i + 1 == n or rest[i + 1][0].lower() != owner:
                got = moved.pop(owner, None)
                if got:
                    out.extend(got)
    for extra in moved.values():   # references whose rule is absent: the careful path says so
        out.extend(extra)
    return out


def _records_of(owner: bytes, recs: list[Record]) -> list[Record]:
    return [r for r in recs if r[0].lower() == owner and r[1] != 6]


def _simple(owner: bytes, run: list[Record], apex: bytes, la: int, action_ids: dict[tuple[bytes, int], int],
            actions: list[Action]) -> tuple[bytes, int, bytes] | None:
    """(trigger name, action index, order reference) of an owner of a common shape, else None."""
    if len(owner) <= la or not owner.endswith(apex) or b"rpz-" in owner[: len(owner) - la]:
        return None
    if len(run) == 1:
        _, t1, ttl1, d1 = run[0]
        if t1 != T_CNAME:
            return None
        ref = b""
    elif len(run) == 2:
        (_, t1, ttl1, d1), (_, t2, _, d2) = run
        if t1 == T_TXT and t2 == T_CNAME:
            (_, t1, ttl1, d1), (_, t2, _, d2) = run[1], run[0]
        if t1 != T_CNAME or t2 != T_TXT or not d2 or not d2[1 : 1 + d2[0]].startswith(ORDER_PREFIX):
            return None
        ref = d2[1 + len(ORDER_PREFIX) : 1 + d2[0]].strip()
    else:
        return None
    target = d1.lower()
    aid = action_ids.get((target, ttl1))
    if aid is None:
        try:
            action = cname_action(target, ttl1, None)
        except RecordError:
            return None
        aid = action_ids[(target, ttl1)] = len(actions)
        actions.append(action)
    if target == owner and actions[aid].kind is ActionKind.LOCAL_DATA:
        return None  # the legacy PASSTHRU encoding: a CNAME to the rule's own owner
    return owner[: len(owner) - la] + b"\x00", aid, ref


def _rule_ids(builder: ZoneBuilder, actions: list[Action], aids: Sequence[int] | npt.NDArray[np.int64],
              refs: Sequence[bytes]) -> npt.NDArray[np.uint32]:
    """Rule ids for (action, order reference) pairs, appended to the builder's tables in bulk; the
    references stay bytes (the table stores UTF-8) and are numbered after the builder's own."""
    n = len(aids)
    if n == 0:
        return np.zeros(0, dtype=np.uint32)
    global_aid = np.array([builder.action_id(a) for a in actions], dtype=np.int64)
    first = len(builder._ref_list) + len(builder.extra_refs)
    ga = global_aid[np.asarray(aids, dtype=np.int64)]
    # each reference -> the first row that has it (later rows overwrite earlier ones when reversed)
    first_row = dict(zip(reversed(refs), range(n - 1, -1, -1), strict=True))
    first_of = np.fromiter(map(first_row.__getitem__, refs), dtype=np.int64, count=n)
    is_first = first_of == np.arange(n, dtype=np.int64)
    empty = first_row.get(b"")
    if empty is not None:
        is_first[empty] = False
    firsts = np.flatnonzero(is_first)
    builder.extra_refs.extend(map(refs.__getitem__, firsts.tolist()))  # first-appearance order == id order
    rid = np.searchsorted(firsts, first_of) + first
    if empty is not None:
        rid[first_of == empty] = 0
    if len(firsts) == n:
        # every row its own reference (one rule per order): the pairs are distinct and already in
        # reference order, so np.unique's order is a stable sort by action (a radix sort here)
        order = np.argsort(ga.astype(np.int16) if len(global_aid) < 1 << 15 else ga, kind="stable")
        uniq = ((ga << 32) | rid)[order]
        inv = np.empty(n, dtype=np.int64)
        inv[order] = np.arange(n, dtype=np.int64)
    else:
        uniq, inv = np.unique((ga << 32) | rid, return_inverse=True)
    base = len(builder.rule_action)
    builder.rule_action.extend((uniq >> 32).tolist())
    builder.rule_ref.extend((uniq & 0xFFFFFFFF).tolist())
    out: npt.NDArray[np.uint32] = (base + inv.reshape(-1)).astype(np.uint32)
    return out


def _invalid_rows(m: npt.NDArray[np.uint8], lens: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Rows whose labels do not end exactly at the terminating zero, or with a '*' anywhere but as
    the whole leading label."""
    n = len(lens)
    if n == 0:
        return np.zeros(0, dtype=bool)
    pos = np.zeros(n, dtype=np.int64)
    rows = np.arange(n)
    w = m.shape[1]
    active = m[:, 0] > 0
    while active.any():
        pos[active] += m[rows[active], pos[active]].astype(np.int64) + 1
        inside = pos < w
        active &= inside
        active[active] = m[rows[active], pos[active]] > 0
    bad = pos != lens - 1
    star = (m == 42).sum(axis=1)
    lead = (m[:, 0] == 1) & (m[:, 1] == 42)
    bad |= (star > 1) | ((star == 1) & ~lead)
    out: npt.NDArray[np.bool_] = bad
    return out
