"""Prometheus metrics of the data plane.

The query path counts in plain ints (``pipeline.StageCounters``, ``upstream.UpstreamStats``); a
worker turns them into a JSON-able snapshot, the supervisor adds the snapshots of all workers and
exposes the sum through a prometheus-client collector on ``metrics_listen`` (``GET /metrics``).

| metric                                                 | type      | labels             | stage           |
|--------------------------------------------------------|-----------|--------------------|-----------------|
| hotline_edge_resolver_queries_total                    | counter   | transport, rcode   | synthesize/relay|
| hotline_edge_resolver_refused_total                    | counter   | reason             | acl             |
| hotline_edge_resolver_malformed_total                  | counter   | reason             | parse           |
| hotline_edge_resolver_policy_hits_total                | counter   | zone, action       | hit-hook        |
| hotline_edge_resolver_dnssec_unfiltered_total          | counter   |                    | policy          |
| hotline_edge_resolver_cache_hits_total / _misses_total | counter   |                    | cache           |
| hotline_edge_resolver_cache_entries                    | gauge     |                    | cache           |
| hotline_edge_resolver_upstream_queries_total           | counter   | upstream, outcome  | forward         |
| hotline_edge_resolver_upstream_latency_seconds         | histogram | upstream           | forward         |
| hotline_edge_resolver_policy_serial                    | gauge     | zone               | policy          |
| hotline_edge_resolver_policy_loaded_timestamp_seconds  | gauge     |                    | policy          |
| hotline_edge_resolver_policy_age_seconds               | gauge     |                    | policy          |
| hotline_edge_resolver_policy_reloads_total             | counter   | result             | policy          |
| hotline_edge_resolver_ready                            | gauge     |                    | supervisor      |
| hotline_edge_resolver_workers                          | gauge     |                    | supervisor      |
| hotline_edge_resolver_tcp_connections                  | gauge     |                    | server          |
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .config import Endpoint
from .pipeline import StageCounters
from .upstream import LATENCY_BUCKETS, UpstreamStats
from .wire import RCODE_NAMES

PREFIX = "hotline_edge_resolver_"
BLOCKLOG_PREFIX = "hotline_edge_blocklog_"     # the log's metrics: its writer's (blocklog_ship) and the workers' side
METRIC_NAMES = tuple(PREFIX + n for n in (
    "queries_total", "refused_total", "malformed_total", "policy_hits_total", "dnssec_unfiltered_total",
    "cache_hits_total", "cache_misses_total", "cache_entries", "upstream_queries_total",
    "upstream_latency_seconds", "policy_serial", "policy_loaded_timestamp_seconds", "policy_age_seconds",
    "policy_reloads_total", "ready", "workers", "tcp_connections", "gc_collections_total",
    "gc_full_collection_every"))


def snapshot(c: StageCounters, u: UpstreamStats, cache_entries: int, tcp_connections: int) -> dict[str, Any]:
    """A worker's counters as plain JSON-able data."""
    return {
        "responses": [[t, r, n] for (t, r), n in c.responses().items()],
        "refused": dict(c.refused),
        "malformed": dict(c.malformed),
        "hits": [[z, a, n] for (z, a), n in c.hits().items()],
        "dnssec_unfiltered": c.dnssec_skipped,
        "cache": {"hits": c.cache_hits, "misses": c.cache_misses, "entries": cache_entries},
        "upstream": [[up, o, n] for (up, o), n in u.outcomes.items()],
        "latency": {up: list(h) for up, h in u.latency.items()},
        "tcp_connections": tcp_connections,
        # this process's garbage collector: collections per generation, and its setting for the
        # oldest (resolver.service.GC_THRESHOLDS)
        "gc": {"collections": [g["collections"] for g in gc.get_stats()], "full_every": gc.get_threshold()[2]},
    }


def merge(snaps: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The sum of several workers' snapshots."""
    out: dict[str, Any] = {"responses": {}, "refused": {}, "malformed": {}, "hits": {}, "dnssec_unfiltered": 0,
                           "cache": {"hits": 0, "misses": 0, "entries": 0}, "upstream": {}, "latency": {},
                           "tcp_connections": 0, "gc": {"collections": [0, 0, 0], "full_every": None},
                           "shipping": {"workers": 0, "deferred": 0, "held": 0}}
    for s in snaps:
        ship = s.get("shipping")
        if ship:                 # a worker that ships its hits to the blocked-lookup log's writer
            out["shipping"]["workers"] += 1
            out["shipping"]["deferred"] += ship.get("deferred", 0)
            out["shipping"]["held"] += ship.get("held", 0)
        for t, r, n in s.get("responses", ()):
            out["responses"][(t, r)] = out["responses"].get((t, r), 0) + n
        for key in ("refused", "malformed"):
            for k, n in s.get(key, {}).items():
                out[key][k] = out[key].get(k, 0) + n
        for z, a, n in s.get("hits", ()):
            out["hits"][(z, a)] = out["hits"].get((z, a), 0) + n
        for up, o, n in s.get("upstream", ()):
            out["upstream"][(up, o)] = out["upstream"].get((up, o), 0) + n
        for up, h in s.get("latency", {}).items():
            cur = out["latency"].setdefault(up, [0.0] * len(h))
            for i, v in enumerate(h):
                cur[i] += v
        for k in ("hits", "misses", "entries"):
            out["cache"][k] += s.get("cache", {}).get(k, 0)
        out["dnssec_unfiltered"] += s.get("dnssec_unfiltered", 0)
        out["tcp_connections"] += s.get("tcp_connections", 0)
        g = s.get("gc")
        if g:
            for i, n in enumerate(g["collections"][:3]):
                out["gc"]["collections"][i] += n
            every = out["gc"]["full_every"]
            out["gc"]["full_every"] = g["full_every"] if every is None else min(every, g["full_every"])
    return out


class ResolverCollector:
    """prometheus-client collector over ``source()`` -> (merged snapshot, policy state)."""

    def __init__(self, source: Callable[[], tuple[dict[str, Any], dict[str, Any]]]) -> None:
        self.source = source

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
        m, p = self.source()
        q = CounterMetricFamily(PREFIX + "queries", "Queries answered, by transport and response code "
                                "(rcode=\"none\": no response sent)", labels=["transport", "rcode"])
        for (t, r), n in sorted(m["responses"].items()):
            q.add_metric([t, RCODE_NAMES.get(r, "none" if r < 0 else str(r)).lower()], n)
        yield q
        for key, help_ in (("refused", "Queries refused before policy, by reason (acl, not_ready, class, transfer)"),
                           ("malformed", "Messages that could not be parsed, by reason")):
            f = CounterMetricFamily(PREFIX + key, help_, labels=["reason"])
            for k, n in sorted(m[key].items()):
                f.add_metric([k], n)
            yield f
        h = CounterMetricFamily(PREFIX + "policy_hits", "Policy hits (applied or logged), by zone and action",
                                labels=["zone", "action"])
        for (z, a), n in sorted(m["hits"].items()):
            h.add_metric([z, a], n)
        yield h
        yield CounterMetricFamily(PREFIX + "dnssec_unfiltered", "Policy matches not applied because the data "
                                  "was signed and break_dnssec is false", value=m["dnssec_unfiltered"])
        yield CounterMetricFamily(PREFIX + "cache_hits", "Answers served from the cache", value=m["cache"]["hits"])
        yield CounterMetricFamily(PREFIX + "cache_misses", "Lookups that missed the cache",
                                  value=m["cache"]["misses"])
        yield GaugeMetricFamily(PREFIX + "cache_entries", "Upstream answers in the cache", value=m["cache"]["entries"])
        u = CounterMetricFamily(PREFIX + "upstream_queries", "Upstream queries by outcome "
                                "(ok, timeout, error, truncated, servfail, refused, mismatched)",
                                labels=["upstream", "outcome"])
        for (up, o), n in sorted(m["upstream"].items()):
            u.add_metric([up, o], n)
        yield u
        lat = HistogramMetricFamily(PREFIX + "upstream_latency_seconds", "Upstream answer latency",
                                    labels=["upstream"])
        for up, hist in sorted(m["latency"].items()):
            acc = 0.0
            buckets = []
            for b, n in zip(LATENCY_BUCKETS, hist, strict=False):
                acc += n
                buckets.append((repr(b), acc))
            buckets.append(("+Inf", hist[-1]))
            lat.add_metric([up], buckets, sum_value=hist[-2])
        yield lat
        s = GaugeMetricFamily(PREFIX + "policy_serial", "Serial of each active policy zone", labels=["zone"])
        for z, serial in sorted(p.get("zones", {}).items()):
            s.add_metric([z], serial)
        yield s
        loaded = p.get("loaded_at")
        yield GaugeMetricFamily(PREFIX + "policy_loaded_timestamp_seconds", "When the active policy was loaded "
                                "(Unix time; 0 before the first)", value=loaded or 0)
        yield GaugeMetricFamily(PREFIX + "policy_age_seconds", "Seconds since the active policy was loaded",
                                value=(time.time() - loaded) if loaded else 0)
        r = CounterMetricFamily(PREFIX + "policy_reloads", "Policy reloads by result", labels=["result"])
        for k, n in sorted(p.get("reloads", {}).items()):
            r.add_metric([k], n)
        yield r
        yield GaugeMetricFamily(PREFIX + "ready", "1 when a policy is loaded and queries are served",
                                value=1 if p.get("ready") else 0)
        g = m["gc"]                  # merge() always gives it
        gcc = CounterMetricFamily(PREFIX + "gc_collections", "Python garbage collections in the data-plane "
                                  "processes, by generation (2: full collections, each a pause)",
                                  labels=["generation"])
        for i, n in enumerate(g["collections"]):
            gcc.add_metric([str(i)], n)
        yield gcc
        yield GaugeMetricFamily(PREFIX + "gc_full_collection_every", "Collections of the middle generation between "
                                "two full collections, the smallest over the data-plane processes (Python's "
                                "default 10; the resolver sets 10,000)", value=g["full_every"] or 0)
        yield GaugeMetricFamily(PREFIX + "workers", "Worker processes serving queries", value=p.get("workers", 0))
        yield GaugeMetricFamily(PREFIX + "tcp_connections", "Open client TCP connections",
                                value=m["tcp_connections"])
        ship = m.get("shipping")
        if ship and ship["workers"]:   # the workers' side of the blocked-lookup log (docs/blocklog.md)
            yield CounterMetricFamily(BLOCKLOG_PREFIX + "shipping_deferred", "Flushes of the workers' hits that "
                                      "found the log writer's socket full (the hits waited, bounded, for the next "
                                      "turn)", value=ship["deferred"])
            yield GaugeMetricFamily(BLOCKLOG_PREFIX + "worker_held", "Queries whose hits the workers hold and have "
                                    "not handed to the log writer yet", value=ship["held"])


def render(*collectors: Any) -> bytes:
    from prometheus_client import CollectorRegistry, generate_latest
    reg = CollectorRegistry(auto_describe=False)
    for c in collectors:
        reg.register(c)
    return generate_latest(reg)


async def serve_metrics(ep: Endpoint, collector: ResolverCollector, *more: Any) -> asyncio.Server:
    """A minimal HTTP endpoint: ``GET /metrics`` (Prometheus text format), anything else 404."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = line.split()
            if len(parts) >= 2 and parts[0] == b"GET" and parts[1].split(b"?")[0] == b"/metrics":
                body = render(collector, *more)
                head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n")
            else:
                body = b"not found: try /metrics\n"
                head = (b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: "
                        + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n")
            writer.write(head + body)
            await writer.drain()
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, ep.host, ep.port)
