"""One data-plane process: listeners, pipeline, cache, upstream client and the policy reference.

A supervisor drives it through four calls, the same whether it runs in the supervisor's own process
(one worker) or in a worker process behind a pipe:

    await svc.start()                      bind every listen address (UDP and TCP, SO_REUSEPORT)
    serials = await svc.prepare(gen, cfg)  build the policy beside the running one (in a thread)
    svc.commit(gen, loaded_at)             swap the reference; queries in flight keep the old one
    await svc.stop(grace)                  stop receiving, let queries in flight finish, close
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import os
import socket
import time
from typing import Any

from rpz import Policy

from .active import PolicyHolder, ZoneLoad, build_policy, sources_of
from .cache import AnswerCache
from .config import Config
from .errors import PolicyLoadError
from .hits import HitSink, NullSink
from .logs import Logger
from .metrics import snapshot
from .pipeline import Pipeline, StageCounters
from .server import Inflight, TcpServer, UdpListener, open_socket
from .upstream import UpstreamClient, UpstreamStats

# The garbage collector's thresholds in a data-plane process. CPython's default (700, 10, 10) makes
# a full collection after every 10 collections of the middle generation once enough objects have
# survived into the oldest: while the policy's decision cache and the answer caches fill (after a
# start, and after each swap, which empties them) that is a full collection every few seconds,
# each traversing every cached object: 17-137 ms pauses at 1,000,000 rules, the data plane's worst
# latencies (BENCHMARKS.md, "Resolver"). The data plane makes no cyclic garbage in its own paths
# (blocked and forwarded answers, refused and timed-out upstreams, TCP, swaps: measured with the
# collector off, tests/unit/resolver/test_garbage.py guards the upstream paths), so the
# oldest generation is collected only after 10,000 collections of the middle one; the two younger
# generations keep the default.
GC_THRESHOLDS = (700, 10, 10_000)


def tune_collector() -> None:
    """Apply GC_THRESHOLDS to this process (the supervisor's, which may serve queries itself, and
    each worker's)."""
    gc.set_threshold(*GC_THRESHOLDS)


def make_sink(spec: str | None, cfg: Config | None = None, loop: asyncio.AbstractEventLoop | None = None) -> HitSink:
    """The hit sink named ``module:function`` (a factory taking no arguments); else, when
    ``[blocklog]`` is on, one that ships hits to the supervisor's log writer (its flusher a timer
    on ``loop`` when given, the data plane's, else a thread); else a NullSink."""
    if not spec:
        if cfg is not None and cfg.blocklog.enabled:
            from .blocklog_ship import ShippingSink
            b = cfg.blocklog
            return ShippingSink(b.socket_path, queue_size=b.queue_size, interval_s=b.flush_interval_ms / 4000,
                                log=Logger(f"resolver.blocklog-{os.getpid()}"), loop=loop)
        return NullSink()
    mod_name, _, func = spec.partition(":")
    factory = getattr(importlib.import_module(mod_name), func)
    sink = factory()
    if not isinstance(sink, HitSink):
        raise TypeError(f"{spec} did not return a HitSink (an object with submit(hit))")
    return sink


class ResolverService:
    def __init__(self, cfg: Config, sink: HitSink, log: Logger) -> None:
        r = cfg.resolver
        self.cfg = cfg
        self.log = log
        self.sink = sink
        self.holder = PolicyHolder()
        self.cache = AnswerCache(r.cache_size, r.cache_min_ttl, r.cache_max_ttl, r.negative_max_ttl)
        self.ustats = UpstreamStats()
        self.upstream = UpstreamClient(r.upstreams, r.upstream_timeout_ms / 1000, r.query_timeout_ms / 1000,
                                       r.edns_udp_size, stats=self.ustats, pool=r.upstream_sockets)
        self.counters = StageCounters()
        self.pipeline = Pipeline(r, self.holder, self.cache, self.upstream, sink, counters=self.counters)
        self.inflight = Inflight()
        self.udp: list[UdpListener] = []
        self.tcp: list[asyncio.Server] = []
        self._prepared: dict[int, tuple[Policy, list[ZoneLoad], tuple[str, ...]]] = {}

    async def start(self) -> None:
        """Bind every listen address. OSError (address in use, permission) propagates."""
        loop = asyncio.get_running_loop()
        r = self.cfg.resolver
        try:
            for ep in r.listen:
                self.udp.append(UdpListener(open_socket(ep, socket.SOCK_DGRAM), self.pipeline, self.inflight))
                tsock = open_socket(ep, socket.SOCK_STREAM)
                server = await loop.create_server(
                    lambda: TcpServer(self.pipeline, self.inflight, r.tcp_idle_timeout_ms / 1000, r.max_tcp_clients),
                    sock=tsock)
                self.tcp.append(server)
        except OSError:
            await self.stop(0)
            raise

    async def stop(self, grace: float = 5.0) -> int:
        """Stop accepting TCP clients, let queries in flight finish (UDP keeps answering meanwhile),
        then close; returns how many queries were still unanswered after ``grace`` seconds."""
        for s in self.tcp:
            s.close()
        left = await self.inflight.drain(grace)
        for u in self.udp:
            u.close()
        self.udp.clear()
        self.tcp.clear()
        close = getattr(self.sink, "close", None)
        if close is not None:    # a shipping sink hands over what it still holds
            await asyncio.get_running_loop().run_in_executor(None, close)
        return left

    async def prepare(self, generation: int, cfg: Config) -> dict[str, Any]:
        """Build the policy of ``cfg`` beside the running one. PolicyLoadError when a zone fails."""
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        policy, loads = await loop.run_in_executor(None, build_policy, cfg, self.log)
        self._prepared = {generation: (policy, loads, sources_of(cfg))}
        return {"zones": policy.serials(), "seconds": round(time.monotonic() - t0, 3),
                "rules": sum(z.rules for z in loads), "rejected": sum(z.rejected for z in loads)}

    def commit(self, generation: int, loaded_at: float) -> None:
        item = self._prepared.pop(generation, None)
        if item is None:
            raise PolicyLoadError(f"generation {generation} was not prepared")
        policy, _loads, sources = item
        self.pipeline.swap(policy, generation, loaded_at, sources)

    def abort(self, generation: int) -> None:
        self._prepared.pop(generation, None)

    def stats(self) -> dict[str, Any]:
        snap = snapshot(self.counters, self.ustats, len(self.cache), TcpServer.connections)
        shipping = getattr(self.sink, "shipping_stats", None)    # resolver.blocklog_ship.ShippingSink
        if shipping is not None:
            snap["shipping"] = shipping()
        return snap
