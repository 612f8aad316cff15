"""The feed state database: the ONE module that owns its SQLite schema.

``<state_dir>/feeds/feedsync.db`` (WAL) holds, per node:

    feed_state   one row per feed: last-known-good version, last success/failure, alarms
    audit        hash-chained, append-only: one record per applied / refused / held / approved /
                 reverted version and per alarm (rpz.hashchain: link_i = H(link_{i-1} || H(payload_i)))
    holds        versions held by the blast-radius guard, and operator approvals
    receipts     Ed25519-signed apply receipts, and whether they reached the hotline
    order_spans  per feed and order reference, each run of applied versions that held the order:
                 from which serial and time, until which (open while it is still in force)

A state change and its audit record commit in one transaction (STYLE.md habit 12). Migrations are
explicit, numbered, and recorded in ``PRAGMA user_version``.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from typing import Any

import orjson

from rpz import hashchain
from rpz.sqlitetx import immediate

from .errors import StateError

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE feed_state (
        feed TEXT PRIMARY KEY,
        serial INTEGER,                -- feed serial of the last-known-good version (SOA / bundle sequence)
        zone_serial INTEGER,           -- SOA serial of the compiled zone the resolver loads
        digest TEXT,                   -- sha256 of the verified source of the last-known-good version
        version TEXT,                  -- versions/<version>.rpz is the last-known-good
        applied_at REAL,
        entries INTEGER DEFAULT 0,     -- entries (bundle) or rule owners (xfr) accepted
        in_force INTEGER DEFAULT 0,    -- of those, enforced now
        rejected TEXT DEFAULT '[]',    -- JSON list of entry rejections of the last-known-good
        next_change_at REAL,           -- when an entry of the last-known-good starts or ends
        first_attempt_at REAL,
        last_attempt_at REAL,
        last_success_at REAL,          -- last refresh that reached the source and verified (or no change)
        last_failure_at REAL,
        last_failure_code TEXT,
        last_failure_detail TEXT,
        alarm TEXT,                    -- FEED_STALE / FEED_EXPIRED while it lasts
        soa_refresh INTEGER, soa_retry INTEGER, soa_expire INTEGER
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        feed TEXT NOT NULL,
        serial INTEGER,
        kind TEXT NOT NULL,            -- applied | refused | held | approved | reverted | expiry | alarm | failed
        at REAL NOT NULL,
        payload BLOB NOT NULL,         -- rpz.hashchain.canonical(record)
        link BLOB NOT NULL
    );
    CREATE INDEX audit_feed ON audit(feed, id);
    CREATE TABLE holds (
        feed TEXT NOT NULL,
        serial INTEGER NOT NULL,
        digest TEXT NOT NULL,
        held_at REAL NOT NULL,
        added INTEGER NOT NULL,
        removed INTEGER NOT NULL,
        share REAL NOT NULL,
        status TEXT NOT NULL,          -- held | approved | applied | superseded
        approved_by TEXT,
        approved_at REAL,
        PRIMARY KEY (feed, serial, digest)
    );
    CREATE TABLE receipts (
        id INTEGER PRIMARY KEY,
        feed TEXT NOT NULL,
        serial INTEGER NOT NULL,
        applied_at REAL NOT NULL,
        body BLOB NOT NULL,            -- canonical JSON that was signed
        signature TEXT NOT NULL,       -- base64 Ed25519
        key_id TEXT NOT NULL,
        pushed_at REAL,
        push_error TEXT
    );
    CREATE INDEX receipts_feed ON receipts(feed, applied_at);
    """,
    # 2: an operator may pin a feed to a kept version (`feed pin`); new versions wait until `feed unpin`
    """
    ALTER TABLE feed_state ADD COLUMN pinned_by TEXT;
    ALTER TABLE feed_state ADD COLUMN pinned_at REAL;
""",
    # 3: which applied versions held each order (the hotline asks "since when is order X enforced")
    """
    CREATE TABLE order_spans (
        feed TEXT NOT NULL,
        order_ref TEXT NOT NULL,
        serial INTEGER NOT NULL,       -- first feed serial of this span
        zone_serial INTEGER,
        version TEXT,
        applied_at REAL NOT NULL,
        last_serial INTEGER NOT NULL,  -- newest applied serial that still held it
        ended_serial INTEGER,          -- the first applied serial without it (NULL: still in force)
        ended_at REAL,
        action TEXT NOT NULL,
        targets TEXT NOT NULL,         -- JSON list of up to 5 rule owners, relative to the zone
        rules INTEGER NOT NULL,
        PRIMARY KEY (feed, order_ref, serial)
    );
    CREATE INDEX order_spans_ref ON order_spans(order_ref, applied_at);
"""
)


def _json_list(items: Sequence[str]) -> str:
    """A compact JSON list of strings (what json.dumps gives with separators=(",", ":"))."""
    return orjson.dumps(list(items)).decode()


@dataclass(slots=True)
class FeedState:
    feed: str
    serial: int | None = None
    zone_serial: int | None = None
    digest: str | None = None
    version: str | None = None
    applied_at: float | None = None
    entries: int = 0
    in_force: int = 0
    rejected: str = "[]"
    next_change_at: float | None = None
    first_attempt_at: float | None = None
    last_attempt_at: float | None = None
    last_success_at: float | None = None
    last_failure_at: float | None = None
    last_failure_code: str | None = None
    last_failure_detail: str | None = None
    alarm: str | None = None
    soa_refresh: int | None = None
    soa_retry: int | None = None
    soa_expire: int | None = None
    pinned_by: str | None = None        # set while an operator pins the feed to its current version
    pinned_at: float | None = None

    @property
    def rejected_list(self) -> list[dict[str, Any]]:
        return list(json.loads(self.rejected or "[]"))


_STATE_COLS = tuple(f.name for f in fields(FeedState))


@dataclass(frozen=True, slots=True)
class Hold:
    feed: str
    serial: int
    digest: str
    held_at: float
    added: int
    removed: int
    share: float
    status: str
    approved_by: str | None
    approved_at: float | None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    feed: str
    serial: int | None
    kind: str
    at: float
    record: dict[str, Any]


class StateDB:
    """One connection; use ``with db.tx():`` for a write that must commit with its audit record."""

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        try:
            self.conn = sqlite3.connect(path, timeout=30, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except sqlite3.Error as exc:
            raise StateError(f"{path}: cannot open the feed state database: {exc}") from exc

    def close(self) -> None:
        self.conn.close()

    def _migrate(self) -> None:
        (have,) = self.conn.execute("PRAGMA user_version").fetchone()
        if have > len(MIGRATIONS):
            raise StateError(f"{self.path}: schema version {have} is newer than this program knows "
                             f"({len(MIGRATIONS)}); upgrade hotline-edge")
        for n in range(have, len(MIGRATIONS)):
            with self.tx():
                for stmt in MIGRATIONS[n].split(";"):
                    if stmt.strip():
                        self.conn.execute(stmt)
                self.conn.execute(f"PRAGMA user_version = {n + 1}")

    def tx(self) -> AbstractContextManager[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error): writers serialize, readers go on."""
        return immediate(self.conn)

    # --- feed state ------------------------------------------------------------------------------

    def state(self, feed: str) -> FeedState:
        row = self.conn.execute(f"SELECT {', '.join(_STATE_COLS)} FROM feed_state WHERE feed = ?",  # noqa: S608 (fixed columns)
                                (feed,)).fetchone()
        return FeedState(*row) if row else FeedState(feed)

    def save_state(self, st: FeedState) -> None:
        cols = ", ".join(_STATE_COLS)
        marks = ", ".join("?" for _ in _STATE_COLS)
        with self.tx() as c:
            c.execute(f"INSERT OR REPLACE INTO feed_state ({cols}) VALUES ({marks})",  # noqa: S608 (fixed columns)
                      tuple(getattr(st, k) for k in _STATE_COLS))

    # --- audit -----------------------------------------------------------------------------------

    def append_audit(self, feed: str, serial: int | None, kind: str, at: float, record: Mapping[str, Any]) -> int:
        """Append one record to the chain (inside the caller's transaction when there is one)."""
        body = {"feed": feed, "serial": serial, "kind": kind, "at": round(at, 3), **record}
        payload = hashchain.canonical(body)
        with self.tx() as c:
            row = c.execute("SELECT link FROM audit ORDER BY id DESC LIMIT 1").fetchone()
            prev = bytes(row[0]) if row else hashchain.GENESIS
            cur = c.execute("INSERT INTO audit (feed, serial, kind, at, payload, link) VALUES (?, ?, ?, ?, ?, ?)",
                            (feed, serial, kind, at, payload, hashchain.link(prev, payload)))
            return int(cur.lastrowid or 0)

    def audit(self, feed: str | None = None, limit: int | None = None, kind: str | None = None
              ) -> list[AuditRecord]:
        where, args = _where(("feed = ?", feed or None), ("kind = ?", kind or None))
        q = "SELECT id, feed, serial, kind, at, payload FROM audit"
        q += where + " ORDER BY id DESC"
        if limit:
            q += f" LIMIT {int(limit)}"
        return [AuditRecord(i, f, s, k, a, json.loads(p)) for i, f, s, k, a, p in self.conn.execute(q, args)]

    def verify_audit(self) -> hashchain.ChainCheck:
        rows = self.conn.execute("SELECT id, payload, link FROM audit ORDER BY id")
        return hashchain.verify((i, bytes(p), bytes(lk)) for i, p, lk in rows)

    def refusal_counts(self) -> dict[tuple[str, str], int]:
        rows = self.conn.execute(
            "SELECT feed, json_extract(CAST(payload AS TEXT), '$.code'), count(*) FROM audit "
            "WHERE kind IN ('refused', 'alarm') GROUP BY 1, 2")
        return {(feed, code or ""): n for feed, code, n in rows}

    # --- holds -----------------------------------------------------------------------------------

    def hold(self, feed: str, serial: int, digest: str, *, at: float, added: int, removed: int, share: float) -> bool:
        """Record a hold; False when this exact version is already held (or decided)."""
        with self.tx() as c:
            if c.execute("SELECT 1 FROM holds WHERE feed=? AND serial=? AND digest=?",
                         (feed, serial, digest)).fetchone():
                return False
            c.execute("UPDATE holds SET status='superseded' WHERE feed=? AND status='held'", (feed,))
            c.execute("INSERT INTO holds VALUES (?, ?, ?, ?, ?, ?, ?, 'held', NULL, NULL)",
                      (feed, serial, digest, at, added, removed, share))
            return True

    def holds(self, feed: str | None = None, status: str | None = None) -> list[Hold]:
        where, args = _where(("feed = ?", feed or None), ("status = ?", status or None))
        q = "SELECT * FROM holds"
        q += where + " ORDER BY held_at"
        return [Hold(*r) for r in self.conn.execute(q, args)]

    def approve(self, feed: str, serial: int | None, by: str, at: float) -> Hold | None:
        """Approve the held version (the given serial, or the current hold). Audited."""
        with self.tx() as c:
            q = "SELECT * FROM holds WHERE feed=? AND status='held'"
            args: list[Any] = [feed]
            if serial is not None:
                q += " AND serial=?"
                args.append(serial)
            row = c.execute(q + " ORDER BY held_at DESC LIMIT 1", args).fetchone()
            if row is None:
                return None
            h = Hold(*row)
            c.execute("UPDATE holds SET status='approved', approved_by=?, approved_at=? WHERE feed=? AND serial=? "
                      "AND digest=?", (by, at, feed, h.serial, h.digest))
            self.append_audit(feed, h.serial, "approved", at, {
                "digest": h.digest, "approved_by": by, "added": h.added, "removed": h.removed,
                "share": round(h.share, 4)})
            return Hold(feed, h.serial, h.digest, h.held_at, h.added, h.removed, h.share, "approved", by, at)

    def approval(self, feed: str, serial: int, digest: str) -> Hold | None:
        row = self.conn.execute("SELECT * FROM holds WHERE feed=? AND serial=? AND digest=? AND status='approved'",
                                (feed, serial, digest)).fetchone()
        return Hold(*row) if row else None

    def mark_hold_applied(self, feed: str, serial: int, digest: str) -> None:
        with self.tx() as c:
            c.execute("UPDATE holds SET status='applied' WHERE feed=? AND serial=? AND digest=?",
                      (feed, serial, digest))

    # --- orders ----------------------------------------------------------------------------------

    def record_orders(self, feed: str, serial: int, zone_serial: int | None, version: str | None, at: float,
                      orders: Mapping[str, Any]) -> tuple[int, int]:
        """The version ``serial`` now applied holds ``orders`` ({order_ref: feedsync.orders.OrderRules}):
        open a span for each order not in force before, close the spans of orders it dropped, refresh
        the rest. Returns (opened, closed)."""
        dumps = _json_list
        with self.tx() as c:
            open_now = {ref: (s, a, t, n, last) for ref, s, a, t, n, last in c.execute(
                "SELECT order_ref, serial, action, targets, rules, last_serial FROM order_spans "
                "WHERE feed = ? AND ended_at IS NULL", (feed,))}
            c.execute("UPDATE order_spans SET last_serial = ? WHERE feed = ? AND ended_at IS NULL", (serial, feed))
            changed, new = [], []
            for ref, o in orders.items():
                targets = dumps(o.targets)
                cur = open_now.get(ref)
                if cur is None:
                    new.append((feed, ref, serial, zone_serial, version, at, serial, o.action, targets, o.rules))
                elif (cur[1], cur[2], cur[3]) != (o.action, targets, o.rules):
                    changed.append((o.action, targets, o.rules, feed, ref, cur[0]))
            c.executemany("UPDATE order_spans SET action = ?, targets = ?, rules = ? WHERE feed = ? AND order_ref = ? "
                          "AND serial = ?", changed)
            c.executemany("INSERT OR REPLACE INTO order_spans (feed, order_ref, serial, zone_serial, version, "
                          "applied_at, last_serial, action, targets, rules) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", new)
            ended = [(serial, at, cur[4], feed, ref, cur[0]) for ref, cur in open_now.items() if ref not in orders]
            c.executemany("UPDATE order_spans SET ended_serial = ?, ended_at = ?, last_serial = ? WHERE feed = ? "
                          "AND order_ref = ? AND serial = ?", ended)
        return len(new), len(ended)

    def order_history(self, order_ref: str, feed: str | None = None) -> list[dict[str, Any]]:
        """Every span of applied versions that held ``order_ref``, oldest first (all feeds, or one)."""
        q = ("SELECT feed, serial, zone_serial, version, applied_at, last_serial, ended_serial, ended_at, action, "
             "targets, rules FROM order_spans WHERE order_ref = ?")
        args: list[Any] = [order_ref]
        if feed:
            q += " AND feed = ?"
            args.append(feed)
        return [{"feed": f, "serial": s, "zone_serial": zs, "version": v, "applied_at": a, "last_serial": ls,
                 "ended_serial": es, "ended_at": ea, "action": act, "targets": json.loads(t), "rules": n}
                for f, s, zs, v, a, ls, es, ea, act, t, n in self.conn.execute(q + " ORDER BY applied_at, feed", args)]

    # --- receipts --------------------------------------------------------------------------------

    def add_receipt(self, feed: str, serial: int, applied_at: float, body: bytes, *, signature: str,
                    key_id: str) -> int:
        with self.tx() as c:
            cur = c.execute("INSERT INTO receipts (feed, serial, applied_at, body, signature, key_id) "
                            "VALUES (?, ?, ?, ?, ?, ?)", (feed, serial, applied_at, body, signature, key_id))
            return int(cur.lastrowid or 0)

    def receipts(self, feed: str | None = None, since: float | None = None, unpushed: bool = False
                 ) -> list[dict[str, Any]]:
        where, args = _where(("feed = ?", feed or None), ("applied_at >= ?", since),
                             ("pushed_at IS NULL", True if unpushed else None))
        q = "SELECT id, feed, serial, applied_at, body, signature, key_id, pushed_at, push_error FROM receipts"
        q += where
        out = []
        for i, f, s, a, body, sig, kid, pushed, err in self.conn.execute(q + " ORDER BY id", args):
            out.append({"id": i, "feed": f, "serial": s, "applied_at": a, "receipt": json.loads(body),
                        "body": bytes(body).decode("utf-8"), "signature": sig, "key_id": kid,
                        "pushed_at": pushed, "push_error": err})
        return out

    def mark_pushed(self, receipt_id: int, at: float | None, error: str | None) -> None:
        with self.tx() as c:
            c.execute("UPDATE receipts SET pushed_at=?, push_error=? WHERE id=?", (at, error, receipt_id))


def _where(*conditions: tuple[str, Any]) -> tuple[str, list[Any]]:
    """`` WHERE a AND b`` of the conditions whose value is not None, and the values of their
    placeholders (a condition without ``?`` takes none)."""
    used = [(sql, value) for sql, value in conditions if value is not None]
    if not used:
        return "", []
    return " WHERE " + " AND ".join(sql for sql, _ in used), [v for sql, v in used if "?" in sql]
