"""The blocked-lookup log store on a real SQLite file: records, chain, tamper evidence, aggregates,
legal holds, and retention purges across a simulated 181 days (time is always passed in)."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from nacl.public import PrivateKey, SealedBox

from resolver.blocklog import DAY_MS, PAGE_SIZE, BlocklogStore
from resolver.blocklog_seal import open_client
from resolver.errors import BlocklogError, HoldError

from .helpers import NO_ORDER, T0, TW42, TW77, ZONE, raws, template, write_v1

KEY = PrivateKey.generate()
PK = bytes(KEY.public_key)


@pytest.fixture
def store(tmp_path: Path) -> BlocklogStore:
    return BlocklogStore(str(tmp_path / "blocklog.sqlite"), node="edge-1")


def fill_days(store: BlocklogStore, days: int, per_day: int = 4) -> None:
    """One batch per day for ``days`` days: TW42, TW77 and order-less hits alternating."""
    for d in range(days):
        batch = raws(d, per_day, TW42) + raws(d, per_day, TW77, start_ms=100) + raws(d, 1, NO_ORDER, start_ms=200)
        assert store.write_batch(batch, now_ms=T0 + d * DAY_MS + 300, public_key=PK) == 2 * per_day + 1


def keep(days: int):
    return lambda zone: days


def test_records_keep_every_field_and_the_chain_verifies(store: BlocklogStore) -> None:
    n = store.write_batch([*raws(0, 3), (T0 + 5, "2001:db8::7", 53124, (TW77, NO_ORDER), "tcp")], now_ms=T0 + 10,
                          public_key=PK)
    assert n == 5
    rows = list(store.records())
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    r = rows[3]
    assert (r.time_ms, r.qname, r.qtype, r.transport, r.node, r.zone, r.serial, r.trigger, r.action, r.order_ref) == \
        (T0 + 5, "nodata-order.test.", 1, "tcp", "edge-1", ZONE, 7, "QNAME", "nodata", "TW-2026-0077")
    assert r.rule_owner == "nodata-order.test." + ZONE
    assert rows[4].order_ref is None
    assert open_client(KEY, r.sealed_client) == ("2001:db8::7", 53124)
    report = store.verify()
    assert report.ok and report.records == 5 and report.head_seq == 5, report
    assert store.head() == (5, report.head)


def test_the_chain_continues_across_connections(tmp_path: Path) -> None:
    path = str(tmp_path / "b.sqlite")
    a = BlocklogStore(path, node="edge-1")
    a.write_batch(raws(0, 3), now_ms=T0, public_key=PK)
    a.close()
    b = BlocklogStore(path, node="edge-1")
    b.write_batch(raws(1, 2), now_ms=T0 + DAY_MS, public_key=None)
    assert [r.seq for r in b.records()] == [1, 2, 3, 4, 5]
    assert [r.sealed_client is None for r in b.records()] == [False] * 3 + [True] * 2
    assert b.verify().ok


@pytest.fixture
def v1_store(tmp_path: Path) -> BlocklogStore:
    """Six records written by version 1 of the store (rows), then opened (migrated) by this one."""
    path = str(tmp_path / "v1.sqlite")
    write_v1(path, "edge-1", [(raws(0, 6), T0)], PK)
    return BlocklogStore(path, node="edge-1")


@pytest.mark.parametrize(("tamper", "first_bad", "words"), [
    ("UPDATE hits SET qname = 'other.test.' WHERE seq = 3", 3, "does not match"),
    ("UPDATE hits SET time_ms = time_ms + 1 WHERE seq = 2", 2, "does not match"),
    ("UPDATE hits SET client = NULL WHERE seq = 4", 4, "does not match"),
    ("UPDATE contexts SET order_ref = 'TW-2026-9999'", 1, "does not match"),
    ("DELETE FROM hits WHERE seq = 3", 3, "missing and no purge"),
    ("DELETE FROM hits WHERE seq >= 5", 5, "newest records were removed"),
    ("UPDATE hits SET link = zeroblob(32) WHERE seq = 6", 6, "does not match"),
    ("UPDATE segment_anchor SET link = zeroblob(32)", 7, "the anchor was changed"),
])
def test_verify_names_the_first_broken_link_of_rows(v1_store: BlocklogStore, tamper: str, first_bad: int,
                                                    words: str) -> None:
    assert v1_store.schema_version() == 3 and v1_store.verify().ok
    v1_store.conn.execute(tamper)
    report = v1_store.verify()
    assert not report.ok and report.first_bad == first_bad and words in report.reason, report
    assert f"record {first_bad}" in str(report)


def test_a_forged_gap_does_not_hide_a_deletion(v1_store: BlocklogStore) -> None:
    """A gap row claims records were purged: the anchor must be the real link of the last one."""
    v1_store.conn.execute("DELETE FROM hits WHERE seq BETWEEN 2 AND 3")
    v1_store.conn.execute("INSERT INTO gaps (last_seq, first_seq, records, link) VALUES (3, 2, 2, zeroblob(32))")
    report = v1_store.verify()
    assert not report.ok and report.first_bad == 4


def poke(store: BlocklogStore, column: str, seq: int, width: int, value: bytes | None = None) -> None:
    """Change record ``seq``'s ``width`` bytes in a segment's column (flip them, or write ``value``)."""
    seg, first = store.conn.execute("SELECT id, first_seq FROM segments WHERE first_seq <= ? ORDER BY first_seq DESC "
                                    "LIMIT 1", (seq,)).fetchone()
    data = bytearray(store.conn.execute(f"SELECT {column} FROM segments WHERE id = ?", (seg,)).fetchone()[0])
    at = (seq - first) * width
    data[at:at + width] = value if value is not None else bytes(b ^ 0x5A for b in data[at:at + width])
    store.conn.execute(f"UPDATE segments SET {column} = ? WHERE id = ?", (bytes(data), seg))


def other_sealed_key() -> bytes:
    """A well-formed sealed data key that is not the segment's (sealed to the same compliance key)."""
    return bytes(SealedBox(KEY.public_key).encrypt(bytes(range(32))))


def two_segments(store: BlocklogStore) -> None:
    """Records 1..3 and 4..6 (order TW42 for odd, TW77 for even seqs), two segments."""
    mixed = [r if i % 2 == 0 else (r[0], r[1], r[2], (TW77,), r[4]) for i, r in enumerate(raws(0, 6))]
    store.write_batch(mixed[:3], now_ms=T0, public_key=PK)
    store.write_batch(mixed[3:], now_ms=T0 + 1, public_key=PK)


@pytest.mark.parametrize(("tamper", "first_bad", "words"), [
    (lambda s: poke(s, "times", 2, 8, (T0 + 99).to_bytes(8, "little")), 2, "does not match its leaf"),
    (lambda s: poke(s, "tpls", 3, 4, (2).to_bytes(4, "little")), 3, "does not match its leaf"),
    (lambda s: poke(s, "tpls", 3, 4), 3, "template that does not exist"),
    (lambda s: poke(s, "addrs", 4, 19), 4, "does not match its leaf"),
    (lambda s: poke(s, "leaves", 5, 32), 5, "does not match its leaf"),
    (lambda s: poke(s, "tpls", 5, 4, b"\xff" * 4), 5, "no purge recorded"),
    (lambda s: s.conn.execute("UPDATE segments SET link = zeroblob(32) WHERE id = 2"), 4, "does not match its link"),
    (lambda s: s.conn.execute("UPDATE segments SET root = zeroblob(32), leaves = NULL WHERE id = 1"), 1,
     "no purge recorded"),
    (lambda s: s.conn.execute("UPDATE contexts SET order_ref = 'TW-2026-9999' WHERE order_ref = 'TW-2026-0077'"), 2,
     "does not match its leaf"),
    (lambda s: s.conn.execute("UPDATE templates SET qname = 'other.test.' WHERE id = 1"), 1, "does not match its leaf"),
    (lambda s: s.conn.execute("DELETE FROM segments WHERE id = 1"), 1, "a segment was removed"),
    (lambda s: s.conn.execute("DELETE FROM segments WHERE id = 2"), 4, "newest records were removed"),
    (lambda s: s.conn.execute("UPDATE segments SET times = substr(times, 1, 16) WHERE id = 1"), 1,
     "one entry per record"),
    # the sealed data key: another valid one, none, or another with the digest changed to match it
    (lambda s: s.conn.execute("UPDATE segments SET sealed_key = ? WHERE id = 2", (other_sealed_key(),)), 4,
     "sealed data key does not match"),
    (lambda s: s.conn.execute("UPDATE segments SET sealed_key = NULL WHERE id = 1"), 1, "sealed data key is gone"),
    (lambda s: s.conn.execute("UPDATE segments SET sealed_key = NULL, live = 0 WHERE id = 1"), 1,
     "sealed data key is gone"),
    (lambda s: s.conn.execute("UPDATE segments SET sealed_key = ?1, key_digest = sha(?1) WHERE id = 2",
                              (other_sealed_key(),)), 4, "does not match its link"),
    (lambda s: s.conn.execute("UPDATE segments SET key_digest = NULL WHERE id = 2"), 4, "does not match its link"),
])
def test_verify_names_the_first_broken_record_of_segments(store: BlocklogStore, tamper, first_bad: int,
                                                          words: str) -> None:
    two_segments(store)
    assert store.verify().ok
    store.conn.create_function("sha", 1, lambda b: hashlib.sha256(b).digest(), deterministic=True)
    tamper(store)
    report = store.verify()
    assert not report.ok and report.first_bad == first_bad and words in report.reason, report
    assert f"record {first_bad}" in str(report)


def test_daily_aggregates_have_no_personal_data(store: BlocklogStore) -> None:
    fill_days(store, 3)
    days = store.daily("TW-2026-0042")
    assert [(d["day"], d["hits"]) for d in days] == [("2026-09-21", 4), ("2026-09-22", 4), ("2026-09-23", 4)]
    assert days[0]["node"] == "edge-1" and days[0]["zone"] == ZONE and days[0]["action"] == "nxdomain"
    assert days[0]["first_ms"] == T0 and days[0]["last_ms"] == T0 + 3
    cols = {r[1] for r in store.conn.execute("PRAGMA table_info(daily)")}
    assert cols == {"day", "node", "order_ref", "zone", "action", "hits", "first_ms", "last_ms"}
    assert store.daily("") == [] or all(d["action"] == "nxdomain" for d in store.daily(""))


def test_purge_after_181_days_without_a_hold(store: BlocklogStore) -> None:
    fill_days(store, 181)
    now = T0 + 181 * DAY_MS - 1         # day 0 is now older than 180 days, day 1 is not
    report = store.purge(now_ms=now, retention_days=keep(180), actor="test")
    assert report.deleted == 9 and report.kept_by_holds == 0 and report.batches_deleted == 1
    times = [r.time_ms for r in store.records()]
    assert min(times) >= T0 + DAY_MS and len(times) == 180 * 9
    check = store.verify()
    assert check.ok and check.gaps == 1 and check.records == 180 * 9, check
    events = store.audit(kind="purge")
    assert events and events[0]["deleted"] == 9 and events[0]["by"] == "test"
    assert store.audit(kind="purge_done")[0]["retention_days"] == {ZONE: 180}
    # the sealed data key of the purged batch went with it (crypto-shredding)
    assert store.conn.execute("SELECT count(*) FROM segments WHERE min_time_ms < ? AND (sealed_key IS NOT NULL OR "
                              "addrs IS NOT NULL OR times IS NOT NULL)", (T0 + DAY_MS,)).fetchone()[0] == 0


def test_purge_after_181_days_with_a_legal_hold(store: BlocklogStore) -> None:
    fill_days(store, 181)
    hold = store.add_hold(order_ref="TW-2026-0042", start_ms=None, end_ms=None, reason="HE-2026-000001",
                          until_ms=T0 + 200 * DAY_MS, actor="officer:alice", now_ms=T0 + 100 * DAY_MS)
    now = T0 + 181 * DAY_MS - 1
    report = store.purge(now_ms=now, retention_days=keep(180), actor="test")
    assert report.deleted == 5 and report.kept_by_holds == 4 and report.holds == (hold.id,)
    day0 = [r for r in store.records(end_ms=T0 + DAY_MS - 1)]
    assert {r.order_ref for r in day0} == {"TW-2026-0042"} and len(day0) == 4
    assert all(open_client(KEY, r.sealed_client)[0].startswith("198.51.100.") for r in day0)  # key kept for them
    assert store.verify().ok
    # the hold ends; the next daily purge takes what it kept
    later = store.purge(now_ms=T0 + 200 * DAY_MS, retention_days=keep(180), actor="test")
    assert later.kept_by_holds == 0 and later.deleted == 4 + 19 * 9
    assert min(r.time_ms for r in store.records()) >= T0 + 20 * DAY_MS
    check = store.verify()
    assert check.ok and check.gaps == 1, check          # adjacent purged runs merged into one
    assert [e["kind"] for e in store.audit(limit=100)].count("hold_created") == 1


def test_a_window_hold_and_a_released_hold(store: BlocklogStore) -> None:
    fill_days(store, 5)
    window = store.add_hold(order_ref=None, start_ms=T0 + DAY_MS, end_ms=T0 + 2 * DAY_MS - 1, reason="case 7",
                            until_ms=T0 + 400 * DAY_MS, actor="alice", now_ms=T0)
    gone = store.add_hold(order_ref="TW-2026-0077", start_ms=None, end_ms=None, reason="case 8",
                          until_ms=T0 + 400 * DAY_MS, actor="alice", now_ms=T0)
    store.release_hold(gone.id, actor="bob", now_ms=T0 + 2 * DAY_MS)
    with pytest.raises(HoldError, match="already released"):
        store.release_hold(gone.id, actor="bob", now_ms=T0 + 2 * DAY_MS)
    report = store.purge(now_ms=T0 + 4 * DAY_MS, retention_days=keep(1), actor="t")
    assert report.holds == (window.id,)
    left = {(r.time_ms - T0) // DAY_MS for r in store.records()}
    assert left == {1, 3, 4}
    assert store.verify().ok
    assert [h.id for h in store.holds(active_at_ms=T0 + 3 * DAY_MS)] == [window.id]


@pytest.mark.parametrize(("kw", "words"), [
    ({"order_ref": None, "start_ms": None, "end_ms": None}, "needs a scope"),
    ({"order_ref": None, "start_ms": T0, "end_ms": None}, "needs a scope"),
    ({"order_ref": "X", "start_ms": T0, "end_ms": None}, "both start and end"),
    ({"order_ref": "X", "start_ms": T0, "end_ms": T0 - 1}, "ends before"),
    ({"order_ref": "X", "start_ms": None, "end_ms": None, "reason": " "}, "needs a reason"),
    ({"order_ref": "X", "start_ms": None, "end_ms": None, "until_ms": T0}, "not in the future"),
])
def test_bad_holds_are_refused(store: BlocklogStore, kw: dict, words: str) -> None:
    args = {"reason": "case", "until_ms": T0 + DAY_MS, "actor": "alice", "now_ms": T0, **kw}
    with pytest.raises(HoldError, match=words):
        store.add_hold(**args)
    assert store.holds() == []


def test_per_feed_retention(store: BlocklogStore) -> None:
    other = template("TW-2026-0100", zone="twnic.rpz.test.")
    for d in range(10):
        store.write_batch(raws(d, 2, TW42) + raws(d, 2, other, start_ms=50), now_ms=T0 + d * DAY_MS, public_key=None)
    report = store.purge(now_ms=T0 + 10 * DAY_MS, retention_days=lambda z: 3 if z == ZONE else 8, actor="t")
    assert report.cutoffs == {ZONE: 3, "twnic.rpz.test.": 8}
    assert {(r.zone, (r.time_ms - T0) // DAY_MS) for r in store.records()} == \
        {(ZONE, d) for d in range(7, 10)} | {("twnic.rpz.test.", d) for d in range(2, 10)}
    assert store.verify().ok


def test_purge_in_small_chunks_keeps_the_chain(store: BlocklogStore) -> None:
    fill_days(store, 6, per_day=10)
    hold = store.add_hold(order_ref="TW-2026-0077", start_ms=None, end_ms=None, reason="c", until_ms=T0 + 99 * DAY_MS,
                          actor="a", now_ms=T0)
    report = store.purge(now_ms=T0 + 5 * DAY_MS, retention_days=keep(2), actor="t", chunk=3)
    assert report.kept_by_holds == 30 and report.holds == (hold.id,)
    assert store.verify().ok
    assert len(store.audit(limit=1000, kind="purge")) == -(-report.deleted // 3)


def test_everything_purged_then_more_written(store: BlocklogStore) -> None:
    fill_days(store, 2)
    store.purge(now_ms=T0 + 10 * DAY_MS, retention_days=keep(1), actor="t")
    assert store.counts()["records"] == 0
    assert store.verify().ok
    store.write_batch(raws(11, 3), now_ms=T0 + 11 * DAY_MS, public_key=PK)
    check = store.verify()
    assert check.ok and check.records == 3 and check.head_seq == 21


def test_audit_chain_is_verified_too(store: BlocklogStore) -> None:
    store.add_hold(order_ref="X", start_ms=None, end_ms=None, reason="r", until_ms=T0 + 1, actor="a", now_ms=T0)
    store.append_audit("export", T0, {"by": "cli:root", "records": 0})
    assert store.verify().ok
    store.conn.execute("UPDATE audit SET payload = CAST('{}' AS BLOB) WHERE id = 1")
    report = store.verify()
    assert not report.ok and report.audit.first_bad == 1 and "audit chain BROKEN" in str(report)


def test_a_failed_write_keeps_nothing_and_the_next_one_continues(store: BlocklogStore, tmp_path: Path) -> None:
    store.write_batch(raws(0, 2), now_ms=T0, public_key=PK)
    other = sqlite3.connect(str(tmp_path / "blocklog.sqlite"), timeout=0, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")        # someone else holds the write lock
    slow = BlocklogStore(str(tmp_path / "blocklog.sqlite"), node="edge-1", busy_timeout_s=0.05)
    with pytest.raises(BlocklogError, match="cannot write a batch of 2 records"):
        slow.write_batch(raws(1, 2, template("NEW-1")), now_ms=T0 + DAY_MS, public_key=PK)
    other.execute("ROLLBACK")
    slow.write_batch(raws(1, 2, template("NEW-1")), now_ms=T0 + DAY_MS, public_key=PK)
    assert [r.seq for r in slow.records()] == [1, 2, 3, 4]
    assert [r.order_ref for r in slow.records(order_ref="NEW-1")] == ["NEW-1", "NEW-1"]
    assert slow.verify().ok


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "b.sqlite")
    BlocklogStore(path).close()
    c = sqlite3.connect(path)
    c.execute("PRAGMA user_version = 99")
    c.close()
    with pytest.raises(BlocklogError, match="schema version 99 is newer"):
        BlocklogStore(path)


def test_reading_a_missing_log_says_where(tmp_path: Path) -> None:
    with pytest.raises(BlocklogError, match="no blocked-lookup log here"):
        BlocklogStore(str(tmp_path / "none.sqlite"), readonly=True)


def test_records_by_qname_and_window(store: BlocklogStore) -> None:
    fill_days(store, 3)
    got = list(store.records(qname="NODATA-ORDER.test", start_ms=T0 + DAY_MS, end_ms=T0 + 2 * DAY_MS - 1))
    assert len(got) == 4 and {r.order_ref for r in got} == {"TW-2026-0077"}


def test_a_new_log_takes_the_larger_page_and_an_existing_one_keeps_its_own(tmp_path: Path) -> None:
    new = BlocklogStore(str(tmp_path / "new.sqlite"), node="edge-1")
    assert new.conn.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE == 16384
    new.close()
    old_path = str(tmp_path / "old.sqlite")
    conn = sqlite3.connect(old_path)            # a log created before: SQLite's default page, WAL
    conn.execute("PRAGMA page_size = 4096")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    old = BlocklogStore(old_path, node="edge-1")
    fill_days(old, 3)
    assert old.conn.execute("PRAGMA page_size").fetchone()[0] == 4096
    assert old.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert old.verify().ok and old.counts()["records"] == 27
    old.close()


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="sqlite3 command not installed (Debian package sqlite3)")
def test_the_documented_page_size_conversion_keeps_the_chain(tmp_path: Path) -> None:
    """docs/operations.md's conversion of a log with 4 KiB pages, run as written with the sqlite3
    command: 16 KiB pages, WAL again, the same head, the chain intact, and the writer goes on."""
    doc = (Path(__file__).resolve().parents[3] / "docs" / "operations.md").read_text()
    cmd = next(x for x in doc.splitlines() if x.startswith("sqlite3 blocklog.sqlite 'PRAGMA journal_mode=DELETE"))
    path = str(tmp_path / "blocklog.sqlite")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA page_size = 4096")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    old = BlocklogStore(path, node="edge-1")
    fill_days(old, 3)
    head = old.head()
    old.close()
    subprocess.run(["bash", "-c", cmd], cwd=tmp_path, check=True, capture_output=True)
    conn = sqlite3.connect(path)                 # as the command left it (the store sets WAL when it opens)
    assert conn.execute("PRAGMA page_size").fetchone()[0] == 16384
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    conv = BlocklogStore(path, node="edge-1")
    assert conv.head() == head and conv.verify().ok
    conv.write_batch(raws(9, 5), now_ms=T0 + 9 * DAY_MS, public_key=PK)
    assert conv.verify().ok and conv.counts()["records"] == 27 + 5
    conv.close()


def test_daily_aggregates_match_the_records_within_a_day_and_across_midnight(store: BlocklogStore) -> None:
    """Batches within one day and batches across midnight, several orders, zones and actions in
    each: every (day, order, zone, action) row counts its records and has their first and last
    time, as recounted from the records themselves."""
    import random
    from collections import defaultdict

    from resolver.blocklog import day_of
    rng = random.Random(5)
    tpls = [template(o, f"n{i}.fraud.test.", action=a, zone=z) for i, (o, a, z) in enumerate(
        [("TW-1", "nxdomain", ZONE), ("TW-1", "nodata", ZONE), ("TW-2", "nxdomain", ZONE),
         ("TW-1", "nxdomain", "other.rpz.test."), (None, "nxdomain", ZONE)])]
    midnight = (T0 // DAY_MS + 1) * DAY_MS
    want: dict[tuple[str, str, str, str], list[int]] = defaultdict(list)
    for b in range(12):
        start = midnight - 5_000 + b * 1_000 if b % 3 else T0 + b        # every third batch within day 0
        batch = []
        for _ in range(rng.randrange(1, 40)):
            t = rng.choice(tpls)
            at = start + rng.randrange(0, 9_000)
            batch.append((at, "198.51.100.9", 5300, (t,), "udp"))
            want[(day_of(at), t[7] or "", t[2], t[6])].append(at)
        store.write_batch(batch, now_ms=start + 10_000, public_key=PK)
    got = {}
    for order in ("TW-1", "TW-2", ""):
        for d in store.daily(order):
            got[(d["day"], order, d["zone"], d["action"])] = (d["hits"], d["first_ms"], d["last_ms"])
    assert got == {k: (len(v), min(v), max(v)) for k, v in want.items()}
    assert {k[0] for k in got} == {day_of(T0), day_of(midnight)}
