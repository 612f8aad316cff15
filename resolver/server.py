"""Thin asyncio adapters: receive, call the pipeline, send. No policy here.

Sockets are opened with SO_REUSEPORT so that every worker process binds the same addresses and the
kernel spreads queries over them. IPv6 sockets are IPv6-only, so an IPv4 and an IPv6 listener on
the same port coexist.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from . import mmsg
from .config import Endpoint
from .hits import hits_of, untag
from .pipeline import MISS, TCP, UDP, Pending, Pipeline

UDP_RCVBUF = 4 * 1024 * 1024
MAX_TCP_MESSAGE = 65535


def open_socket(ep: Endpoint, kind: int, reuseport: bool = True) -> socket.socket:
    """A bound socket for ``ep`` (UDP or TCP). OSError says what went wrong (in use, permission)."""
    sock = socket.socket(ep.family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if ep.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == socket.SOCK_DGRAM:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, UDP_RCVBUF)
            except OSError:
                pass
        sock.bind((ep.host, ep.port))
        if kind == socket.SOCK_STREAM:
            sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Inflight:
    """Tasks of queries waiting for the upstream, so shutdown can let them finish."""

    __slots__ = ("tasks",)

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()

    def add(self, task: asyncio.Task[Any]) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def drain(self, timeout: float) -> int:
        """Wait up to ``timeout`` for queries in flight; returns how many were still running."""
        if not self.tasks:
            return 0
        _done, pending = await asyncio.wait(set(self.tasks), timeout=timeout)
        return len(pending)


UDP_BATCH = 64          # datagrams handled per readiness callback before yielding to the loop
UDP_MAX_QUERY = 4096    # larger datagrams are cut by the kernel and then refused as malformed


class UdpListener:
    """UDP: the socket is read directly in a loop on readiness (``loop.add_reader``), up to
    UDP_BATCH datagrams per wake-up; measured here, this costs less per query than a
    DatagramProtocol. The hot path (a remembered answer for these exact query bytes) reads the
    pipeline's tables through a closure; everything else goes through ``Pipeline.handle``. Both
    count and report hits the same way (``Pipeline.fast`` is the reference version)."""

    def __init__(self, sock: socket.socket, pipeline: Pipeline, inflight: Inflight) -> None:
        self.sock = sock
        self.pipeline = pipeline
        self.inflight = inflight
        self.loop = asyncio.get_running_loop()
        self.closed = False
        self.batched = mmsg.available()
        self.readable = self._batch_reader() if self.batched else self._reader()
        self.loop.add_reader(sock.fileno(), self.readable)

    def stop_reading(self) -> None:
        if not self.closed:
            self.loop.remove_reader(self.sock.fileno())

    def close(self) -> None:
        self.stop_reading()
        self.closed = True
        self.sock.close()

    def send(self, out: bytes, addr: tuple[Any, ...]) -> None:
        if self.closed:
            return
        try:
            self.sock.sendto(out, addr)
        except OSError:   # full send buffer or an unreachable client: UDP, nothing to retry
            self.pipeline.c.send_errors += 1

    def _reader(self) -> Callable[[], None]:
        p = self.pipeline
        recvfrom = self.sock.recvfrom
        sendto = self.sock.sendto
        remembered = p.fast_udp
        acl = p.acl.memo
        clock = p.clock
        resp = p.c.resp
        hitc = p.c.hitc
        submit = p.submit
        null_sink = p.null_sink
        slow = self._handle

        def readable() -> None:
            for _ in range(UDP_BATCH):
                try:
                    data, addr = recvfrom(UDP_MAX_QUERY)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    continue
                f = remembered.get(data[2:])
                if f is not None and acl.get(addr[0]) and (not f[0] or f[0] == int(clock())):
                    if f[1] is not None:
                        try:
                            sendto(data[:2] + f[1], addr)
                        except OSError:
                            p.c.send_errors += 1
                    resp[f[3]] += 1
                    for i in f[4]:
                        hitc[i] += 1
                    if f[2] and not null_sink:
                        submit(f[2], addr[0], addr[1], UDP)
                    continue
                slow(data, addr)

        return readable

    def _batch_reader(self) -> Callable[[], None]:
        """The same hot path as ``_reader`` with one ``recvmmsg`` and one ``sendmmsg`` per batch
        (resolver/mmsg.py). A remembered answer is sent as two pieces that are never copied: the
        query's ID where the kernel received it, and the remembered bytes where they live (the
        table entry holds their address; ``keep`` holds the entries until they are sent, as the
        slow path may empty the table meanwhile). The sender's address is read as an integer
        (IPv4) or bytes (IPv6) key from where the kernel wrote it and becomes a string only the
        first time it is seen. The hits of remembered answers are reported once per batch: one int
        per answer with hits (its tag: the number of its hit templates, remembered with the answer,
        << 8 | its slot), beside the batch's address slots, so no per-hit object is built here; a
        sink with ``packed_hits`` (resolver.hits.PackedHits) gets one tuple appended there per
        batch, without a call; any other gets them through ``Pipeline.submit_packed``. The
        numbering starts again only between two batches (``Pipeline.restart_numbers``). Anything
        else takes ``_handle`` with what ``recvfrom`` would have returned."""
        p = self.pipeline
        p.tagging = True                # remembered UDP answers carry the tag of their hits (below)
        b = mmsg.Batch(self.sock, UDP_BATCH, UDP_MAX_QUERY)
        recv, send, address = b.recv, b.send, b.address
        rbuf, names, names32, rhdr32, shdr64, siov64 = b.rbuf, b.names, b.names32, b.rhdr32, b.shdr64, b.siov64
        rsize = UDP_MAX_QUERY
        rbase, name_base, nsize = b.rbase, b.name_base, mmsg.NAME_SIZE
        v4 = b.family == socket.AF_INET
        ips: dict[Any, str] = {}
        keep: list[Any] = []
        remembered = p.fast_udp
        acl = p.acl.memo
        clock = p.clock
        resp = p.c.resp
        hitc = p.c.hitc
        submit_packed = p.submit_packed
        packed = p.packed_hits          # PackedHits.add, inline below: no call per batch
        if packed is not None:
            pbatches, pappend, plimit = packed.batches, packed.batches.append, packed.limit
        numbers = p.numbers
        wallclock = p.wallclock
        family = int(b.family)      # a plain int: it travels in marshal messages
        slow = self._handle

        def readable() -> None:
            try:
                n = recv()
            except OSError:
                return
            if not n:
                return
            now = int(clock())
            j = 0
            if numbers is not None and numbers.full:    # between two batches: every tag is of one list
                p.restart_numbers()
            hit_tags: list[int] = []    # per answer with hits: its templates' number << 8 | its slot
            tag = hit_tags.append
            for i in range(n):
                off = i * rsize
                end = off + rhdr32[i * 16 + 14]
                f = remembered.get(rbuf[off + 2:end].tobytes())
                if f is not None:
                    noff = i * nsize
                    raw = names32[i * 7 + 1] if v4 else names[noff + 8:noff + 28].tobytes()
                    ip = ips.get(raw)
                    if ip is None:
                        ip = address(i)[0]
                        if len(ips) >= 65_536:
                            ips.clear()
                        ips[raw] = ip
                    if acl.get(ip) and (not f[0] or f[0] == now):
                        if f[5]:
                            keep.append(f)
                            shdr64[j * 8] = name_base + noff
                            siov64[j * 4] = rbase + off
                            siov64[j * 4 + 2] = f[5]
                            siov64[j * 4 + 3] = f[6]
                            j += 1
                        resp[f[3]] += 1
                        for k in f[4]:
                            hitc[k] += 1
                        t = f[7]
                        if t is not None:
                            tag(t | i)
                        continue
                slow(rbuf[off:end].tobytes(), address(i))
            if hit_tags:
                assert numbers is not None
                slots = (hit_tags[-1] & 0xFF) + 1
                if packed is not None:
                    if len(pbatches) < plimit:
                        pappend((int(wallclock() * 1000), family, names[:slots * nsize].tobytes(), hit_tags,
                                 numbers.tuples))
                    else:                   # the consumer has stopped: refused, counted by its hits
                        packed.dropped += hits_of(hit_tags, numbers.tuples)
                else:
                    submit_packed(family, names[:slots * nsize], *untag(hit_tags, numbers.tuples), UDP)
            if j:
                lost = send(j)
                keep.clear()
                if lost:
                    p.c.send_errors += lost

        return readable

    def _handle(self, data: bytes, addr: tuple[Any, ...]) -> None:
        r = self.pipeline.handle(data, addr[0], addr[1], UDP)
        if r.__class__ is bytes:
            self.pipeline.count(UDP, r)
            self.send(r, addr)
        elif r is None:
            self.pipeline.count(UDP, None)
        else:
            self.inflight.add(self.loop.create_task(self._slow(r, addr)))  # type: ignore[arg-type]

    async def _slow(self, p: Pending, addr: tuple[Any, ...]) -> None:
        r = await self.pipeline.resolve(p)
        self.pipeline.count(UDP, r)
        if r is not None:
            self.send(r, addr)


class TcpServer(asyncio.Protocol):
    """DNS over TCP (RFC 7766): length-prefixed messages, pipelined, answered in any order."""

    connections = 0

    def __init__(self, pipeline: Pipeline, inflight: Inflight, idle_timeout: float, max_clients: int) -> None:
        self.pipeline = pipeline
        self.inflight = inflight
        self.idle_timeout = idle_timeout
        self.max_clients = max_clients
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.loop = asyncio.get_event_loop()
        self.timer: asyncio.TimerHandle | None = None
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        TcpServer.connections += 1
        self.open = True
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0], peer[1]) if peer else ("", 0)
        if TcpServer.connections > self.max_clients:
            transport.close()
            return
        self._arm()

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(self.idle_timeout, self._idle)

    def _idle(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.open:
            TcpServer.connections -= 1
            self.open = False
        if self.timer is not None:
            self.timer.cancel()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while len(buf) >= 2:
            size = (buf[0] << 8) | buf[1]
            if len(buf) < 2 + size:
                break
            msg = bytes(buf[2 : 2 + size])
            del buf[: 2 + size]
            self._arm()
            r = self.pipeline.fast(msg, self.peer[0], self.peer[1], TCP)
            if r is MISS:
                r = self.pipeline.handle(msg, self.peer[0], self.peer[1], TCP)
            if r.__class__ is bytes:
                self.pipeline.count(TCP, r)
                self._send(r)
            elif r is None:
                self.pipeline.count(TCP, None)
            else:
                self.inflight.add(self.loop.create_task(self._slow(r)))  # type: ignore[arg-type]

    def _send(self, r: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(len(r).to_bytes(2, "big") + r)

    async def _slow(self, p: Pending) -> None:
        r = await self.pipeline.resolve(p)
        self.pipeline.count(TCP, r)
        if r is not None:
            self._send(r)
