"""Hits through Unbound + plugin land in the node's blocked-lookup log (SQLite, hash-chained), as
our resolver's do: ``[blocklog]`` on and no HOTLINE_EDGE_HIT_SINK, so the plugin opens the log
writer in Unbound's process exactly as resolver/supervisor.py does in the resolver's main process.
"""

from __future__ import annotations

import base64
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest
from nacl.public import PrivateKey

from resolver.blocklog import BlocklogStore, HitRow
from resolver.blocklog_seal import open_client

from ..resolver.peers import Peer, control, wait_until
from .harness import log_events, plugin_config, start_plugin
from .test_plugin import SHARED, _free_udp_port, _main_zone

pytestmark = pytest.mark.integration


def _rows(path: Path) -> list[HitRow]:
    if not path.exists():
        return []
    store = BlocklogStore(str(path), readonly=True)
    try:
        return list(store.records())
    finally:
        store.close()


def test_a_hit_through_unbound_lands_in_the_sqlite_log(tmp_path: Path, knot: Peer) -> None:
    key = PrivateKey.generate()
    db = tmp_path / "state" / "blocklog.sqlite"
    extra = (f'\n[blocklog]\npath = "{db}"\nflush_interval_ms = 100\n'
             f'compliance_public_key = "{base64.b64encode(bytes(key.public_key)).decode()}"')
    # the hotline zone without CLIENT-IP rules, so Unbound keeps the NXDOMAIN and answers repeats itself
    cfg = plugin_config(tmp_path, _main_zone(tmp_path, SHARED), extra=extra)
    plugin = start_plugin(tmp_path, knot.port, cfg, env={"HOTLINE_EDGE_HIT_SINK": ""})   # the real writer
    try:
        ports = [_free_udp_port() for _ in range(3)]
        for p in ports:      # the first answered by the plugin, the repeats by Unbound's cache callback
            q = dns.message.make_query("blocked.example.", "A", use_edns=0)
            r = dns.query.udp(q, "127.0.0.1", port=plugin.port, timeout=2, source="127.0.0.1", source_port=p)
            assert r.rcode() == dns.rcode.NXDOMAIN
        tcp = dns.query.tcp(dns.message.make_query("x.blocked.example.", "AAAA"), "127.0.0.1", port=plugin.port,
                            timeout=2)
        assert tcp.rcode() == dns.rcode.NXDOMAIN
        wait_until(lambda: len(_rows(db)) >= 4, 10, "4 records in the blocked-lookup log")
        rows = _rows(db)
        assert len(rows) == 4
        first = rows[0]
        assert (first.qname, first.qtype, first.transport, first.node, first.zone, first.serial, first.trigger,
                first.rule_owner, first.action) == \
            ("blocked.example.", 1, "udp", "plugin-test", "rpz.test.", 2026010101, "QNAME",
             "blocked.example.rpz.test.", "nxdomain")
        assert [r.order_ref for r in rows] == ["TW-2026-0042"] * 3 + [None]
        assert [open_client(key, r.sealed_client or b"") for r in rows[:3]] == [("127.0.0.1", p) for p in ports]
        last = rows[3]
        assert (last.qname, last.qtype, last.transport, last.rule_owner) == \
            ("x.blocked.example.", 28, "tcp", "*.blocked.example.rpz.test.")
        store = BlocklogStore(str(db), readonly=True)
        try:
            report = store.verify()
        finally:
            store.close()
        assert report.ok and report.records >= 4, str(report)
        status = control(plugin, {"cmd": "status"})
        assert status["blocklog"]["records"] >= 4 and status["blocklog"]["dropped"] == 0
        assert status["counters"]["cache_answers"] >= 2, "the repeats were Unbound's cache answers"
        assert "blocklog_open" in [e.get("event") for e in log_events(plugin)]
    finally:
        plugin.stop()


def test_a_log_that_cannot_be_opened_keeps_unbound_from_starting(tmp_path: Path, knot: Peer) -> None:
    """As our resolver exits when its log cannot be opened: no policy hits go unlogged."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    extra = f'\n[blocklog]\npath = "{blocker}/blocklog.sqlite"'
    cfg = plugin_config(tmp_path, _main_zone(tmp_path), extra=extra)
    plugin = start_plugin(tmp_path, knot.port, cfg, env={"HOTLINE_EDGE_HIT_SINK": ""}, wait=False)
    try:
        wait_until(lambda: plugin.proc.poll() is not None, 30, "Unbound refusing to start")
        assert plugin.proc.returncode != 0
        assert "blocklog_unavailable" in [e.get("event") for e in log_events(plugin)]
    finally:
        plugin.stop()
