"""Segments (schema 2; since schema 3 their links cover the sealed data key): a batch stored by
column, one row per batch. A log written as rows (schema 1) is migrated and continued with
segments and still verifies end to end, and so is a log of schema 2; purges work record by
record inside a segment without reading an address; HLB2 opens with the compliance key only; what
is written comes back from records() exactly. Real SQLite files."""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
from ipaddress import ip_address
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.public import PrivateKey

from resolver import blocklog
from resolver.blocklog import DAY_MS, PURGED, BlocklogStore, Raw
from resolver.blocklog_seal import ADDR_W, PREFIX, PREFIX2, blob2, open_client, pack_address, seal_column
from resolver.errors import BlocklogError

from .helpers import NO_ORDER, T0, TW42, TW77, raws, template, write_v1

KEY = PrivateKey.generate()
PK = bytes(KEY.public_key)


def mixed(day: int, n: int, start_ms: int = 0) -> list[Raw]:
    """``n`` hits on ``day``: TW42, TW77 and order-less in turn."""
    tpls = (TW42, TW77, NO_ORDER)
    return [(t, ip, port, (tpls[i % 3],), tr) for i, (t, ip, port, _, tr) in enumerate(raws(day, n, start_ms=start_ms))]


def test_a_v1_log_migrated_and_continued_with_segments_verifies(tmp_path: Path) -> None:
    path = str(tmp_path / "b.sqlite")
    write_v1(path, "edge-1", [(mixed(0, 6), T0), (mixed(1, 6), T0 + DAY_MS)], PK)
    store = BlocklogStore(path, node="edge-1")
    assert store.schema_version() == 3 and store.head()[0] == 12
    assert store.verify().ok
    store.write_batch(mixed(2, 6), now_ms=T0 + 2 * DAY_MS, public_key=PK)
    v6 = (T0 + 2 * DAY_MS + 5, "2001:db8::7", 53124, (TW77, NO_ORDER), "tcp")
    store.write_batch([*mixed(2, 3, start_ms=1000), v6], now_ms=T0 + 2 * DAY_MS + 10, public_key=PK)
    rows = list(store.records())
    assert [r.seq for r in rows] == list(range(1, 24))
    assert [r.sealed_client[:4] for r in rows] == [PREFIX] * 12 + [PREFIX2] * 11    # type: ignore[index]
    assert open_client(KEY, rows[3].sealed_client) == ("198.51.100.4", 1027)       # type: ignore[arg-type]
    assert open_client(KEY, rows[15].sealed_client) == ("198.51.100.4", 1027)      # type: ignore[arg-type]
    assert [(r.transport, r.order_ref, open_client(KEY, r.sealed_client)) for r in rows[-2:]] == [  # type: ignore
        ("tcp", "TW-2026-0077", ("2001:db8::7", 53124)), ("tcp", None, ("2001:db8::7", 53124))]
    assert [r.seq for r in store.records(order_ref="TW-2026-0042")] == [1, 4, 7, 10, 13, 16, 19]
    report = store.verify()
    assert report.ok and report.records == 23 and report.head_seq == 23, report
    assert sum(d["hits"] for d in store.daily("TW-2026-0042")) == 7
    assert store.counts() == {"records": 23, "batches": 4, "purged": 0, "holds": 0}

    # a purge across the boundary: a hold keeps TW77 everywhere; the rest of days 0..2 goes
    hold = store.add_hold(order_ref="TW-2026-0077", start_ms=None, end_ms=None, reason="case 1",
                          until_ms=T0 + 99 * DAY_MS, actor="a", now_ms=T0)
    report = store.purge(now_ms=T0 + 3 * DAY_MS, retention_days=lambda z: 0, actor="t", chunk=4)
    assert report.holds == (hold.id,) and report.kept_by_holds == 8 and report.deleted == 15
    kept = list(store.records())
    assert {r.order_ref for r in kept} == {"TW-2026-0077"} and len(kept) == 8
    assert all(open_client(KEY, r.sealed_client)[0] for r in kept)                 # type: ignore[arg-type]
    check = store.verify()
    assert check.ok and check.records == 8, check
    # and the chain goes on
    store.write_batch(mixed(4, 2), now_ms=T0 + 4 * DAY_MS, public_key=None)
    assert store.verify().ok and store.head()[0] == 25
    # the segments still name a changed v1 record, and a changed segment record
    store.conn.execute("UPDATE hits SET time_ms = time_ms + 1 WHERE seq = 2")
    assert store.verify().first_bad == 2
    store.conn.execute("UPDATE hits SET time_ms = time_ms - 1 WHERE seq = 2")
    store.conn.execute("UPDATE templates SET qtype = 28 WHERE id = 2")
    assert store.verify().first_bad == 14


def test_per_record_purge_inside_a_segment_with_a_hold_on_one_order(tmp_path: Path) -> None:
    store = BlocklogStore(str(tmp_path / "b.sqlite"), node="edge-1")
    store.write_batch(mixed(0, 9), now_ms=T0, public_key=PK)
    store.write_batch(mixed(5, 3), now_ms=T0 + 5 * DAY_MS, public_key=PK)
    hold = store.add_hold(order_ref="TW-2026-0042", start_ms=None, end_ms=None, reason="case 2",
                          until_ms=T0 + 10 * DAY_MS, actor="a", now_ms=T0)
    before = store.conn.execute("SELECT addrs, leaves FROM segments WHERE id = 1").fetchone()
    reads: list[tuple[str, str]] = []

    def authorizer(action: int, table: str | None, column: str | None, _db: str | None, _trigger: str | None) -> int:
        if action == sqlite3.SQLITE_READ and table == "segments":
            reads.append((table, column or ""))
        return sqlite3.SQLITE_OK
    store.conn.set_authorizer(authorizer)
    report = store.purge(now_ms=T0 + 2 * DAY_MS, retention_days=lambda z: 1, actor="t")
    store.conn.set_authorizer(None)
    assert reads and ("segments", "addrs") not in reads             # the purge never read an address
    # the hold on TW42 kept TW42 only; the other orders' records went, the newer segment stayed whole
    assert report.deleted == 6 and report.kept_by_holds == 3 and report.holds == (hold.id,)
    assert [(r.seq, r.order_ref) for r in store.records()] == [
        (1, "TW-2026-0042"), (4, "TW-2026-0042"), (7, "TW-2026-0042"), (10, "TW-2026-0042"), (11, "TW-2026-0077"),
        (12, None)]
    assert [open_client(KEY, r.sealed_client) for r in store.records(end_ms=T0 + DAY_MS)] == [  # type: ignore
        ("198.51.100.1", 1024), ("198.51.100.4", 1027), ("198.51.100.7", 1030)]
    live, times, tpls, addrs, leaves = store.conn.execute(
        "SELECT live, times, tpls, addrs, leaves FROM segments WHERE id = 1").fetchone()
    assert live == 3 and leaves == before[1]                         # every leaf digest stays
    for i in range(9):
        gone = i % 3 != 0
        assert (int.from_bytes(tpls[4 * i:4 * i + 4], "little") == PURGED) == gone
        assert (addrs[ADDR_W * i:ADDR_W * (i + 1)] == bytes(ADDR_W)) == gone
        assert (addrs[ADDR_W * i:ADDR_W * (i + 1)] == before[0][ADDR_W * i:ADDR_W * (i + 1)]) != gone
        assert (times[8 * i:8 * i + 8] == bytes(8)) == gone
    check = store.verify()
    assert check.ok and check.records == 6 and check.gaps == 3, check
    assert store.counts() == {"records": 6, "batches": 2, "purged": 6, "holds": 1}
    # the hold ends: the first segment empties, keeping its root and link; its data key goes
    later = store.purge(now_ms=T0 + 11 * DAY_MS, retention_days=lambda z: 100, actor="t")
    assert later.deleted == 0
    later = store.purge(now_ms=T0 + 11 * DAY_MS, retention_days=lambda z: 1, actor="t")
    assert later.deleted == 6 and later.batches_deleted == 2 and later.kept_by_holds == 0
    assert store.conn.execute("SELECT count(*) FROM segments WHERE sealed_key IS NOT NULL OR times IS NOT NULL OR "
                              "addrs IS NOT NULL OR leaves IS NOT NULL").fetchone()[0] == 0
    check = store.verify()
    assert check.ok and check.records == 0 and check.gaps == 1, check
    store.write_batch(mixed(12, 2), now_ms=T0 + 12 * DAY_MS, public_key=PK)
    assert store.verify().ok
    # an emptied segment whose root was changed breaks its link
    store.conn.execute("UPDATE segments SET root = zeroblob(32) WHERE id = 1")
    assert store.verify().first_bad == 1


def test_hlb2_round_trip_and_not_with_another_key() -> None:
    addresses = [("198.51.100.7", 53124), ("2001:db8::1", 1), ("203.0.113.250", 65535), ("192.0.2.1", 0),
                 ("2001:db8:ffff::53", 853)] * 3          # 15 records: offsets cross ChaCha20 block boundaries
    plain = b"".join(pack_address(ip, port) for ip, port in addresses)
    sealed_key, ct = seal_column(PK, plain)
    assert len(ct) == len(plain) and plain[1:5] not in ct
    for i, want in enumerate(addresses):
        b = blob2(sealed_key, i, ct[i * ADDR_W:(i + 1) * ADDR_W])
        assert b.startswith(PREFIX2) and open_client(KEY, b) == want
        with pytest.raises(BlocklogError, match="does not open with this key"):
            open_client(PrivateKey.generate(), b)
    # another record's bytes under this record's index: random bytes, refused
    wrong = blob2(sealed_key, 0, ct[ADDR_W:2 * ADDR_W])
    with pytest.raises(BlocklogError, match="does not open"):
        open_client(KEY, wrong)


@pytest.mark.parametrize("bad", ["not-an-ip", "198.51.100.300", ""])
def test_a_record_without_an_ip_address_is_refused(tmp_path: Path, bad: str) -> None:
    store = BlocklogStore(str(tmp_path / "b.sqlite"), node="edge-1")
    with pytest.raises(BlocklogError, match="not an IP address"):
        store.write_batch([(T0, bad, 53, (TW42,), "udp")], now_ms=T0, public_key=PK)
    assert store.counts()["records"] == 0 and store.verify().ok


TEMPLATES = [TW42, TW77, NO_ORDER, template("TW-2026-0100", "x.test.", qtype=28, zone="twnic.rpz.test.")]
address = st.one_of(st.integers(1, 254).map(lambda i: f"198.51.100.{i}"),
                    st.integers(0, 0xFFFF).map(lambda i: f"2001:db8::{i:x}"))
record = st.tuples(st.integers(0, 3 * DAY_MS), address, st.integers(0, 65535),
                   st.lists(st.sampled_from(TEMPLATES), min_size=1, max_size=3).map(tuple),
                   st.sampled_from(["udp", "tcp"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(record, min_size=1, max_size=12), min_size=1, max_size=3), st.booleans())
def test_segments_give_back_what_was_written(batches: list[list[tuple]], sealed: bool) -> None:
    with tempfile.TemporaryDirectory() as d:
        store = BlocklogStore(str(Path(d) / "b.sqlite"), node="n")
        want = []
        for b in batches:
            rs = [(T0 + t, ip, port, tpls, tr) for t, ip, port, tpls, tr in b]
            store.write_batch(rs, now_ms=T0, public_key=PK if sealed else None)
            want += [(T0 + t, ip, port, tpl, tr) for t, ip, port, tpls, tr in b for tpl in tpls]
        got = list(store.records())
        assert [r.seq for r in got] == list(range(1, len(want) + 1))
        for r, (t, ip, port, tpl, tr) in zip(got, want, strict=True):
            assert (r.time_ms, r.qname, r.qtype, r.transport, r.node, r.zone, r.serial, r.trigger, r.rule_owner,
                    r.action, r.order_ref) == (t, tpl[0], tpl[1], tr, "n", *tpl[2:])
            if sealed:
                got_ip, got_port = open_client(KEY, r.sealed_client)            # type: ignore[arg-type]
                assert (ip_address(got_ip), got_port) == (ip_address(ip), port)   # (as the text the kernel's gives)
            else:
                assert r.sealed_client is None
        report = store.verify()
        assert report.ok and report.records == len(want), report
        orders = {t[7] or "" for t in TEMPLATES}
        assert sum(d["hits"] for o in orders for d in store.daily(o)) == len(want)
        for o in ("TW-2026-0042", "TW-2026-0100"):
            assert [r.seq for r in store.records(order_ref=o)] == [r.seq for r in got if r.order_ref == o]
        lo, hi = T0 + DAY_MS, T0 + 2 * DAY_MS
        assert [r.seq for r in store.records(start_ms=lo, end_ms=hi)] == \
            [r.seq for r in got if lo <= r.time_ms <= hi]
        store.close()


def test_a_v1_log_read_without_migrating_it(tmp_path: Path) -> None:
    """``log verify`` and the admin API open the log read-only: a log of schema 1 that no writer
    migrated yet reads and verifies as it is."""
    path = str(tmp_path / "b.sqlite")
    write_v1(path, "edge-1", [(mixed(0, 4), T0)], PK)
    ro = BlocklogStore(path, readonly=True)
    assert ro.schema_version() == 1
    assert [r.seq for r in ro.records()] == [1, 2, 3, 4]
    assert open_client(KEY, next(ro.records()).sealed_client) == ("198.51.100.1", 1024)  # type: ignore[arg-type]
    assert ro.verify().ok and ro.counts()["records"] == 4
    ro.conn.close()
    c = sqlite3.connect(path)
    c.execute("UPDATE hits SET qtype = 28 WHERE seq = 3")
    c.commit()
    c.close()
    assert BlocklogStore(path, readonly=True).verify().first_bad == 3


def test_daily_counts_many_names_of_one_order_across_days(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from resolver.blocklog import DAY_MS, BlocklogStore, day_of
    store = BlocklogStore(str(tmp_path / "daily.sqlite"), node="edge-1")
    day0 = 20_000 * DAY_MS
    def tpl(i: int, order: str | None, action: str = "nxdomain"):  # type: ignore[no-untyped-def]
        return (f"n{i}.fraud.test.", 1, "hotline.rpz.test.", 7, "QNAME", "*.fraud.test.hotline.rpz.test.", action,
                order)
    raws = [(day0 + 1000 + i, "192.0.2.1", 1000 + i, (tpl(i, "TW-1"),), "udp") for i in range(300)]
    raws += [(day0 + DAY_MS + 5 + i, "192.0.2.2", 2000, (tpl(i, "TW-1"),), "udp") for i in range(40)]
    raws += [(day0 + 7, "192.0.2.3", 3000, (tpl(1, "TW-1", "nodata"),), "udp"),
             (day0 + 9, "192.0.2.3", 3001, (tpl(2, None),), "udp")]
    assert store.write_batch(raws, now_ms=day0 + 2 * DAY_MS, public_key=None) == len(raws)
    rows = {(d["day"], d["action"]): (d["hits"], d["first_ms"], d["last_ms"]) for d in store.daily("TW-1")}
    assert rows == {(day_of(day0), "nxdomain"): (300, day0 + 1000, day0 + 1299),
                    (day_of(day0), "nodata"): (1, day0 + 7, day0 + 7),
                    (day_of(day0 + DAY_MS), "nxdomain"): (40, day0 + DAY_MS + 5, day0 + DAY_MS + 44)}
    assert [(d["hits"], d["first_ms"]) for d in store.daily("")] == [(1, day0 + 9)]


def test_a_schema_2_log_continues_with_segments_whose_links_cover_their_sealed_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Segments written before schema 3 keep their links (no key digest); those written after
    cover their sealed data key; purges empty both kinds and the log still verifies."""
    path = str(tmp_path / "b.sqlite")
    monkeypatch.setattr(blocklog, "MIGRATIONS", blocklog.MIGRATIONS[:2])
    old = BlocklogStore(path, node="edge-1")
    old.write_batch(mixed(0, 6), now_ms=T0, public_key=PK)
    assert old.schema_version() == 2 and old.verify().ok
    old.close()
    monkeypatch.undo()
    store = BlocklogStore(path, node="edge-1")
    assert store.schema_version() == 3 and store.verify().ok
    store.write_batch(mixed(1, 6), now_ms=T0 + DAY_MS, public_key=PK)
    rows = store.conn.execute("SELECT sealed_key, key_digest FROM segments ORDER BY id").fetchall()
    assert rows[0][1] is None and bytes(rows[1][1]) == hashlib.sha256(bytes(rows[1][0])).digest()
    assert store.verify().ok
    assert [open_client(KEY, r.sealed_client) for r in store.records()][6:] == [  # type: ignore[arg-type]
        (r[1], r[2]) for r in mixed(1, 6)]
    for days in (181, 182):             # the schema 2 segment emptied, then the schema 3 one
        store.purge(now_ms=T0 + days * DAY_MS + 1000, retention_days=lambda zone: 180, actor="test")
        assert store.verify().ok, store.verify()
    assert store.counts()["records"] == 0
    assert store.conn.execute("SELECT sealed_key IS NULL, key_digest IS NOT NULL FROM segments WHERE id = 2"
                              ).fetchone() == (1, 1)
    store.close()
