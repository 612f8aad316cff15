"""One sync cycle of one feed: fetch -> verify -> screen -> decide -> activate -> audit -> receipt.

The adapters (xfr, tufsource, store, control) do the I/O; the decisions are engine's. Any failure
keeps the last-known-good version serving; entries past their own expiry are removed even then
(``_time_maintenance`` runs before the fetch, whatever the fetch does).

Crash safety: a version's files are complete before ``active.rpz`` is switched (one rename); the
feed state, the audit record and the receipt commit in one SQLite transaction after the resolver
confirmed. A crash in between leaves ``active.rpz`` ahead of the database; ``recover`` (run at the
start of every cycle) puts the last-known-good back and audits what it found.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import repeat
from operator import itemgetter
from typing import Any, Protocol

import dns.name
import dns.rdatatype
import dns.zone

import rpz
from rpz.errors import ZoneReadError

from . import bundle as bfmt
from . import bundlebulk as bfmt_bulk
from . import engine, orders, receipts, xfr, xfrseed, xfrwire
from . import serial as serials
from .bundle import format_time
from .config import Config, FeedConfig
from .control import Reloader
from .engine import Prepared, Verdict
from .errors import ControlError, FailureCode, FeedRefused, FetchFailed, RefusalCode, StateError
from .log import log
from .statedb import FeedState, StateDB
from .store import FeedStore
from .tufsource import BundleSource, FetchedBundle
from .xfrindex import XfrIndex

Clock = Callable[[], float]
# A delta snapshot carries every owner changed since its base, and the resolver replays them when it
# maps it (tens of microseconds each): after a version is committed, a delta of COMPACT_AT changed
# owners is compiled into a new full base; a delta past DELTA_LIMIT is never written.
COMPACT_AT = 2_500
DELTA_LIMIT = 20_000


class BundleFetcher(Protocol):
    """The seam for bundle feeds: returns the verified bundle or raises FeedRefused / FetchFailed."""

    def fetch(self) -> FetchedBundle: ...


@dataclass(frozen=True, slots=True)
class CycleResult:
    feed: str
    outcome: str                  # applied | no_change | pinned | held | refused | failed | reverted
    serial: int | None = None
    code: str | None = None
    detail: str = ""

    @property
    def exit_code(self) -> int:
        return {"applied": 0, "no_change": 0, "pinned": 0, "held": 1, "refused": 1}.get(self.outcome, 3)


class PublicSuffixes:
    """The publicsuffixlist package with the list it ships (never downloaded at run time): called
    with one name, or ``which(names)`` for a whole column.

    The package answers True for a name of two or more labels only when its rule set holds the
    name, ``*.`` the name or ``*.`` its parent (publicsuffixlist's ``_countpublic``: the match that
    covers the whole name). When none of them is in its rule set the answer is False without the
    package's suffix walk: three set lookups per name, or set operations over a whole column.
    Exact, and tested against ``is_public`` (tests/unit/feedsync/test_xfr_fast.py,
    tests/property/test_bundle_bulk.py); another version of the package without that rule set
    is asked about every name."""

    def __init__(self) -> None:
        from publicsuffixlist import PublicSuffixList
        self._psl = PublicSuffixList()
        rules = getattr(self._psl, "_publicsuffix", None)
        self._rules: frozenset[str] | None = None
        self._named: set[str] = set()    # names a rule makes a suffix themselves (name or *.name)
        self._wild: set[str] = set()     # names whose children a rule makes suffixes (*.name)
        if isinstance(rules, frozenset) and rules and all(isinstance(r, str) for r in rules):
            self._rules = rules
            self._wild = {r[2:] for r in rules if r.startswith("*.")}
            self._named = {r for r in rules if not r.startswith(("*.", "!"))} | self._wild

    def __call__(self, name: str) -> bool:
        rules = self._rules
        if rules is not None:
            name = name.lower().rstrip(".")
            dot = name.find(".")
            if dot > 0 and name not in rules and "*." + name not in rules and "*." + name[dot + 1:] not in rules:
                return False
        return bool(self._psl.is_public(name))

    def which(self, names: list[str], parents: list[str] | None = None) -> list[int]:
        """Positions of the public suffixes among lower-case names (``parents``: each name's
        parent, "" for a single label, when the caller has them already)."""
        if self._rules is None:
            return [k for k, n in enumerate(names) if self(n)]
        wild = self._wild
        if parents is None:
            parents = list(map(itemgetter(2), map(str.partition, names, repeat("."))))
        maybe = set(names) & self._named
        if "" in parents or not wild.isdisjoint(parents):   # a wildcard rule above them, or a TLD
            maybe |= {names[k] for k, p in enumerate(parents) if not p or p in wild}
        if not maybe:
            return []
        return [k for k, n in enumerate(names) if n in maybe and self(n)]


@lru_cache(maxsize=1)
def public_suffix_check() -> PublicSuffixes:
    return PublicSuffixes()


@contextlib.contextmanager
def feed_lock(path: str) -> Iterator[None]:
    """One cycle at a time per feed across processes (timer-run `feed sync` and the daemon)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _pairs(records: list[Any]) -> Iterator[list[Any]]:
    """zone_records lists each owner's CNAME then TXT: group them per owner."""
    for i in range(0, len(records), 2):
        yield records[i:i + 2]


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """A cycle builds millions of small acyclic objects (entries, rules, records); Python's cyclic
    collector would rescan all of them again and again. Reference counting frees them anyway; the
    collector resumes when the cycle ends."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class FeedSync:
    def __init__(self, cfg: Config, feed: FeedConfig, db: StateDB, reloader: Reloader | None = None, *,
                 clock: Clock = time.time, is_public_suffix: Callable[[str], bool] | None = None,
                 bundle_source: BundleFetcher | None = None,
                 progress: Callable[[int, int], None] | None = None) -> None:
        self.cfg = cfg
        self.feed = feed
        self.db = db
        self.reloader = reloader
        self.clock = clock
        self.progress = progress    # (bytes parsed, bytes received) during a zone transfer
        self.psl = is_public_suffix if is_public_suffix is not None else public_suffix_check()
        self.dir = cfg.feed_dir(feed.name)
        self.store = FeedStore(self.dir)
        # xfr: the primary's zone at the last-known-good serial, and its per-owner index
        self._base: tuple[dns.zone.Zone, XfrIndex] | None = None
        self._pending: tuple[dns.zone.Zone, XfrIndex] | None = None
        self._ids_cache: tuple[str, frozenset[str]] | None = None
        # the last-known-good bundle version's rules as (owner, cname, order_ref), and the next one's
        self._bundle_rules: tuple[str, set[tuple[str, str, str]]] | None = None
        self._pending_rules: set[tuple[str, str, str]] | None = None
        self._compiled: tuple[str, Any] | None = None   # (version, rpz CompiledZone) of the last snapshot
        self._bundles: BundleFetcher | None = bundle_source or (
            BundleSource(feed, self.dir) if feed.type == "bundle" else None)

    # --- the cycle -------------------------------------------------------------------------------

    def cycle(self) -> CycleResult:
        with feed_lock(os.path.join(self.dir, ".lock")), _no_cyclic_gc():
            return self._cycle()

    def _cycle(self) -> CycleResult:
        now = self.clock()
        st = self.db.state(self.feed.name)
        self._recover(st, now)
        st.last_attempt_at = now
        if st.first_attempt_at is None:
            st.first_attempt_at = now
        self._time_maintenance(st, now)
        try:
            prepared = self._fetch(st, now)
        except FeedRefused as r:
            return self._refused(st, r, now)
        except FetchFailed as f:
            return self._failed(st, f, now)
        if prepared is None:
            st.last_success_at = now
            self._alarms(st, now)
            self.db.save_state(st)
            log("feed_unchanged", feed=self.feed.name, serial=st.serial)
            self._push_receipts()
            return CycleResult(self.feed.name, "no_change", st.serial)
        prev_ids = None if prepared.delta is not None else self._ids(st.version)
        approved = self.db.approval(self.feed.name, prepared.serial, prepared.digest) is not None
        d = engine.decide(st.serial, st.digest, prev_ids, prepared, feed=self.feed, approved=approved)
        if d.verdict is Verdict.REFUSE:
            assert d.code is not None
            return self._refused(st, FeedRefused(d.code, self.feed.name, prepared.serial, d.check, d.detail), now)
        st.last_success_at = now
        if d.verdict is Verdict.NO_CHANGE:
            self._alarms(st, now)
            self.db.save_state(st)
            return CycleResult(self.feed.name, "no_change", st.serial)
        if st.pinned_by is not None:
            self._alarms(st, now, save=False)
            self.db.save_state(st)
            detail = (f"serial {prepared.serial} verified and waiting: {self.feed.name} is pinned to version "
                      f"{st.version} by {st.pinned_by}; `hotline-edge feed unpin {self.feed.name}` applies it")
            log("feed_pinned", "warning", feed=self.feed.name, serial=prepared.serial, pinned=st.version,
                code=FailureCode.PINNED.value)
            return CycleResult(self.feed.name, "pinned", st.serial, FailureCode.PINNED.value, detail)
        if d.verdict is Verdict.HOLD:
            return self._held(st, prepared, d, now)
        return self._apply(st, prepared, d, now, approved=approved)

    # --- fetching --------------------------------------------------------------------------------

    def _fetch(self, st: FeedState, now: float) -> Prepared | None:
        if self.feed.type == "bundle":
            return self._fetch_bundle(st, now)
        return self._fetch_xfr(st, now)

    def _fetch_bundle(self, st: FeedState, now: float) -> Prepared | None:
        assert self._bundles is not None
        fb = self._bundles.fetch()
        digest = engine.digest_of(fb.data)
        if digest == st.digest:
            return None
        zone_serial = self._next_zone_serial(st)
        p = engine.prepare_bundle(fb.data, self.feed, now, zone_serial=zone_serial, is_public_suffix=self.psl,
                                  declared_sequence=fb.sequence, signer_keys=fb.signer_keys)
        return self._prove_bundle(st, replace(p, extra={**p.extra, "targets_version": fb.targets_version}))

    def _prove_bundle(self, st: FeedState, p: Prepared) -> Prepared:
        """Compile the version's rules with rpz: in full from the rule table, or, when the
        last-known-good's rules are in memory, only the owners whose rule differs (rpz compiles each
        owner on its own, so the others were proven before), as changes over its compiled zone."""
        table = p.rules
        assert isinstance(table, bfmt_bulk.RuleTable) and p.compile_full is not None
        source = f"{self.feed.name}:{p.serial}"
        now_set = set(zip(table.owners, table.cname, table.order_ref, strict=True))
        prev = self._bundle_rules
        self._pending_rules = now_set
        if prev is not None and prev[0] == st.version:
            added = now_set - prev[1]
            owners = {o for o, _, _ in added}
            gone = {o for o, _, _ in prev[1] - now_set} - owners
            if len(owners) + len(gone) <= DELTA_LIMIT:
                records = bfmt.zone_records(self.feed.zone, p.zone_serial, table, sorted(owners), self.feed.ttl)
                out = self._prove_loads(replace(p, records=records))
                changes: dict[bytes, list[rpz.RR]] = {}
                for pair in _pairs(records[2:]):
                    changes[pair[0][0]] = [rpz.RR(t, ttl, rd) for _, t, ttl, rd in pair]
                for own in gone:
                    changes[bfmt.owner_wire(self.feed.zone, own)] = []
                apex = records[0]
                changes[apex[0]] = [rpz.RR(apex[1], apex[2], apex[3])]
                return replace(out, compiled=None, changes=changes,
                               extra={**out.extra, "rules": len(table), "proven_rules": len(owners)})
        try:
            zone = p.compile_full(source)
        except ZoneReadError as exc:
            raise FeedRefused(RefusalCode.INTEGRITY, self.feed.name, p.serial, "compile",
                              f"the version does not load as a policy zone: {exc}") from exc
        return replace(p, compiled=zone, extra={**p.extra, "rules": zone.stats.rules, "proven_rules": len(table)})

    def _fetch_xfr(self, st: FeedState, now: float) -> Prepared | None:
        soa, errors = None, []
        for primary in self.feed.primaries:
            try:
                soa = xfr.query_soa(self.feed, primary, min(self.feed.transfer_timeout, 10))
                break
            except FetchFailed as exc:
                errors.append(exc)
        if soa is None:
            raise errors[-1]
        st.soa_refresh, st.soa_retry, st.soa_expire = soa.refresh, soa.retry, soa.expire
        order = xfr.newer(soa.serial, st.serial)
        if order is serials.Order.EQUAL:
            return None
        if order is not serials.Order.NEWER:
            raise FeedRefused(RefusalCode.ROLLBACK, self.feed.name, soa.serial, "serial",
                              f"primary {soa.primary} serves serial {soa.serial}, older than the applied "
                              f"{st.serial} (RFC 1982)")
        base = self._base_zone(st)
        self._base = None  # an IXFR changes the base in place: only an applied version becomes the base again
        try:
            received, nbytes, mode, touched = xfr.transfer(
                self.feed, soa.primary, base[0] if base else None, st.serial if base else None,
                max_bytes=self.feed.max_bytes, timeout=self.feed.transfer_timeout, progress=self.progress)
        except FeedRefused as r:
            if r.code is not RefusalCode.INCONSISTENT or base is None:
                raise
            self._refused(st, r, now, alarms=False)  # audited, then a full transfer (research C.1 item 7)
            base = None
            received, nbytes, mode, touched = xfr.transfer(self.feed, soa.primary, None, None,
                                                           max_bytes=self.feed.max_bytes,
                                                           timeout=self.feed.transfer_timeout, progress=self.progress)
        delta = None
        if mode == "ixfr" and base is not None and isinstance(received, dns.zone.Zone):
            zone, index = received, base[1]
            changed = index.update(zone, touched)
            if isinstance(zone.nodes, xfr.BaseNodes):
                zone.nodes.settle()     # the index holds the touched owners now
        else:
            index = XfrIndex(self.feed, self.psl)
            changed = index.load(received) if isinstance(received, xfrwire.ZoneRecords) else index.rebuild(received)
            del received
            zone = xfr.base_zone(self.feed, index)
        assert index.serial is not None
        serial = index.serial
        if st.serial is not None and not serials.is_newer(serial, st.serial):
            if serial == st.serial:
                self._base = (zone, index)
                return None
            raise FeedRefused(RefusalCode.ROLLBACK, self.feed.name, serial, "serial",
                              f"the transferred zone has serial {serial}, older than the applied {st.serial}")
        if index.zone_size() > self.feed.max_entries:
            raise FeedRefused(RefusalCode.TOO_LARGE, self.feed.name, serial, "max_entries",
                              f"{index.zone_size()} names, the cap is {self.feed.max_entries}")
        zonemd, zonemd_digest = xfr.check_zonemd(zone, self.feed)
        try:
            proven, compiled = index.prove(changed, f"{self.feed.name}:{serial}")
        except ZoneReadError as exc:
            raise FeedRefused(RefusalCode.INTEGRITY, self.feed.name, serial, "compile",
                              f"the version does not load as a policy zone: {exc}") from exc
        extra = {"transfer": mode, "bytes": nbytes, "zonemd": zonemd, "primary": str(soa.primary),
                 "changed_names": len(touched) if mode == "ixfr" else None, "proven_rules": proven,
                 "rules": len(index.accepted)}
        snap: dict[str, Any] = {"compiled": compiled}
        if mode == "ixfr" and base is not None:
            delta = (len(index.added), len(index.removed), index.previous_count)
            snap = {"changes": index.changes(touched), "full_records": index.records}
        self._pending = (zone, index)
        return replace(self._prepare_zone(index, serial, extra, zonemd_digest), delta=delta, **snap)

    def _prepare_zone(self, index: XfrIndex, serial: int, extra: dict[str, Any], zonemd: str | None) -> Prepared:
        """The digest is the primary's ZONEMD when one verified (comparable across nodes and with the
        primary), else the xfrdigest tree over the seed text, kept per owner (no pass over the zone).
        The texts are produced when they are written, after the resolver was asked."""
        ids = frozenset(index.accepted)
        return Prepared(serial, zonemd or index.digest(), b"", b"", serial, ids,
                        len(ids), tuple(index.rejected()), signer_keys=(self.feed.tsig_name,), extra=extra,
                        texts=index.texts)

    def _prove_loads(self, p: Prepared) -> Prepared:
        """Compile with rpz exactly the bytes the resolver will load (DESIGN.md section 3)."""
        source = f"{self.feed.name}:{p.serial}"
        try:
            if p.records is not None:   # the same zone as records: rpz's faster path (no text tokenizer)
                z = rpz.compile_records(self.feed.zone, p.records, source)
            else:
                z = rpz.compile_text(p.rpz_text, source, self.feed.zone)
        except ZoneReadError as exc:
            raise FeedRefused(RefusalCode.INTEGRITY, self.feed.name, p.serial, "compile",
                              f"the version does not load as a policy zone: {exc}") from exc
        extra = {**p.extra, "rules": z.stats.rules}
        if not z.rejections:
            return replace(p, extra=extra, records=None, compiled=z)
        more = tuple({"entry_id": r.owner, "index": -1, "reason": "ENTRY_UNUSABLE_RECORD", "detail": r.reason}
                     for r in z.rejections)
        return replace(p, rejected=p.rejected + more, extra=extra, records=None, compiled=z)

    def _base_zone(self, st: FeedState) -> tuple[dns.zone.Zone, XfrIndex] | None:
        """The IXFR base: in memory, or the seed (the last-known-good's source) from disk."""
        if st.version is None or st.serial is None:
            return None
        if self._base is not None and self._base[1].serial == st.serial:
            return self._base
        t0 = time.perf_counter()
        index = XfrIndex(self.feed, self.psl)
        try:
            text = self.store.read(st.version, "source")
            records = xfrseed.read(text, self.feed.zone)
            reader = "seed" if records is not None else "dnspython"
            if records is None:       # not in the form feedsync writes: dnspython reads it
                index.rebuild(xfr.zone_from_text(text, self.feed))
            else:
                del text
                index.load(records)
                del records
        except Exception as exc:
            log("seed_unreadable", "warning", feed=self.feed.name, version=st.version, error=str(exc))
            return None
        if index.serial != st.serial:
            return None
        index.digest()   # hash the digest tree now: otherwise the first IXFR after a restart pays for it
        log("seed_loaded", feed=self.feed.name, version=st.version, serial=st.serial, names=index.zone_size(),
            reader=reader, seconds=round(time.perf_counter() - t0, 3))
        return xfr.base_zone(self.feed, index), index

    def load_seed(self) -> None:
        """Warm the in-memory IXFR base from disk (the daemon does this at start)."""
        if self.feed.type == "xfr":
            with _no_cyclic_gc():
                self._base = self._base_zone(self.db.state(self.feed.name))

    def _ids(self, version: str | None) -> frozenset[str] | None:
        if version is None or not self.store.has(version):
            return None
        if self._ids_cache is not None and self._ids_cache[0] == version:
            return self._ids_cache[1]
        if self.feed.type == "xfr":   # xfr versions keep no id list: the owners come from the seed
            base = self._base_zone(self.db.state(self.feed.name))
            if base is None:
                return None
            ids = frozenset(base[1].accepted)
            self._ids_cache = (version, ids)
            return ids
        ids = frozenset(self.store.info(version).ids)
        self._ids_cache = (version, ids)
        return ids

    # --- outcomes --------------------------------------------------------------------------------

    def _apply(self, st: FeedState, p: Prepared, d: engine.Decision, now: float, *, approved: bool,
               kind: str = "applied") -> CycleResult:
        """Activate a version: its snapshot and active.snap, the resolver asked, then (for an IXFR,
        whose zone text is produced off the path to enforcement) its text files and active.rpz; the
        state, audit record and receipt commit only when all of that is done (store.py)."""
        name = self.store.version_name(now, p.zone_serial, p.digest.split(":")[-1])
        meta = {"serial": p.serial, "zone_serial": p.zone_serial, "digest": p.digest, "created_at": now,
                "ids": list(p.ids) if self.feed.type == "bundle" else None, "in_force": p.in_force,
                "rejected": list(p.rejected),
                "signer_keys": list(p.signer_keys), "next_change_at": p.next_change_at,
                "extra": dict(p.extra)}
        self.store.begin_activation(name)
        zone = None
        try:
            zone = self._snapshot_zone(st, p)
            snap_base = self.store.write_snapshot(name, zone)
        except (rpz.RpzError, OSError) as exc:   # the text still serves; the resolver parses it instead
            log("snapshot_failed", "warning", feed=self.feed.name, version=name, error=str(exc))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.store.path(name, "snap"))
            self._compiled, snap_base, zone = None, None, None
        meta["snap_base"] = snap_base
        deferred = p.texts is not None and zone is not None
        if not deferred:
            if p.texts is not None:
                source, policy = p.texts()
                p = replace(p, source=source, rpz_text=policy)
            self.store.write_version(name, p.rpz_text, p.source, meta)
        self.store.switch_snapshot(name, zone)
        if not deferred:
            self.store.switch_text(name)
        status, error = self._reload(p.zone_serial)
        if status == "error":
            return self._revert(st, p, name, error, now)
        if deferred:       # the resolver maps active.snap; the text follows for humans, `rpz check`, the seed
            source, policy = p.texts()
            self.store.write_version(name, policy, source, meta)
            del source, policy
            self.store.switch_text(name)
        self.store.end_activation(name)
        if zone is not None:
            self._compiled = (name, zone)
        prev_serial, prev_version = st.serial, st.version
        st.serial, st.zone_serial, st.digest, st.version = p.serial, p.zone_serial, p.digest, name
        st.applied_at, st.entries, st.in_force = now, p.entries, p.in_force
        st.rejected = json.dumps(list(p.rejected))
        st.next_change_at = p.next_change_at
        st.last_success_at = now
        if kind == "applied":
            st.last_failure_code = None if st.last_failure_code == FailureCode.HELD.value else st.last_failure_code
        self._alarms(st, now, save=False)
        node_key = receipts.load_or_create_node_key(self.cfg.node.state_dir)
        counts = {"entries": p.entries, "in_force": p.in_force, "added": d.added, "removed": d.removed,
                  "rejected": len(p.rejected)}
        body = receipts.make_receipt(self.cfg.node.id, self.feed.name, p.serial, p.zone_serial, digest=p.digest,
                                     applied_at=format_time(now), counts=counts)
        with self.db.tx():
            self.db.save_state(st)
            self.db.append_audit(self.feed.name, p.serial, kind, now, {
                "digest": p.digest, "zone_serial": p.zone_serial, "version": name,
                "previous": {"serial": prev_serial, "version": prev_version},
                "signer_keys": list(p.signer_keys), "fetched_at": now, "applied_at": now,
                "counts": counts, "rejected": list(p.rejected[:1000]), "rejected_total": len(p.rejected),
                "approved": approved, "resolver": status, "extra": dict(p.extra)})
            self.db.add_receipt(self.feed.name, p.serial, now, body, signature=node_key.sign(body),
                                key_id=node_key.key_id)
            if approved:
                self.db.mark_hold_applied(self.feed.name, p.serial, p.digest)
        self._ids_cache = (name, p.ids)
        self._record_orders(p, name, now)
        if p.rules is not None and self._pending_rules is not None:
            self._bundle_rules, self._pending_rules = (name, self._pending_rules), None
        if self.feed.type == "xfr" and self._pending is not None:
            self._base, self._pending = self._pending, None
        log("feed_" + kind, feed=self.feed.name, serial=p.serial, zone_serial=p.zone_serial, digest=p.digest,
            entries=p.entries, in_force=p.in_force, added=d.added, removed=d.removed, rejected=len(p.rejected),
            resolver=status)
        self._compact(name, self._full_compiler(p))
        self.store.prune(now, self.feed.keep_days, [name], [name, snap_base or name])
        self._push_receipts()
        return CycleResult(self.feed.name, "applied", p.serial)

    def _record_orders(self, p: Prepared, name: str, now: float) -> None:
        """Which orders this version holds, for the hotline's "since when" (after the resolver was asked,
        so it costs nothing on the way to enforcement; an error here is logged, never fatal)."""
        try:
            if isinstance(p.rules, bfmt_bulk.RuleTable):
                held = orders.from_rule_columns(p.rules.owners, p.rules.cname, p.rules.order_ref)
            elif p.rules is not None:
                held = orders.from_bundle_rules(p.rules)
            elif self.feed.type == "xfr" and self._pending is not None:
                held = orders.from_xfr_owners(self._pending[1].owners.values())
            else:
                return
            opened, closed = self.db.record_orders(self.feed.name, p.serial, p.zone_serial, name, now, held)
        except (StateError, rpz.RpzError, ValueError) as exc:
            log("order_index_failed", "warning", feed=self.feed.name, serial=p.serial, error=str(exc))
            return
        if opened or closed:
            log("orders_changed", feed=self.feed.name, serial=p.serial, orders=len(held), started=opened, ended=closed)

    def _snapshot_zone(self, st: FeedState, p: Prepared) -> Any:
        """The version as a compiled zone for its snapshot: the proof's zone when it compiled
        everything, else the last-known-good's compiled zone with the changed owners replaced
        (``with_owners``: written as a small delta over the base file it came from). A delta that
        has grown past DELTA_LIMIT changed owners is compiled in full instead (normally the base
        moves before that, after a version is committed: ``_compact``)."""
        zone = p.compiled
        if zone is not None:
            return zone
        base = self._compiled_zone(st)
        source = f"{self.feed.name}:{p.serial}"
        if base is not None and p.changes is not None and len(base.changes) + len(p.changes) <= DELTA_LIMIT:
            return base.with_owners(p.changes, source)
        full = self._full_compiler(p)
        assert full is not None
        return full(source)

    def _full_compiler(self, p: Prepared) -> Callable[[str], Any] | None:
        """(source) -> the whole version compiled: from a bundle's rule table, or from the records."""
        if p.compile_full is not None:
            return p.compile_full  # type: ignore[no-any-return]
        records = p.full_records
        if records is None:
            return None
        return lambda source: rpz.compile_records(self.feed.zone, records(), source)

    def _compact(self, name: str, full: Callable[[str], Any] | None) -> None:
        """After a version is committed (off the path to enforcement): map a full snapshot from
        memory, and when its delta has reached COMPACT_AT changed owners, compile the version in full
        as the new base, so the next delta (and the resolver's replay of it) stays small."""
        from rpz.snapshot import open_snapshot
        if self._compiled is None or self._compiled[0] != name:
            return
        zone = self._compiled[1]
        path = self.store.path(name, "snap")
        try:
            if not zone.changes:
                if zone.snapshot_path is None:    # compiled in memory: map the file instead (shared pages)
                    self._compiled = (name, open_snapshot(path, verify=False))
                return
            if len(zone.changes) < COMPACT_AT or full is None:
                return
            compiled = full(zone.source)
            self.store.write_snapshot(name, compiled)
            del compiled
            self._compiled = (name, open_snapshot(path, verify=False))
            log("snapshot_compacted", feed=self.feed.name, version=name, owners=len(zone.changes))
        except (rpz.RpzError, OSError) as exc:
            log("snapshot_compaction_failed", "warning", feed=self.feed.name, version=name, error=str(exc))

    def _compiled_zone(self, st: FeedState) -> Any:
        """The last-known-good as a compiled zone: in memory, or mapped from its snapshot file."""
        if st.version is None:
            return None
        if self._compiled is not None and self._compiled[0] == st.version:
            return self._compiled[1]
        path = self.store.path(st.version, "snap")
        if not os.path.exists(path):
            return None
        from rpz.snapshot import open_snapshot
        try:
            zone = open_snapshot(path)
        except rpz.SnapshotError as exc:
            log("snapshot_unreadable", "warning", feed=self.feed.name, version=st.version, error=str(exc))
            return None
        self._compiled = (st.version, zone)
        return zone

    def _next_zone_serial(self, st: FeedState) -> int:
        """Bundle feeds number their compiled zones themselves: one more than any kept version (a pin
        may have gone back to an older one, whose successor numbers must not be reused)."""
        top = st.zone_serial
        for name in self.store.names():
            n = int(name.split("-")[1])
            if top is None or serials.is_newer(n, top):
                top = n
        return serials.add(top, 1) if top is not None else 1

    # --- pinning (operator) ----------------------------------------------------------------------

    def pin(self, version: str, by: str) -> CycleResult:
        """Serve a kept version (the current one, or an older one) and apply nothing new until
        ``unpin``. Audited and receipted; the resolver must confirm, else nothing changes."""
        with feed_lock(os.path.join(self.dir, ".lock")):
            now = self.clock()
            st = self.db.state(self.feed.name)
            if not self.store.has(version):
                return CycleResult(self.feed.name, "failed", st.serial, "FEED_NO_SUCH_VERSION",
                                   f"no kept version {version!r}; `hotline-edge feed versions {self.feed.name}` "
                                   "lists them")
            info = self.store.info(version)
            self.store.activate(version)
            status, error = self._reload(info.zone_serial)
            if status == "error":
                if st.version is not None and self.store.has(st.version):
                    self.store.activate(st.version)
                    self._reload(st.zone_serial or 0)
                return CycleResult(self.feed.name, "reverted", st.serial, FailureCode.RESOLVER_LOAD_FAILED.value,
                                   error)
            previous = st.version
            st.serial, st.zone_serial, st.digest, st.version = info.serial, info.zone_serial, info.digest, version
            st.applied_at, st.pinned_by, st.pinned_at = now, by, now
            st.in_force = int(info.extra.get("in_force") or 0)
            st.entries = len(info.ids) if info.ids else st.in_force
            st.rejected = json.dumps(info.extra.get("rejected") or [])
            st.next_change_at = info.extra.get("next_change_at")
            for cache in ("_base", "_pending", "_ids_cache", "_bundle_rules", "_compiled"):
                setattr(self, cache, None)
            node_key = receipts.load_or_create_node_key(self.cfg.node.state_dir)
            counts = {"entries": st.entries, "in_force": st.in_force, "added": 0, "removed": 0,
                      "rejected": len(st.rejected_list)}
            body = receipts.make_receipt(self.cfg.node.id, self.feed.name, info.serial, info.zone_serial,
                                         digest=info.digest, applied_at=format_time(now), counts=counts)
            with self.db.tx():
                self.db.save_state(st)
                self.db.append_audit(self.feed.name, info.serial, "pinned", now, {
                    "version": version, "previous": previous, "pinned_by": by, "digest": info.digest,
                    "zone_serial": info.zone_serial, "resolver": status})
                self.db.add_receipt(self.feed.name, info.serial, now, body, signature=node_key.sign(body),
                                    key_id=node_key.key_id)
            log("feed_pinned", "warning", feed=self.feed.name, version=version, serial=info.serial, by=by)
            return CycleResult(self.feed.name, "pinned", info.serial)

    def unpin(self, by: str) -> bool:
        with feed_lock(os.path.join(self.dir, ".lock")):
            st = self.db.state(self.feed.name)
            if st.pinned_by is None:
                return False
            now = self.clock()
            with self.db.tx():
                self.db.append_audit(self.feed.name, st.serial, "unpinned", now, {
                    "version": st.version, "pinned_by": st.pinned_by, "unpinned_by": by})
                st.pinned_by = st.pinned_at = None
                self.db.save_state(st)
            log("feed_unpinned", feed=self.feed.name, version=st.version, by=by)
            return True

    def _reload(self, zone_serial: int) -> tuple[str, str]:
        """("ok" | "absent" | "error", detail). "absent": no resolver to tell; it loads at start."""
        if self.reloader is None or not self.reloader.available():
            return "absent", ""
        try:
            reply = self.reloader.reload()
        except ControlError as exc:
            return "error", str(exc)
        if not reply.ok:
            return "error", f"the resolver did not load it: {reply.error or 'ok=false'}"
        got = reply.serial_of(self.feed.zone)
        if got != zone_serial:
            return "error", (f"the resolver reports serial {got} for {self.feed.zone}, expected {zone_serial} "
                             f"(is a [[policy.zone]] with feed = \"{self.feed.name}\" configured?)")
        return "ok", ""

    def _revert(self, st: FeedState, p: Prepared, name: str, error: str, now: float) -> CycleResult:
        if st.version is not None and self.store.has(st.version):
            self.store.activate(st.version)
            again, detail = self._reload(st.zone_serial or 0)
        else:
            self.store.deactivate()
            again, detail = "absent", ""
        # the resolver never served it: its files go (a resolver that keeps failing must not fill the
        # disk with a full version per cycle); the audit record keeps its digest
        self.store.remove(name)
        st.last_failure_at = now
        st.last_failure_code = FailureCode.RESOLVER_LOAD_FAILED.value
        st.last_failure_detail = error
        last = self.db.audit(self.feed.name, limit=1)
        repeat = bool(last) and last[0].kind == "reverted" and last[0].serial == p.serial and \
            last[0].record.get("digest") == p.digest
        with self.db.tx():
            self.db.save_state(st)
            if not repeat:
                self.db.append_audit(self.feed.name, p.serial, "reverted", now, {
                    "code": FailureCode.RESOLVER_LOAD_FAILED.value, "digest": p.digest, "version": name,
                    "detail": error, "restored": st.version, "restored_reload": again,
                    "restored_detail": detail})
        log("feed_reverted", "error", feed=self.feed.name, serial=p.serial, code=FailureCode.RESOLVER_LOAD_FAILED.value,
            detail=error, restored=st.version)
        return CycleResult(self.feed.name, "reverted", p.serial, FailureCode.RESOLVER_LOAD_FAILED.value, error)

    def _held(self, st: FeedState, p: Prepared, d: engine.Decision, now: float) -> CycleResult:
        with self.db.tx():
            new = self.db.hold(self.feed.name, p.serial, p.digest, at=now, added=d.added, removed=d.removed,
                               share=d.share)
            if new:
                self.db.append_audit(self.feed.name, p.serial, "held", now, {
                    "code": FailureCode.HELD.value, "digest": p.digest, "added": d.added, "removed": d.removed,
                    "share": round(d.share, 4), "threshold": self.feed.blast_radius, "detail": d.detail,
                    "lkg_serial": st.serial})
            st.last_failure_code = FailureCode.HELD.value
            st.last_failure_detail = d.detail
            st.last_failure_at = now
            self._alarms(st, now, save=False)
            self.db.save_state(st)
        if new:
            log("feed_held", "warning", feed=self.feed.name, serial=p.serial, code=FailureCode.HELD.value,
                detail=d.detail)
        return CycleResult(self.feed.name, "held", p.serial, FailureCode.HELD.value, d.detail)

    def _refused(self, st: FeedState, r: FeedRefused, now: float, alarms: bool = True) -> CycleResult:
        if self.feed.type == "xfr":
            self._base = None
        st.last_failure_at = now
        st.last_failure_code = r.code.value
        st.last_failure_detail = str(r)
        last = self.db.audit(self.feed.name, limit=1)
        repeat = bool(last) and last[0].kind == "refused" and last[0].serial == r.serial and \
            last[0].record.get("code") == r.code.value and last[0].record.get("check") == r.check
        with self.db.tx():
            if alarms:
                self._alarms(st, now, save=False)
            self.db.save_state(st)
            if not repeat:
                self.db.append_audit(self.feed.name, r.serial, "refused", now, {
                    "code": r.code.value, "check": r.check, "detail": r.detail, "fetched_at": now,
                    "lkg_serial": st.serial, "lkg_version": st.version})
        log("feed_refused", "error", feed=self.feed.name, serial=r.serial, code=r.code.value, check=r.check,
            detail=r.detail, serving_serial=st.serial)
        return CycleResult(self.feed.name, "refused", r.serial, r.code.value, str(r))

    def _failed(self, st: FeedState, f: FetchFailed, now: float) -> CycleResult:
        st.last_failure_at = now
        st.last_failure_code = FailureCode.UNREACHABLE.value
        st.last_failure_detail = str(f)
        self._alarms(st, now, save=False)
        self.db.save_state(st)
        log("feed_unreachable", "warning", feed=self.feed.name, code=FailureCode.UNREACHABLE.value,
            detail=f.detail, where=f.where, serving_serial=st.serial)
        return CycleResult(self.feed.name, "failed", st.serial, FailureCode.UNREACHABLE.value, str(f))

    # --- alarms, expiry, recovery -----------------------------------------------------------------

    def _alarms(self, st: FeedState, now: float, save: bool = True) -> None:
        """FEED_STALE when no refresh succeeded within ``freshness``; for xfr feeds FEED_EXPIRED when
        not even within the SOA expire. The last-known-good keeps serving either way (entries still
        leave at their own expiry): dropping court-ordered blocks because a primary is down would
        unblock them (a deliberate difference from RFC 1035's secondary, docs/feeds.md)."""
        since = st.last_success_at or st.first_attempt_at or now
        quiet = now - since
        alarm = None
        if self.feed.type == "xfr" and st.soa_expire and st.last_success_at and quiet > st.soa_expire:
            alarm = RefusalCode.EXPIRED.value
        elif quiet > self.feed.freshness:
            alarm = RefusalCode.STALE.value
        if alarm != st.alarm:
            if alarm is not None:
                self.db.append_audit(self.feed.name, st.serial, "alarm", now, {
                    "code": alarm, "check": "freshness" if alarm == RefusalCode.STALE.value else "soa_expire",
                    "detail": f"no successful refresh for {int(quiet)} s", "lkg_serial": st.serial,
                    "lkg_version": st.version})
                log("feed_alarm", "error", feed=self.feed.name, code=alarm, quiet_s=int(quiet),
                    serving_serial=st.serial)
            else:
                log("feed_alarm_cleared", feed=self.feed.name, code=st.alarm)
            st.alarm = alarm
        if save:
            self.db.save_state(st)

    def _time_maintenance(self, st: FeedState, now: float) -> None:
        """Bundle feeds: when an entry of the last-known-good starts or ends, recompile it locally."""
        if self.feed.type != "bundle" or st.version is None or st.next_change_at is None or now < st.next_change_at:
            return
        source = self.store.read(st.version, "source")
        info = self.store.info(st.version)
        zone_serial = self._next_zone_serial(st)
        p = self._prove_bundle(st, engine.prepare_bundle(
            source, self.feed, now, zone_serial=zone_serial, is_public_suffix=self.psl,
            signer_keys=tuple(info.extra.get("signer_keys", ()))))
        before = int(info.extra.get("in_force", st.in_force))
        d = engine.Decision(Verdict.APPLY, added=max(0, p.in_force - before), removed=max(0, before - p.in_force))
        self._apply(st, p, d, now, approved=False, kind="expiry")

    def _recover(self, st: FeedState, now: float) -> None:
        active, complete = self.store.activation()
        if complete and (active == st.version or (st.version is None and active is None)):
            return
        if st.version is not None and self.store.has(st.version):
            self.store.activate(st.version)
        else:
            self.store.deactivate()
        status, detail = self._reload(st.zone_serial or 0) if st.version else ("absent", "")
        self.db.append_audit(self.feed.name, st.serial, "recovered", now, {
            "found_active": active, "found_complete": complete, "restored": st.version, "resolver": status,
            "detail": detail})
        log("feed_recovered", "warning", feed=self.feed.name, found_active=active, restored=st.version)

    def _push_receipts(self) -> None:
        if not self.feed.receipt_url:
            return
        key = receipts.load_or_create_node_key(self.cfg.node.state_dir)
        for r in self.db.receipts(self.feed.name, unpushed=True)[:50]:
            err = receipts.push(self.feed.receipt_url, r["body"].encode(), r["signature"], r["key_id"],
                                public_pem=key.public_pem())
            self.db.mark_pushed(r["id"], self.clock() if err is None else None, err)
            if err is not None:
                log("receipt_push_failed", "warning", feed=self.feed.name, url=self.feed.receipt_url, error=err)
                break
