"""The in-process writer is a resolver.hits.HitSink: a HitRecord submitted to it lands in the log
(the contract of docs/contracts.md, "Blocked-lookup hook")."""

from __future__ import annotations

from pathlib import Path

from resolver.blocklog import BlocklogStore
from resolver.blocklog_config import load_blocklog
from resolver.blocklog_ship import BlocklogWriter
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
