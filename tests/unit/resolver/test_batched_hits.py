"""The batched UDP reader leaves its hits in a sink's PackedHits, inline (resolver/server.py): one
real UDP socket, our pipeline with the demo policy in memory, datagrams from real client sockets;
the reader is called by hand, no event loop turns."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dns.message
import pytest

import rpz
from resolver import mmsg
from resolver.active import PolicyHolder
from resolver.blocklog_ship import ShippingSink, unpack
from resolver.cache import AnswerCache
from resolver.config import Endpoint, ResolverConfig
from resolver.hits import TemplateNumbers, untag
from resolver.pipeline import Pipeline
from resolver.server import Inflight, UdpListener
from resolver.upstream import UpstreamClient

pytestmark = pytest.mark.skipif(not mmsg.available(), reason="recvmmsg/sendmmsg not available from this C library")
DEMO = Path(__file__).resolve().parents[3] / "rpz" / "data" / "demo-hotline.rpz"


@contextmanager
def reader(sink: ShippingSink) -> Iterator[tuple[UdpListener, tuple[str, int]]]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    holder = PolicyHolder()
    zone = rpz.PolicyZone(rpz.compile_text(DEMO.read_bytes()), rpz.ZoneSettings(ede_code=17))
    holder.swap(rpz.Policy([zone]), 1, 0.0)
    cfg = ResolverConfig(upstreams=(Endpoint("127.0.0.1", 9),), allow=("127.0.0.0/8",))
    p = Pipeline(cfg, holder, AnswerCache(100), UpstreamClient([Endpoint("127.0.0.1", 9)], 0.1, 0.2, 1232), sink,
                 wallclock=lambda: 1_795_000_000.5)
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    srv.setblocking(False)

    async def make() -> UdpListener:
        return UdpListener(srv, p, Inflight())
    listener = loop.run_until_complete(make())
    listener.stop_reading()
    try:
        yield listener, srv.getsockname()
    finally:
        listener.close()
        loop.close()
        asyncio.set_event_loop(None)


@pytest.fixture
def clients() -> Iterator[list[socket.socket]]:
    """Three real UDP client sockets on loopback."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    try:
        for c in socks:
            c.bind(("127.0.0.1", 0))
            c.settimeout(2)
        yield socks
    finally:
        for c in socks:
            c.close()


def ask(listener: UdpListener, server: tuple[str, int], clients: list[socket.socket], names: list[str]) -> None:
    """Client k asks names[k]; one call of the reader takes them all; every answer is read."""
    for c, name in zip(clients, names, strict=True):
        c.sendto(dns.message.make_query(name, "A").to_wire(), server)
    listener.readable()
    for c in clients:
        assert dns.message.from_wire(c.recv(4096)).rcode() == 3          # NXDOMAIN


def test_remembered_answers_leave_their_hits_packed(tmp_path: Path, clients: list[socket.socket]) -> None:
    sink = ShippingSink(str(tmp_path / "absent.sock"), interval_s=3600)
    try:
        with reader(sink) as (listener, server):
            names = ["a.csam-site.test.", "b.csam-site.test.", "c.csam-site.test."]
            ask(listener, server, clients, names)           # first time: the full path (one record per query)
            assert len(sink.q) == 3 and not sink.packed_hits.batches
            ask(listener, server, clients, names)           # remembered: one packed batch
            batches, slots, tags, tuples = sink.packed_hits.take(1000)
        # the datagrams were queued before the reader ran: one receive batch of three
        assert batches == [(1_795_000_000_500, "udp", int(socket.AF_INET), 3, 3)]
        # one tag per answer: its slot, and its templates by the number they got when remembered
        assert sorted(t & 0xFF for t in tags) == [0, 1, 2] and tuples is sink.packed_hits.numbers.tuples
        records = unpack((*batches[0][:3], slots, *untag(tags, tuples)))
        asked = {c.getsockname(): n for c, n in zip(clients, names, strict=True)}
        assert sorted((r[1], r[2], r[3][0][0]) for r in records) == sorted((*k, v) for k, v in asked.items())
        assert sink.dropped == 0
    finally:
        sink.close(timeout=0.2)


def test_a_full_queue_refuses_batches_and_counts_their_hits(tmp_path: Path, clients: list[socket.socket]) -> None:
    sink = ShippingSink(str(tmp_path / "absent.sock"), queue_size=1, interval_s=3600)
    try:
        with reader(sink) as (listener, server):
            names = ["a.csam-site.test.", "b.csam-site.test.", "c.csam-site.test."]
            ask(listener, server, clients, names)          # the full path: one fits in the per-query queue
            assert len(sink.q) == 1 and sink.dropped == 2
            ask(listener, server, clients, names)          # remembered: one batch waits (the bound: one)
            assert len(sink.packed_hits.batches) == 1 and sink.dropped == 2
            ask(listener, server, clients, names)          # a second batch is refused, counted by its hits
            assert len(sink.packed_hits.batches) == 1 and sink.dropped == 2 + 3
            sink.flush()                                   # nobody listens: room for one answer, not three
            assert sink.queued() == 1 and sink.dropped == 2 + 3 + 3
    finally:
        sink.close(timeout=0.2)


def test_numbering_starts_again_between_batches_and_no_hit_is_lost(tmp_path: Path,
                                                                   clients: list[socket.socket]) -> None:
    """Remembered answers report their hits by number; once the numbers are full, answers with
    hits are not remembered, and the next receive batch starts the numbering again (forgetting
    the remembered answers in the same step): every query's hits are reported exactly once."""
    sink = ShippingSink(str(tmp_path / "absent.sock"), interval_s=3600)
    sink.packed_hits.numbers = TemplateNumbers(limit=2)
    try:
        with reader(sink) as (listener, server):
            p = listener.pipeline
            numbers = sink.packed_hits.numbers
            ask(listener, server, clients, ["a.csam-site.test.", "b.csam-site.test.", "c.csam-site.test."])
            assert len(sink.q) == 3 and numbers.full and len(p.fast_udp) == 2     # c: not remembered
            first = numbers.tuples
            ask(listener, server, clients[:2], ["a.csam-site.test.", "b.csam-site.test."])
            # started again before the batch: a and b took the full path once more, numbered anew
            assert len(sink.q) == 5 and not sink.packed_hits.batches
            assert numbers.tuples is not first and len(numbers.tuples) == 2 and not numbers.full
            ask(listener, server, clients[:2], ["a.csam-site.test.", "b.csam-site.test."])
            batches, slots, tags, tuples = sink.packed_hits.take(1000)
            assert tuples is numbers.tuples and len(tags) == 2 and len(sink.q) == 5
            records = unpack((*batches[0][:3], slots, *untag(tags, tuples)))
            assert sorted(r[3][0][0] for r in records) == ["a.csam-site.test.", "b.csam-site.test."]
            # a policy swap forgets the remembered answers and starts the numbering again
            p.swap(p.holder.active.policy, 2, 0.0)                                # type: ignore[union-attr]
            assert not p.fast_udp and numbers.tuples == [] and numbers.tuples is not tuples
    finally:
        sink.close(timeout=0.2)
