"""The blocked-lookup log store: the ONE module that owns its SQLite schema (WAL, explicit migrations).

``<state_dir>/blocklog.sqlite`` holds, per node:

    hits       one row per policy hit: seq (chain position), time (UTC ms), qname, qtype, transport,
               the rule context, the batch, the sealed client address, and the record's chain link
    contexts   what hits of one rule of one zone version share: node, zone, serial, trigger, rule
               owner, action, order_ref (so a row carries a small integer instead of six strings)
    batches    one per commit: its seq range and times, the chain head it committed, and the data key
               its addresses are sealed with (itself sealed to the compliance key; blocklog_seal)
    chain      the newest head (seq, link), committed with every batch
    gaps       what purges removed: per run of purged records its seq range and the link of its last
               record, so what remains still verifies (and a gap without a purge is a break)
    daily      aggregates without personal data: hits per day per order per node (per zone, action)
    holds      legal holds: order_ref and/or time window, reason, until, who, released
    audit      hash-chained events: purges, holds, exports, queue drops (rpz.hashchain)

Record chain (rpz.hashchain): ``link_seq = SHA-256(link_{seq-1} || SHA-256(payload_seq))`` with
``payload`` the canonical JSON array written by ``payload()``. Every write, purge, hold and export is
one transaction together with its audit record (STYLE.md habit 12). Time is always passed in.

    store = BlocklogStore("/var/lib/hotline-edge/blocklog.sqlite", node="edge-1")
    store.write_batch(records, now_ms=..., public_key=pk)
    store.verify().ok
    store.purge(now_ms=..., retention_days=lambda zone: 180, actor="cli:root")
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _jstr
from typing import Any

import sqlite_utils

from rpz import hashchain
from rpz.sqlitetx import immediate

from .blocklog_seal import NONCE_LEN, BatchSealer, blob
from .errors import BlocklogError, HoldError

DAY_MS = 86_400_000
# one hit as the data plane hands it over: (time_ms, ip, port, templates, transport), where a
# template is resolver.synth.HitTemplate: (qname, qtype, zone, serial, trigger, rule_owner, action, order_ref)
Template = tuple[str, int, str, int, str, str, str, str | None]
Raw = tuple[int, str, int, tuple[Template, ...], str]
Progress = Callable[[int, int], None]


def _m1(db: sqlite_utils.Database) -> None:
    db.table("contexts").create({"id": int, "canon": str, "node": str, "zone": str, "serial": int, "trigger": str,
                                 "rule_owner": str, "action": str, "order_ref": str}, pk="id",
                                not_null={"canon", "node", "zone", "serial", "trigger", "rule_owner", "action"})
    db.table("contexts").create_index(["canon"], unique=True)
    db.table("contexts").create_index(["order_ref"])
    db.table("batches").create({"id": int, "first_seq": int, "last_seq": int, "records": int, "min_time_ms": int,
                                "max_time_ms": int, "committed_ms": int, "head": bytes, "sealed_key": bytes}, pk="id",
                               not_null={"first_seq", "last_seq", "records", "min_time_ms", "max_time_ms",
                                         "committed_ms", "head"})
    db.table("hits").create({"seq": int, "time_ms": int, "ctx": int, "qname": str, "qtype": int, "transport": str,
                             "batch": int, "client": bytes, "link": bytes}, pk="seq",
                            not_null={"time_ms", "ctx", "qname", "qtype", "transport", "batch", "link"})
    db.table("hits").create_index(["ctx"])
    db.table("chain").create({"id": int, "seq": int, "link": bytes}, pk="id", not_null={"seq", "link"})
    db.table("gaps").create({"last_seq": int, "first_seq": int, "records": int, "link": bytes, "audit": int},
                            pk="last_seq", not_null={"first_seq", "records", "link"})
    db.table("daily").create({"day": str, "node": str, "order_ref": str, "zone": str, "action": str, "hits": int,
                              "first_ms": int, "last_ms": int}, pk=("day", "node", "order_ref", "zone", "action"),
                             not_null={"hits", "first_ms", "last_ms"})
    db.table("daily").create_index(["order_ref", "day"])
    db.table("holds").create({"id": int, "order_ref": str, "start_ms": int, "end_ms": int, "reason": str,
                              "until_ms": int, "created_by": str, "created_ms": int, "released_by": str,
                              "released_ms": int}, pk="id", not_null={"reason", "until_ms", "created_by", "created_ms"})
    db.table("audit").create({"id": int, "at_ms": int, "kind": str, "payload": bytes, "link": bytes}, pk="id",
                             not_null={"at_ms", "kind", "payload", "link"})


# Explicit, numbered migrations (sqlite-utils), recorded in PRAGMA user_version. Append, never edit.
MIGRATIONS: tuple[Callable[[sqlite_utils.Database], None], ...] = (_m1,)


@dataclass(frozen=True, slots=True)
class Hold:
    id: int
    order_ref: str | None
    start_ms: int | None
    end_ms: int | None
    reason: str
    until_ms: int
    created_by: str
    created_ms: int
    released_by: str | None = None
    released_ms: int | None = None

    def active(self, now_ms: int) -> bool:
        return self.released_ms is None and now_ms < self.until_ms

    def covers(self, order_ref: str | None, time_ms: int) -> bool:
        if self.order_ref is not None and self.order_ref != order_ref:
            return False
        return self.start_ms is None or self.end_ms is None or self.start_ms <= time_ms <= self.end_ms

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "order_ref": self.order_ref, "start_ms": self.start_ms, "end_ms": self.end_ms,
                "reason": self.reason, "until_ms": self.until_ms, "created_by": self.created_by,
                "created_ms": self.created_ms, "released_by": self.released_by, "released_ms": self.released_ms}


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    records: int                  # records whose links checked out
    gaps: int                     # purged runs crossed (each anchored by its recorded link)
    head_seq: int
    head: bytes
    first_bad: int | None = None  # seq of the first record (or missing range start) that does not check out
    reason: str = ""
    audit: hashchain.ChainCheck = field(default_factory=lambda: hashchain.ChainCheck(True, 0))

    def __str__(self) -> str:
        if self.first_bad is not None:
            return f"blocked-lookup log BROKEN at record {self.first_bad}: {self.reason} ({self.records} records " \
                   f"verified before it)"
        if not self.audit.ok:
            return f"blocked-lookup log audit chain BROKEN: {self.audit}"
        return (f"blocked-lookup log intact: {self.records} records, {self.gaps} purged runs anchored, head seq "
                f"{self.head_seq} {self.head.hex()[:16]}; audit: {self.audit.checked} events")


@dataclass(frozen=True, slots=True)
class PurgeReport:
    deleted: int
    kept_by_holds: int
    runs: int
    batches_deleted: int
    cutoffs: dict[str, int]        # zone -> retention days applied
    holds: tuple[int, ...]         # holds that kept records


@dataclass(frozen=True, slots=True)
class HitRow:
    seq: int
    time_ms: int
    qname: str
    qtype: int
    transport: str
    node: str
    zone: str
    serial: int
    trigger: str
    rule_owner: str
    action: str
    order_ref: str | None
    sealed_client: bytes | None   # self-contained (blocklog_seal.blob), or None: no address recorded


def payload(seq: int, time_ms: int, qname: str, qtype: int, transport: str, batch: int, client: bytes | None,
            ctx_canon: str) -> bytes:
    """The canonical bytes of one record, chained with rpz.hashchain.link (a JSON array)."""
    c = f'"{client.hex()}"' if client is not None else "null"
    return f'[{seq},{time_ms},{_jstr(qname)},{qtype},"{transport}",{batch},{c},{ctx_canon}]'.encode()


def context_canon(node: str, t: Template) -> str:
    return json.dumps([node, t[2], t[3], t[4], t[5], t[6], t[7]], ensure_ascii=True, separators=(",", ":"))


def _cross(gaps: dict[int, tuple[int, bytes]], expect: int) -> tuple[bytes | None, int, int]:
    """Follow recorded gaps from seq ``expect``: (link of the last purged record or None, the seq
    after the gaps, how many gaps were crossed)."""
    anchor, crossed = None, 0
    while expect in gaps:
        last, anchor = gaps[expect]
        expect = last + 1
        crossed += 1
    return anchor, expect, crossed


def day_of(time_ms: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(time_ms // 1000))


class BlocklogStore:
    """One connection to the log. Not shared between threads: each thread opens its own."""

    def __init__(self, path: str, node: str = "", *, busy_timeout_s: float = 30.0, readonly: bool = False) -> None:
        self.path = path
        self.node = node
        try:
            if readonly:
                if not os.path.exists(path):
                    raise BlocklogError(f"{path}: no blocked-lookup log here (check [blocklog] path / [node] "
                                        "state_dir, or whether the resolver ever ran with [blocklog])")
                self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=busy_timeout_s,
                                            isolation_level=None)
            else:
                os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o750, exist_ok=True)
                self.conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=FULL")
                self._migrate()
        except sqlite3.Error as exc:
            raise BlocklogError(f"{path}: cannot open the blocked-lookup log: {exc}") from exc
        except OSError as exc:
            raise BlocklogError(f"{path}: cannot create the blocked-lookup log's directory: {exc.strerror}") from exc
        self._ctx: dict[tuple[Any, ...], tuple[int, str, str, str | None, str]] = {}  # (id, canon, zone, order, action)
        self._head: tuple[int, bytes] | None = None
        self._batch_id: int | None = None

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()

    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        have = self.schema_version()
        if have > len(MIGRATIONS):
            raise BlocklogError(f"{self.path}: schema version {have} is newer than this program knows "
                                f"({len(MIGRATIONS)}); upgrade hotline-edge")
        db = sqlite_utils.Database(self.conn)
        for n in range(have, len(MIGRATIONS)):
            with self.tx():
                MIGRATIONS[n](db)
                self.conn.execute(f"PRAGMA user_version = {n + 1}")

    def tx(self) -> AbstractContextManager[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error): writers serialize, readers go on."""
        return immediate(self.conn)

    # -- writing ------------------------------------------------------------------------------------

    def head(self) -> tuple[int, bytes]:
        """(seq, link) of the newest record ever written (0, GENESIS for a new log)."""
        row = self.conn.execute("SELECT seq, link FROM chain WHERE id = 1").fetchone()
        return (int(row[0]), bytes(row[1])) if row else (0, hashchain.GENESIS)

    @property
    def written_seq(self) -> int:
        """The newest seq this connection wrote or read as the head."""
        return self._head[0] if self._head is not None else self.head()[0]

    def write_batch(self, raws: Sequence[Raw], *, now_ms: int, public_key: bytes | None) -> int:
        """Append the hits of ``raws`` as one batch (one transaction: records, batch row with the chain
        head and the sealed data key, daily aggregates). Returns how many records were written.
        BlocklogError when the database refuses the write (nothing of the batch is then kept)."""
        n = sum(len(r[3]) for r in raws)
        if n == 0:
            return 0
        try:
            with self.tx() as c:
                return self._write(c, raws, now_ms, public_key)
        except sqlite3.Error as exc:
            self._ctx.clear()      # contexts created in the rolled-back transaction are gone
            self._head = self._batch_id = None
            raise BlocklogError(f"{self.path}: cannot write a batch of {n} records: {exc}") from exc

    def _write(self, c: sqlite3.Connection, raws: Sequence[Raw], now_ms: int, public_key: bytes | None) -> int:
        """The hot loop of the writer, written out for speed: it builds exactly ``payload()`` and
        ``hashchain.link()`` (verify() recomputes both from the stored columns, so the tests hold
        them equal)."""
        if self._head is None or self._batch_id is None:
            self._head = self.head()
            self._batch_id = int(c.execute("SELECT coalesce(max(id), 0) FROM batches").fetchone()[0])
        seq, prev = self._head
        batch = self._batch_id + 1
        sealer = BatchSealer(public_key) if public_key is not None else None
        encrypt = sealer.aead.encrypt if sealer is not None else None
        sha = hashlib.sha256
        ctx_of = self._ctx.get
        rows: list[tuple[Any, ...]] = []
        append = rows.append
        daily: dict[tuple[int, int], list[int]] = {}
        first_seq = seq + 1
        for t_ms, ip, port, tpls, transport in raws:
            jip = _jstr(ip)
            for t in tpls:
                seq += 1
                ctx = ctx_of(t[2:])
                if ctx is None:
                    ctx = self._context(c, t[2:], t)
                if encrypt is not None:
                    client: bytes | None = encrypt(seq.to_bytes(NONCE_LEN, "big"),
                                                   f'{{"ip": {jip}, "port": {port:d}}}'.encode(), None)
                    cj = f'"{client.hex()}"'  # type: ignore[union-attr]
                else:
                    client, cj = None, "null"
                body = f'[{seq},{t_ms},{_jstr(t[0])},{t[1]},"{transport}",{batch},{cj},{ctx[1]}]'.encode()
                prev = sha(prev + sha(body).digest()).digest()
                append((seq, t_ms, ctx[0], t[0], t[1], transport, batch, client, prev))
                k = (t_ms // DAY_MS, ctx[0])
                agg = daily.get(k)
                if agg is None:
                    daily[k] = [1, t_ms, t_ms]
                else:
                    agg[0] += 1
                    if t_ms > agg[2]:
                        agg[2] = t_ms
                    elif t_ms < agg[1]:
                        agg[1] = t_ms
        times = [r[0] for r in raws]
        c.executemany("INSERT INTO hits VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        c.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  (batch, first_seq, seq, len(rows), min(times), max(times), now_ms, prev,
                   sealer.sealed_key if sealer is not None else None))
        c.execute("INSERT INTO chain (id, seq, link) VALUES (1, ?, ?) "
                  "ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, link = excluded.link", (seq, prev))
        self._add_daily(c, daily)
        self._head = (seq, prev)
        self._batch_id = batch
        return len(rows)

    def _add_daily(self, c: sqlite3.Connection, daily: dict[tuple[int, int], list[int]]) -> None:
        """Per (day, context) counts -> the daily table's (day, node, order, zone, action) rows."""
        info = {i: (zone, order or "", action) for _k, (i, _c, zone, order, action) in self._ctx.items()}
        merged: dict[tuple[str, str, str, str], list[int]] = {}
        for (d, ctx), (n, first, last) in daily.items():
            zone, order, action = info[ctx]
            key = (day_of(d * DAY_MS), order, zone, action)
            cur = merged.get(key)
            if cur is None:
                merged[key] = [n, first, last]
            else:
                cur[0] += n
                cur[1] = min(cur[1], first)
                cur[2] = max(cur[2], last)
        c.executemany("INSERT INTO daily VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                      "ON CONFLICT(day, node, order_ref, zone, action) DO UPDATE SET hits = hits + excluded.hits, "
                      "first_ms = min(first_ms, excluded.first_ms), last_ms = max(last_ms, excluded.last_ms)",
                      [(k[0], self.node, k[1], k[2], k[3], v[0], v[1], v[2]) for k, v in merged.items()])

    def _context(self, c: sqlite3.Connection, key: tuple[Any, ...], t: Template) -> tuple[int, str, str, str | None,
                                                                                             str]:
        canon = context_canon(self.node, t)
        row = c.execute("SELECT id FROM contexts WHERE canon = ?", (canon,)).fetchone()
        if row is None:
            cur = c.execute("INSERT INTO contexts (canon, node, zone, serial, trigger, rule_owner, action, order_ref) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (canon, self.node, *t[2:]))
            ctx_id = int(cur.lastrowid or 0)
        else:
            ctx_id = int(row[0])
        self._ctx[key] = (ctx_id, canon, t[2], t[7], t[6])
        return self._ctx[key]

    # -- audit --------------------------------------------------------------------------------------

    def append_audit(self, kind: str, at_ms: int, record: dict[str, Any]) -> int:
        """One event on the audit chain (inside the caller's transaction when there is one)."""
        body = hashchain.canonical({"kind": kind, "at_ms": at_ms, "node": self.node, **record})
        with self.tx() as c:
            row = c.execute("SELECT link FROM audit ORDER BY id DESC LIMIT 1").fetchone()
            prev = bytes(row[0]) if row else hashchain.GENESIS
            cur = c.execute("INSERT INTO audit (at_ms, kind, payload, link) VALUES (?, ?, ?, ?)",
                            (at_ms, kind, body, hashchain.link(prev, body)))
            return int(cur.lastrowid or 0)

    def audit(self, limit: int = 100, kind: str | None = None) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT id, payload FROM audit WHERE ? IS NULL OR kind = ? ORDER BY id DESC LIMIT ?",
                                 (kind, kind, limit))
        return [{"id": i, **json.loads(p)} for i, p in rows]

    # -- verifying ----------------------------------------------------------------------------------

    def verify(self, progress: Progress | None = None) -> VerifyReport:
        """Recompute every record's link from its columns, across purged runs (anchored by their
        recorded links), up to the committed head; then the audit chain. Names the first break.
        One read transaction: a writer appending meanwhile is not seen half-way."""
        self.conn.execute("BEGIN")
        try:
            return self._verify(progress)
        finally:
            self.conn.execute("COMMIT")

    def _verify(self, progress: Progress | None) -> VerifyReport:
        gaps = {int(f): (int(last), bytes(lk)) for last, f, lk in
                self.conn.execute("SELECT last_seq, first_seq, link FROM gaps")}
        total = int(self.conn.execute("SELECT count(*) FROM hits").fetchone()[0])
        head_seq, head = self.head()
        prev, expect, n, crossed = hashchain.GENESIS, 1, 0, 0
        canons = {}      # recomputed from the columns queries read, so a changed order_ref shows too
        for i, node, *cols in self.conn.execute("SELECT id, node, zone, serial, trigger, rule_owner, action, "
                                                "order_ref FROM contexts"):
            canons[i] = context_canon(node, ("", 0, *cols))
        rows = self.conn.execute(
            "SELECT seq, time_ms, qname, qtype, transport, batch, client, link, ctx FROM hits ORDER BY seq")
        link = hashchain.link
        for seq, t_ms, qname, qtype, transport, batch, client, stored, ctx in rows:
            canon = canons.get(ctx, "")
            if seq != expect:
                anchor, expect, k = _cross(gaps, expect)
                crossed += k
                if anchor is None or expect != seq:
                    return VerifyReport(False, n, crossed, head_seq, head, expect,
                                        f"records {expect}..{seq - 1} are missing and no purge recorded their removal")
                prev = anchor
            if link(prev, payload(seq, t_ms, qname, qtype, transport, batch,
                                  bytes(client) if client is not None else None, canon)) != bytes(stored):
                return VerifyReport(False, n, crossed, head_seq, head, seq,
                                    "the record does not match its stored link (it, or the link, was changed)")
            prev = bytes(stored)
            expect = seq + 1
            n += 1
            if progress is not None and n % 50_000 == 0:
                progress(n, total)
        if expect <= head_seq:
            anchor, expect, k = _cross(gaps, expect)
            crossed += k
            if anchor is not None:
                prev = anchor
        if expect - 1 != head_seq or prev != head:
            return VerifyReport(False, n, crossed, head_seq, head, expect,
                                f"the committed head is record {head_seq}, but the records end at {expect - 1} "
                                "(the newest records were removed, or the head was changed)")
        if progress is not None:
            progress(total, total)
        audit = hashchain.verify((i, bytes(p), bytes(lk)) for i, p, lk in
                                 self.conn.execute("SELECT id, payload, link FROM audit ORDER BY id"))
        return VerifyReport(audit.ok, n, crossed, head_seq, head, audit=audit)

    # -- holds --------------------------------------------------------------------------------------

    def add_hold(self, *, order_ref: str | None, start_ms: int | None, end_ms: int | None, reason: str,
                 until_ms: int, actor: str, now_ms: int) -> Hold:
        """A legal hold: records it covers are not purged until ``until_ms``. Audited."""
        if order_ref is None and (start_ms is None or end_ms is None):
            raise HoldError("a legal hold needs a scope: an order_ref, a time window (start and end), or both")
        if (start_ms is None) != (end_ms is None):
            raise HoldError("a time window needs both start and end")
        if start_ms is not None and end_ms is not None and end_ms < start_ms:
            raise HoldError("the window ends before it starts")
        if not reason.strip():
            raise HoldError("a legal hold needs a reason (the case, order or request it serves)")
        if until_ms <= now_ms:
            raise HoldError("the hold's end date is not in the future")
        with self.tx() as c:
            cur = c.execute("INSERT INTO holds (order_ref, start_ms, end_ms, reason, until_ms, created_by, "
                            "created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (order_ref, start_ms, end_ms, reason, until_ms, actor, now_ms))
            hold = Hold(int(cur.lastrowid or 0), order_ref, start_ms, end_ms, reason, until_ms, actor, now_ms)
            self.append_audit("hold_created", now_ms, {"hold": hold.to_json()})
        return hold

    def release_hold(self, hold_id: int, *, actor: str, now_ms: int, note: str = "") -> Hold:
        with self.tx() as c:
            h = self.hold(hold_id)
            if h.released_ms is not None:
                raise HoldError(f"legal hold {hold_id} was already released by {h.released_by}")
            c.execute("UPDATE holds SET released_by = ?, released_ms = ? WHERE id = ?", (actor, now_ms, hold_id))
            self.append_audit("hold_released", now_ms, {"hold": hold_id, "by": actor, "note": note})
        return self.hold(hold_id)

    def hold(self, hold_id: int) -> Hold:
        row = self.conn.execute("SELECT * FROM holds WHERE id = ?", (hold_id,)).fetchone()
        if row is None:
            raise HoldError(f"no legal hold {hold_id}")
        return Hold(*row)

    def holds(self, active_at_ms: int | None = None) -> list[Hold]:
        out = [Hold(*r) for r in self.conn.execute("SELECT * FROM holds ORDER BY id")]
        return out if active_at_ms is None else [h for h in out if h.active(active_at_ms)]

    # -- purging ------------------------------------------------------------------------------------

    def purge(self, *, now_ms: int, retention_days: Callable[[str], int], actor: str, chunk: int = 20_000,
              progress: Progress | None = None) -> PurgeReport:
        """Delete records older than their zone's retention unless an active legal hold covers them.
        Each chunk is one transaction with its audit event; every purged run leaves a gap row with
        the link of its last record, so the rest still verifies; batches left empty are deleted with
        their sealed data keys."""
        holds = self.holds(active_at_ms=now_ms)
        ctxs = {int(i): (z, o) for i, z, o in self.conn.execute("SELECT id, zone, order_ref FROM contexts")}
        days = {z: retention_days(z) for z, _ in ctxs.values()}
        cutoff = {i: now_ms - days[z] * DAY_MS for i, (z, _) in ctxs.items()}
        doomed: list[tuple[int, bytes]] = []
        kept, used_holds = 0, set()
        if cutoff:
            horizon = max(cutoff.values())
            ranges = self.conn.execute("SELECT first_seq, last_seq FROM batches WHERE min_time_ms < ? "
                                       "ORDER BY first_seq", (horizon,)).fetchall()
            for a, b in ranges:
                for seq, t_ms, ctx, lk in self.conn.execute(
                        "SELECT seq, time_ms, ctx, link FROM hits WHERE seq BETWEEN ? AND ? ORDER BY seq", (a, b)):
                    if t_ms >= cutoff[ctx]:
                        continue
                    holder = next((h for h in holds if h.covers(ctxs[ctx][1], t_ms)), None)
                    if holder is not None:
                        kept += 1
                        used_holds.add(holder.id)
                        continue
                    doomed.append((int(seq), bytes(lk)))
        runs_total, batches_total = 0, 0
        zones_days = dict(sorted(days.items()))
        for start in range(0, len(doomed), chunk):
            part = doomed[start:start + chunk]
            with self.tx() as c:
                runs = self._purge_runs(c, part)
                emptied = self._drop_empty_batches(c, part[0][0], part[-1][0])
                aid = self.append_audit("purge", now_ms, {
                    "by": actor, "deleted": len(part), "runs": [[a, b] for a, b, _ in runs[:100]],
                    "runs_total": len(runs), "batches_deleted": emptied, "retention_days": zones_days,
                    "part": start // chunk + 1})
                c.execute("UPDATE gaps SET audit = ? WHERE audit IS NULL", (aid,))
            runs_total += len(runs)
            batches_total += emptied
            if progress is not None:
                progress(start + len(part), len(doomed))
        self.append_audit("purge_done", now_ms, {"by": actor, "deleted": len(doomed), "kept_by_holds": kept,
                                                 "holds": sorted(used_holds), "retention_days": zones_days})
        return PurgeReport(len(doomed), kept, runs_total, batches_total, zones_days, tuple(sorted(used_holds)))

    def _purge_runs(self, c: sqlite3.Connection, part: Sequence[tuple[int, bytes]]) -> list[tuple[int, int, bytes]]:
        """Delete these records; merge them with adjacent gaps into runs (first, last, link of last)."""
        gaps = {int(f): (int(last), bytes(lk), int(n)) for last, f, lk, n in
                c.execute("SELECT last_seq, first_seq, link, records FROM gaps")}
        by_last = {v[0]: k for k, v in gaps.items()}
        runs: list[list[Any]] = []          # [first, last, link, records]
        for seq, lk in part:
            if runs and runs[-1][1] + 1 == seq:
                runs[-1][1:4] = [seq, lk, runs[-1][3] + 1]
                continue
            if runs:                        # only existing gaps between the previous run and this record?
                nxt = runs[-1][1] + 1
                while nxt in gaps and gaps[nxt][0] < seq:
                    g = gaps[nxt]
                    runs[-1][1:4] = [g[0], g[1], runs[-1][3] + g[2]]
                    nxt = g[0] + 1
                if nxt == seq:
                    runs[-1][1:4] = [seq, lk, runs[-1][3] + 1]
                    continue
            runs.append([seq, seq, lk, 1])
        for r in runs:
            c.execute("DELETE FROM hits WHERE seq BETWEEN ? AND ?", (r[0], r[1]))
            left = by_last.get(r[0] - 1)             # a gap ending just before: extend it
            if left is not None:
                r[0] = left
                r[3] += gaps[left][2]
            right = gaps.get(r[1] + 1)               # a gap starting just after: its link is the anchor
            if right is not None:
                r[1], r[2], r[3] = right[0], right[1], r[3] + right[2]
            c.execute("DELETE FROM gaps WHERE last_seq BETWEEN ? AND ?", (r[0], r[1]))
            c.execute("INSERT INTO gaps (last_seq, first_seq, records, link) VALUES (?, ?, ?, ?)",
                      (r[1], r[0], r[3], r[2]))
        return [(r[0], r[1], r[2]) for r in runs]

    def _drop_empty_batches(self, c: sqlite3.Connection, lo: int, hi: int) -> int:
        cur = c.execute("DELETE FROM batches WHERE last_seq >= ? AND first_seq <= ? AND NOT EXISTS "
                        "(SELECT 1 FROM hits WHERE seq BETWEEN batches.first_seq AND batches.last_seq)", (lo, hi))
        return int(cur.rowcount)

    # -- reading ------------------------------------------------------------------------------------

    def records(self, *, order_ref: str | None = None, qname: str | None = None, start_ms: int | None = None,
                end_ms: int | None = None) -> Iterator[HitRow]:
        """Records by order reference and/or QNAME inside [start_ms, end_ms], oldest first. Client
        addresses stay sealed (``HitRow.sealed_client``)."""
        name = qname.lower().rstrip(".") + "." if qname is not None else None
        rows = self.conn.execute(
            "SELECT h.seq, h.time_ms, h.qname, h.qtype, h.transport, c.node, c.zone, c.serial, c.trigger, "
            "c.rule_owner, c.action, c.order_ref, h.client, b.sealed_key FROM hits h "
            "JOIN contexts c ON c.id = h.ctx JOIN batches b ON b.id = h.batch "
            "WHERE (?1 IS NULL OR h.ctx IN (SELECT id FROM contexts WHERE order_ref = ?1)) "
            "AND (?2 IS NULL OR h.qname = ?2) AND (?3 IS NULL OR h.time_ms >= ?3) AND (?4 IS NULL OR h.time_ms <= ?4) "
            "ORDER BY h.seq", (order_ref, name, start_ms, end_ms))
        for row in rows:
            client, sealed_key = row[12], row[13]
            sealed = blob(bytes(sealed_key), row[0], bytes(client)) if client is not None and sealed_key else None
            yield HitRow(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10],
                         row[11], sealed)

    def daily(self, order_ref: str, since_day: str | None = None) -> list[dict[str, Any]]:
        """Hits per day (and node, zone, action) for one order: no personal data."""
        q = "SELECT day, node, zone, action, hits, first_ms, last_ms FROM daily WHERE order_ref = ?"
        args: list[Any] = [order_ref]
        if since_day:
            q += " AND day >= ?"
            args.append(since_day)
        return [{"day": d, "node": n, "zone": z, "action": a, "hits": h, "first_ms": f, "last_ms": la}
                for d, n, z, a, h, f, la in self.conn.execute(q + " ORDER BY day, node, zone, action", args)]

    def counts(self) -> dict[str, int]:
        r = self.conn.execute("SELECT (SELECT count(*) FROM hits), (SELECT count(*) FROM batches), "
                              "(SELECT coalesce(sum(records), 0) FROM gaps), (SELECT count(*) FROM holds)").fetchone()
        return {"records": int(r[0]), "batches": int(r[1]), "purged": int(r[2]), "holds": int(r[3])}
