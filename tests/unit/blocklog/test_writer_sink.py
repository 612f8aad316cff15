"""The in-process writer is a resolver.hits.HitSink: a HitRecord submitted to it lands in the log
(the contract of docs/contracts.md, "Blocked-lookup hook")."""

from __future__ import annotations

from pathlib import Path

import pytest

from resolver.blocklog import BlocklogStore
from resolver.blocklog_config import BlocklogConfig, load_blocklog
from resolver.blocklog_ship import BlocklogWriter, ShippingSink
from resolver.hits import HitRecord, HitSink
from rpz.tomlconf import parse_config


def test_writer_takes_hit_records(tmp_path: Path) -> None:
    doc = parse_config(f'[node]\nid = "edge-1"\nstate_dir = "{tmp_path}"\nruntime_dir = "{tmp_path}"\n'
                       '[blocklog]\nflush_interval_ms = 20\n'.encode(), "he.toml")
    cfg = load_blocklog(doc)
    assert not doc.errors
    writer = BlocklogWriter(cfg, listen=False).start()
    try:
        assert isinstance(writer, HitSink)
        writer.submit(HitRecord(time_ms=1_790_000_000_000, client_ip="198.51.100.7", client_port=40000,
                                qname="csam-site.test.", qtype=1, zone="hotline.rpz.test.", serial=7,
                                trigger="QNAME", rule_owner="csam-site.test.hotline.rpz.test.", action="nxdomain",
                                order_ref="TW-2026-0042", transport="udp"))
    finally:
        writer.close()
    store = BlocklogStore(cfg.path, node="edge-1")
    try:
        rows = list(store.records(order_ref="TW-2026-0042"))
        assert [(r.qname, r.action) for r in rows] == [("csam-site.test.", "nxdomain")]
        assert rows[0].sealed_client is None          # no compliance key configured: no address kept
        assert store.verify().ok
    finally:
        store.close()


T1 = ("csam-site.test.", 1, "hotline.rpz.test.", 7, "QNAME", "csam-site.test.hotline.rpz.test.", "nxdomain",
      "TW-2026-0042")
T2 = ("fraud.test.", 1, "hotline.rpz.test.", 7, "QNAME", "fraud.test.hotline.rpz.test.", "nxdomain", "TW-2026-0043")


def test_a_batch_of_hits_lands_in_the_log_in_order(tmp_path: Path) -> None:
    doc = parse_config(f'[node]\nid = "edge-1"\nstate_dir = "{tmp_path}"\nruntime_dir = "{tmp_path}"\n'
                       '[blocklog]\nflush_interval_ms = 20\n'.encode(), "he.toml")
    cfg = load_blocklog(doc)
    writer = BlocklogWriter(cfg, listen=False).start()
    try:
        writer.submit_many(1_790_000_000_000, [("198.51.100.7", 40000, (T1,)), ("198.51.100.8", 40001, (T1, T2))],
                           "udp")
    finally:
        writer.close()
    store = BlocklogStore(cfg.path, node="edge-1")
    try:
        rows = list(store.records())
        assert [(r.qname, r.order_ref) for r in rows] == [("csam-site.test.", "TW-2026-0042"),
                                                          ("csam-site.test.", "TW-2026-0042"),
                                                          ("fraud.test.", "TW-2026-0043")]
        assert store.verify().ok
    finally:
        store.close()


def test_a_batch_that_does_not_fit_is_counted_as_dropped_hits(tmp_path: Path) -> None:
    from resolver.blocklog_ship import ShippingSink
    sink = ShippingSink(str(tmp_path / "absent.sock"), queue_size=3, interval_s=3600)
    try:
        sink.submit_many(1, [("192.0.2.1", 1, (T1,)), ("192.0.2.2", 2, (T1, T2))], "udp")
        assert len(sink.q) == 2 and sink.dropped == 0
        # room for one more query: the second and third are dropped, counted by their hits (1 + 2)
        sink.submit_many(2, [("192.0.2.3", 3, (T2,)), ("192.0.2.4", 4, (T1,)), ("192.0.2.5", 5, (T1, T2))], "udp")
        assert [item[1] for item in sink.q] == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
        assert sink.dropped == 3
        sink.submit_many(3, [("192.0.2.6", 6, (T1,))], "udp")                   # full: all of it dropped
        assert len(sink.q) == 3 and sink.dropped == 4
    finally:
        sink.close()


def test_the_writer_splits_large_batches_and_counts_unstorable_hits(tmp_path: Path, monkeypatch) -> None:
    """Segments of at most BATCH_MAX records; a hit whose address is not an IP address is counted
    as dropped by the writer, the others are written."""
    from resolver import blocklog_ship
    monkeypatch.setattr(blocklog_ship, "BATCH_MAX", 7)
    doc = parse_config(f'[node]\nid = "edge-1"\nstate_dir = "{tmp_path}"\nruntime_dir = "{tmp_path}"\n'
                       '[blocklog]\nflush_interval_ms = 20\n'.encode(), "he.toml")
    cfg = load_blocklog(doc)
    writer = BlocklogWriter(cfg, listen=False).start()
    try:
        hits = [(f"198.51.100.{i + 1}", 40000 + i, (T1,)) for i in range(20)]
        writer.submit_many(1_790_000_000_000, [*hits[:10], ("not-an-ip", 1, (T1, T2)), *hits[10:]], "udp")
    finally:
        writer.close()
    assert writer.stats.records == 20 and writer.stats.dropped_writer == 2
    store = BlocklogStore(cfg.path, node="edge-1")
    try:
        sizes = [n for (n,) in store.conn.execute("SELECT count FROM segments ORDER BY first_seq")]
        assert sum(sizes) == 20 and max(sizes) <= 7 and len(sizes) >= 3
        assert [r.seq for r in store.records()] == list(range(1, 21))
        assert store.verify().ok
    finally:
        store.close()


def test_a_message_the_decoder_fails_on_is_counted_and_the_writer_goes_on(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the decoder raises on one message (here a stand-in bug), the writer counts it as a
    bad message, logs it, and keeps writing what arrives after it."""
    from resolver import blocklog_ship
    real = blocklog_ship.decode_columns
    calls = {"n": 0}

    def flaky(data: bytes, table: object = None):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise MemoryError("a stand-in for a bug in the decoder")
        return real(data, table)  # type: ignore[arg-type]

    monkeypatch.setattr(blocklog_ship, "decode_columns", flaky)
    cfg = BlocklogConfig(enabled=True, path=str(tmp_path / "blocklog.sqlite"), socket_path=str(tmp_path / "bl.sock"),
                         node="edge-1", flush_interval_ms=20, compliance_public_key=None)
    logged: list[tuple[str, str]] = []
    writer = BlocklogWriter(cfg, lambda level, event, **kw: logged.append((level, event))).start()
    sink = ShippingSink(cfg.socket_path, interval_s=3600)
    try:
        sink.submit_hits(1_790_000_000_000, "198.51.100.7", 40000, (T1,), "udp")
        assert sink.flush() == 1                       # the message the decoder fails on
        sink.submit_hits(1_790_000_000_001, "198.51.100.8", 40001, (T1,), "udp")
        assert sink.flush() == 1                       # the next one
    finally:
        sink.close()
        writer.close()
    assert writer.stats.bad_messages == 1 and ("error", "blocklog_bad_message") in logged
    store = BlocklogStore(cfg.path, node="edge-1")
    try:
        assert [r.time_ms for r in store.records()] == [1_790_000_000_001]
    finally:
        store.close()
