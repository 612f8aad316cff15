"""sd_notify over a real unix socket; metrics snapshots merged and rendered in Prometheus format."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from resolver import metrics, sdnotify
from resolver.pipeline import StageCounters, response_slot
from resolver.upstream import UpstreamStats


def test_notify_writes_to_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "n.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(path))
        assert sdnotify.notify("READY=1\nSTATUS=ok", {"NOTIFY_SOCKET": str(path)})
        assert s.recv(100) == b"READY=1\nSTATUS=ok"
    assert not sdnotify.notify("READY=1", {})
    assert not sdnotify.notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone")})


def test_watchdog_interval_is_for_this_process_only() -> None:
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "2000000"}) == 2.0
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}) == 2.0
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None
    assert sdnotify.watchdog_interval({}) is None


def test_snapshots_merge_and_render() -> None:
    snaps = []
    for _ in range(2):
        c = StageCounters()
        c.resp[response_slot("udp", b"\x00\x00\x81\x83")] += 5
        c.resp[response_slot("udp", None)] += 1
        c.hitc[c.hit_slot("rpz.test.", "nxdomain")] += 4
        c.refused["acl"] = 2
        u = UpstreamStats()
        u.outcome("127.0.0.1:53", "ok")
        u.observe("127.0.0.1:53", 0.002)
        snaps.append(metrics.snapshot(c, u, cache_entries=7, tcp_connections=1))
    merged = metrics.merge(snaps)
    assert merged["responses"][("udp", 3)] == 10 and merged["cache"]["entries"] == 14
    body = metrics.render(metrics.ResolverCollector(lambda: (merged, {"zones": {"rpz.test.": 9}, "ready": True,
                                                                      "loaded_at": 1.0, "workers": 2,
                                                                      "reloads": {"ok": 1}}))).decode()
    assert 'hotline_edge_resolver_queries_total{rcode="nxdomain",transport="udp"} 10.0' in body
    assert 'hotline_edge_resolver_queries_total{rcode="none",transport="udp"} 2.0' in body
    assert 'hotline_edge_resolver_policy_hits_total{action="nxdomain",zone="rpz.test."} 8.0' in body
    assert 'hotline_edge_resolver_upstream_latency_seconds_bucket{le="0.0025",upstream="127.0.0.1:53"} 2.0' in body
    assert 'hotline_edge_resolver_policy_serial{zone="rpz.test."} 9.0' in body
    assert "hotline_edge_resolver_workers 2.0" in body
    assert merged["gc"]["collections"] == [a + b for a, b in zip(*(x["gc"]["collections"] for x in snaps),
                                                                 strict=True)]
    assert 'hotline_edge_resolver_gc_collections_total{generation="2"}' in body
    for name in metrics.METRIC_NAMES:
        assert name.removesuffix("_total") in body, name


def test_the_workers_shipping_of_hits_is_summed_and_shown_only_when_they_ship() -> None:
    """Each worker's ShippingSink reports its deferred flushes and the queries it holds; the
    resolver's /metrics shows their sums as blocked-lookup log metrics, and nothing when no worker
    ships (logging off)."""
    c, u = StageCounters(), UpstreamStats()
    plain = metrics.snapshot(c, u, cache_entries=0, tcp_connections=0)
    policy = {"zones": {}, "ready": True, "loaded_at": 1.0, "workers": 2, "reloads": {}}
    body = metrics.render(metrics.ResolverCollector(lambda: (metrics.merge([plain, plain]), policy))).decode()
    assert "hotline_edge_blocklog_" not in body
    a = {**plain, "shipping": {"deferred": 3, "held": 120}}
    b = {**plain, "shipping": {"deferred": 1, "held": 0}}
    merged = metrics.merge([a, b, plain])
    assert merged["shipping"] == {"workers": 2, "deferred": 4, "held": 120}
    body = metrics.render(metrics.ResolverCollector(lambda: (merged, policy))).decode()
    assert "hotline_edge_blocklog_shipping_deferred_total 4.0" in body
    assert "hotline_edge_blocklog_worker_held 120.0" in body
