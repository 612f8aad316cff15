"""Asking the upstream resolvers (the ISP's recursors, or a local Unbound).

Every query gets a fresh random 16-bit ID and its own UDP socket, connected to the one upstream it
asks: the kernel picks a random source port and delivers only datagrams from that address and port,
and ``wire.parse_reply`` accepts only the same ID and question (RFC 5452 section 9.1). Anything else
arriving on the socket is counted and ignored while the genuine reply is awaited.

| event                          | what happens                                                   |
|--------------------------------|----------------------------------------------------------------|
| reply with TC=1                | the same upstream is asked again over TCP (RFC 7766)            |
| timeout, ICMP error, bad reply | the next upstream is asked (failover), within query_timeout    |
| SERVFAIL or REFUSED            | the next upstream is asked; the last such answer is returned   |
|                                | when no upstream did better                                    |
| nothing usable from anyone     | UpstreamError: the client gets SERVFAIL                        |

The upstream that answered last is asked first next time; a failed one moves to the back.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Sequence

from .config import Endpoint
from .errors import UpstreamError, WireError
from .wire import TC, Rcode, Reply, parse_reply, upstream_query

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def random_id() -> int:
    return int.from_bytes(os.urandom(2), "big")


class UpstreamStats:
    """Counters of the forward stage: outcomes and latency per upstream."""

    __slots__ = ("latency", "outcomes")

    def __init__(self) -> None:
        self.outcomes: dict[tuple[str, str], int] = {}
        self.latency: dict[str, list[float]] = {}   # buckets..., sum, count

    def outcome(self, upstream: str, what: str) -> None:
        key = (upstream, what)
        self.outcomes[key] = self.outcomes.get(key, 0) + 1

    def observe(self, upstream: str, seconds: float) -> None:
        h = self.latency.get(upstream)
        if h is None:
            h = self.latency[upstream] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        for i, b in enumerate(LATENCY_BUCKETS):
            if seconds <= b:
                h[i] += 1
                break
        h[-2] += seconds
        h[-1] += 1


class PooledSocket:
    """One connected UDP socket to one upstream, read permanently, carrying up to POOL_USES queries
    (each with its own random ID) before it is retired and replaced by a fresh one (a new port)."""

    __slots__ = ("ep", "loop", "name", "pending", "retired", "sock", "stats", "uses")

    def __init__(self, ep: Endpoint, stats: UpstreamStats) -> None:
        self.ep = ep
        self.name = str(ep)
        self.stats = stats
        self.loop = asyncio.get_running_loop()
        self.sock = socket.socket(ep.family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.connect((ep.host, ep.port))
        self.pending: dict[int, tuple[bytes, int, int, asyncio.Future[tuple[Reply, bytes]]]] = {}
        self.uses = 0
        self.retired = False
        self.loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(65535)
            except BlockingIOError:
                return
            except OSError as exc:   # ICMP errors: the upstream is not there for any of them
                exc.with_traceback(None)     # (it would hold this frame, which holds a future)
                for _q, _t, _c, fut in self.pending.values():
                    if not fut.done():
                        fut.set_exception(exc)
                return
            w = self.pending.get(int.from_bytes(data[:2], "big")) if len(data) >= 2 else None
            if w is None:
                self.stats.outcome(self.name, "mismatched")
                continue
            try:
                reply = parse_reply(data, int.from_bytes(data[:2], "big"), w[0], w[1], w[2])
            except WireError:
                self.stats.outcome(self.name, "mismatched")
                continue
            if not w[3].done():
                w[3].set_result((reply, data))

    def done_with(self, qid: int) -> None:
        self.pending.pop(qid, None)
        if self.retired and not self.pending:
            self.close()

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


POOL_USES = 100


def _expire(fut: asyncio.Future[tuple[Reply, bytes]]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


def _read_reply(sock: socket.socket, fut: asyncio.Future[tuple[Reply, bytes]], qid: int, qname: bytes, qtype: int,
                qclass: int, stats: UpstreamStats, name: str) -> None:
    """A fresh socket's reader: the reply to this query settles ``fut``; anything else is counted
    and skipped. (Module functions with arguments, not closures: see ``_udp``.)"""
    while not fut.done():
        try:
            data = sock.recv(65535)
        except BlockingIOError:
            return
        except OSError as exc:   # ICMP port unreachable and friends (its traceback would hold fut)
            fut.set_exception(exc.with_traceback(None))
            return
        try:
            reply = parse_reply(data, qid, qname, qtype, qclass)
        except WireError:
            stats.outcome(name, "mismatched")
            continue
        fut.set_result((reply, data))


class UpstreamClient:
    """``pool`` 0: a fresh socket per query (a new random source port every time). ``pool`` N: N
    connected sockets per upstream, each replaced after POOL_USES queries; far cheaper per query,
    with the source port drawn from N live random ports instead of one fresh port per query."""

    def __init__(self, upstreams: Sequence[Endpoint], timeout: float, total_timeout: float, udp_size: int, *,
                 stats: UpstreamStats | None = None, new_id: Callable[[], int] = random_id,
                 clock: Callable[[], float] = time.monotonic, pool: int = 0) -> None:
        if not upstreams:
            raise ValueError("no upstreams")
        self.pool = pool
        self.pools: dict[Endpoint, list[PooledSocket]] = {}
        self.next = 0
        self.upstreams = list(upstreams)
        self.timeout = timeout
        self.total_timeout = total_timeout
        self.udp_size = udp_size
        self.stats = stats or UpstreamStats()
        self.new_id = new_id
        self.clock = clock

    async def resolve(self, qname_lower: bytes, qtype: int, qclass: int, do: bool, cd: bool) -> tuple[Reply, bytes]:
        """The first usable reply from the upstreams, in preference order."""
        deadline = self.clock() + self.total_timeout
        last: tuple[Reply, bytes] | None = None
        errors = []
        for ep in list(self.upstreams):
            remaining = deadline - self.clock()
            if remaining <= 0:
                break
            name = str(ep)
            t0 = self.clock()
            try:
                reply, data = await self._udp(ep, qname_lower, qtype, qclass, do=do, cd=cd,
                                              timeout=min(self.timeout, remaining))
                if reply.flags & TC:
                    self.stats.outcome(name, "truncated")
                    remaining = deadline - self.clock()
                    reply, data = await self._tcp(ep, qname_lower, qtype, qclass, do=do, cd=cd,
                                                  timeout=max(0.05, min(self.timeout * 2, remaining)))
            except TimeoutError:
                self.stats.outcome(name, "timeout")
                errors.append(f"{name} timed out")
                self._demote(ep)
                continue
            except (OSError, WireError, asyncio.IncompleteReadError) as exc:
                self.stats.outcome(name, "error")
                errors.append(f"{name}: {exc}")
                self._demote(ep)
                continue
            self.stats.observe(name, self.clock() - t0)
            if reply.rcode in (Rcode.SERVFAIL, Rcode.REFUSED):
                self.stats.outcome(name, Rcode(reply.rcode).name.lower())
                errors.append(f"{name} answered {Rcode(reply.rcode).name}")
                last = (reply, data)
                self._demote(ep)
                continue
            self.stats.outcome(name, "ok")
            self._promote(ep)
            return reply, data
        if last is not None:
            return last
        raise UpstreamError("no upstream answered: " + ("; ".join(errors) or "query timeout reached"))

    def _promote(self, ep: Endpoint) -> None:
        if self.upstreams[0] != ep:
            self.upstreams.remove(ep)
            self.upstreams.insert(0, ep)

    def _demote(self, ep: Endpoint) -> None:
        if len(self.upstreams) > 1 and ep in self.upstreams:
            self.upstreams.remove(ep)
            self.upstreams.append(ep)

    def _pooled(self, ep: Endpoint) -> PooledSocket:
        socks = self.pools.setdefault(ep, [])
        self.next = (self.next + 1) % self.pool
        if len(socks) < self.pool:
            s = PooledSocket(ep, self.stats)
            socks.append(s)
            return s
        s = socks[self.next]
        if s.uses >= POOL_USES:
            s.retired = True
            if not s.pending:
                s.close()
            s = socks[self.next] = PooledSocket(ep, self.stats)
        return s

    async def _udp_pooled(self, ep: Endpoint, qname: bytes, qtype: int, qclass: int, *, do: bool, cd: bool,
                          timeout: float) -> tuple[Reply, bytes]:
        loop = asyncio.get_running_loop()
        s = self._pooled(ep)
        qid = self.new_id()
        while qid in s.pending:
            qid = self.new_id()
        fut: asyncio.Future[tuple[Reply, bytes]] = loop.create_future()
        s.pending[qid] = (qname, qtype, qclass, fut)
        s.uses += 1
        timer = loop.call_later(timeout, _expire, fut)
        try:
            s.sock.send(upstream_query(qid, qname, qtype, qclass, do=do, cd=cd, udp_size=self.udp_size))
            return await fut
        finally:
            timer.cancel()
            s.done_with(qid)
            del fut              # a failure's traceback holds this frame: no cycle back to its exception

    async def _udp(self, ep: Endpoint, qname: bytes, qtype: int, qclass: int, *, do: bool, cd: bool,
                   timeout: float) -> tuple[Reply, bytes]:
        if self.pool:
            return await self._udp_pooled(ep, qname, qtype, qclass, do=do, cd=cd, timeout=timeout)
        loop = asyncio.get_running_loop()
        qid = self.new_id()
        msg = upstream_query(qid, qname, qtype, qclass, do=do, cd=cd, udp_size=self.udp_size)
        sock = socket.socket(ep.family, socket.SOCK_DGRAM)
        fut: asyncio.Future[tuple[Reply, bytes]] = loop.create_future()
        try:
            sock.setblocking(False)
            sock.connect((ep.host, ep.port))
            sock.send(msg)
            fd = sock.fileno()
            loop.add_reader(fd, _read_reply, sock, fut, qid, qname, qtype, qclass, self.stats, str(ep))
            timer = loop.call_later(timeout, _expire, fut)
            try:
                return await fut
            finally:
                timer.cancel()
                loop.remove_reader(fd)
        finally:
            sock.close()
            # A failure's traceback holds this frame: holding the future too (which holds the
            # exception) would make a cycle that only the collector's full collections free.
            del fut

    async def _tcp(self, ep: Endpoint, qname: bytes, qtype: int, qclass: int, *, do: bool, cd: bool,
                   timeout: float) -> tuple[Reply, bytes]:
        qid = self.new_id()
        msg = upstream_query(qid, qname, qtype, qclass, do=do, cd=cd, udp_size=65535)
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(ep.host, ep.port)
            try:
                writer.write(len(msg).to_bytes(2, "big") + msg)
                size = int.from_bytes(await reader.readexactly(2), "big")
                data = await reader.readexactly(size)
            finally:
                writer.close()
        reply = parse_reply(data, qid, qname, qtype, qclass)
        return reply, data
