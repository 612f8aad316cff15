"""Synthetic hits for the blocked-lookup log tests (names under .test, addresses from 198.51.100.0/24)."""

from __future__ import annotations

import sqlite3

import sqlite_utils

from resolver.blocklog import DAY_MS, Raw, Template, _m1, context_canon, day_of, payload
from resolver.blocklog_seal import BatchSealer
from rpz import hashchain

T0 = 1_790_000_000_000            # 2026-09-21T12:53:20Z
ZONE = "hotline.rpz.test."


def template(order: str | None, name: str = "csam-site.test.", qtype: int = 1, serial: int = 7,
             action: str = "nxdomain", zone: str = ZONE) -> Template:
    return (name, qtype, zone, serial, "QNAME", name + zone, action, order)


TW42 = template("TW-2026-0042")
TW77 = template("TW-2026-0077", "nodata-order.test.", action="nodata")
NO_ORDER = template(None, "ads.example.test.", action="nxdomain")


def raws(day: int, n: int, tpl: Template = TW42, *, transport: str = "udp", start_ms: int = 0) -> list[Raw]:
    """``n`` hits on ``day`` days after T0, one client each."""
    base = T0 + day * DAY_MS + start_ms
    return [(base + i, f"198.51.100.{i % 250 + 1}", 1024 + i, (tpl,), transport) for i in range(n)]


def write_v1(path: str, node: str, batches: list[tuple[list[Raw], int]], public_key: bytes | None) -> None:
    """A log as version 1 of the store wrote it (schema 1: one row per record, ChaCha20-Poly1305 per
    address, HLB1): the real migration 1 and the record format that ``payload()`` defines, for the
    tests that a migrated v1 log stays readable, verifiable, purgeable and continues with segments."""
    conn = sqlite3.connect(path, isolation_level=None)
    if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
        _m1(sqlite_utils.Database(conn))
        conn.execute("PRAGMA user_version = 1")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1, "write_v1 writes schema 1 logs only"
    row = conn.execute("SELECT seq, link FROM chain WHERE id = 1").fetchone()
    seq, prev = (row[0], bytes(row[1])) if row else (0, hashchain.GENESIS)
    batch = conn.execute("SELECT coalesce(max(id), 0) FROM batches").fetchone()[0]
    for raws_, now_ms in batches:
        batch += 1
        sealer = BatchSealer(public_key) if public_key is not None else None
        first = seq + 1
        daily: dict[tuple[str, str, str, str], list[int]] = {}
        conn.execute("BEGIN IMMEDIATE")
        for t_ms, ip, port, tpls, transport in raws_:
            for t in tpls:
                seq += 1
                canon = context_canon(node, t)
                got = conn.execute("SELECT id FROM contexts WHERE canon = ?", (canon,)).fetchone()
                ctx = got[0] if got else conn.execute(
                    "INSERT INTO contexts (canon, node, zone, serial, trigger, rule_owner, action, order_ref) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (canon, node, *t[2:])).lastrowid
                client = sealer.seal(seq, ip, port) if sealer is not None else None
                prev = hashchain.link(prev, payload(seq, t_ms, t[0], t[1], transport, batch, client, canon))
                conn.execute("INSERT INTO hits VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (seq, t_ms, ctx, t[0], t[1], transport, batch, client, prev))
                agg = daily.setdefault((day_of(t_ms), t[7] or "", t[2], t[6]), [0, t_ms, t_ms])
                agg[0] += 1
                agg[1], agg[2] = min(agg[1], t_ms), max(agg[2], t_ms)
        times = [r[0] for r in raws_]
        conn.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (batch, first, seq, seq - first + 1, min(times), max(times), now_ms, prev,
                      sealer.sealed_key if sealer is not None else None))
        conn.execute("INSERT INTO chain (id, seq, link) VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                     "seq = excluded.seq, link = excluded.link", (seq, prev))
        conn.executemany("INSERT INTO daily VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(day, node, order_ref, zone, "
                         "action) DO UPDATE SET hits = hits + excluded.hits",
                         [(k[0], node, k[1], k[2], k[3], *v) for k, v in daily.items()])
        conn.execute("COMMIT")
    conn.close()
