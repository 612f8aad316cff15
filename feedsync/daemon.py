"""``hotline-edge feed daemon``: refresh timers per feed and a NOTIFY listener per xfr feed.

NOTIFY (RFC 1996) is only a hint: an accepted NOTIFY wakes the feed's worker, which asks the
primary for the SOA and transfers if the serial moved. A NOTIFY is accepted only from a configured
primary's address, for a configured zone; a TSIG on it must verify. Everything else is answered
REFUSED (or dropped when it does not parse or its TSIG fails) and logged.

Timers (pure, ``next_delay``): xfr feeds follow the SOA refresh after a success and the SOA retry
after a failure, both clamped to [refresh_min, refresh_max]; bundle feeds use ``refresh`` (and at
most 60 s after a failure). A bundle feed also wakes when an entry starts or stops being in force.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import dns.exception
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype

from .config import Config, FeedConfig, parse_listen
from .log import log
from .statedb import FeedState


def next_delay(feed: FeedConfig, st: FeedState, ok: bool, now: float) -> float:
    if feed.type == "xfr":
        base = (st.soa_refresh if ok else st.soa_retry) or feed.refresh_min
        delay = float(min(max(base, feed.refresh_min), feed.refresh_max))
    else:
        delay = float(feed.refresh if ok else min(feed.refresh, 60))
    if st.next_change_at is not None and st.next_change_at > now:
        delay = min(delay, st.next_change_at - now + 0.01)
    return max(delay, 0.01)


@dataclass(frozen=True, slots=True)
class NotifyOutcome:
    reply: bytes | None
    feed: str | None
    reason: str


def handle_notify(wire: bytes, source: str, feeds: Sequence[FeedConfig]) -> NotifyOutcome:
    """Pure: one datagram from ``source`` -> reply bytes (or None) and the feed to wake."""
    ring: dict[dns.name.Name, Any] = {}
    from .xfr import keyring
    for f in feeds:
        ring.update(keyring(f))
    try:
        q = dns.message.from_wire(wire, keyring=ring)
    except dns.message.UnknownTSIGKey:
        return NotifyOutcome(None, None, "signed with an unknown TSIG key: dropped")
    except dns.exception.DNSException as exc:
        return NotifyOutcome(None, None, f"unparseable ({type(exc).__name__}): dropped")
    if q.flags & 0x8000 or q.opcode() != dns.opcode.NOTIFY:
        return NotifyOutcome(None, None, "not a NOTIFY request: dropped")
    resp = dns.message.make_response(q)
    if len(q.question) != 1 or q.question[0].rdtype != dns.rdatatype.SOA:
        resp.set_rcode(dns.rcode.FORMERR)
        return NotifyOutcome(resp.to_wire(), None, "NOTIFY without one SOA question")
    zone = q.question[0].name.to_text().lower().rstrip(".")
    feed = next((f for f in feeds if f.zone == zone), None)
    if feed is None:
        resp.set_rcode(dns.rcode.REFUSED)
        return NotifyOutcome(resp.to_wire(), None, f"NOTIFY for {zone}, which no feed here transfers")
    if source not in {p.host for p in feed.primaries}:
        resp.set_rcode(dns.rcode.REFUSED)
        return NotifyOutcome(resp.to_wire(), None, f"NOTIFY for {zone} from {source}, not a configured primary")
    return NotifyOutcome(resp.to_wire(), feed.name, "accepted: checking the SOA")


class NotifyProtocol(asyncio.DatagramProtocol):
    def __init__(self, feeds: Sequence[FeedConfig], wake: Callable[[str], None]) -> None:
        self.feeds = feeds
        self.wake = wake
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        out = handle_notify(data, str(addr[0]), self.feeds)
        log("notify", "info" if out.feed else "warning", source=str(addr[0]), feed=out.feed, reason=out.reason)
        if out.reply is not None and self.transport is not None:
            self.transport.sendto(out.reply, addr)
        if out.feed is not None:
            self.wake(out.feed)


async def notify_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, feeds: Sequence[FeedConfig],
                     wake: Callable[[str], None]) -> None:
    """NOTIFY over TCP (RFC 1996 allows it; Knot DNS sends it this way): 2-byte length, message."""
    peer = writer.get_extra_info("peername")
    try:
        for _ in range(16):
            head = await asyncio.wait_for(reader.readexactly(2), 10)
            data = await asyncio.wait_for(reader.readexactly(int.from_bytes(head, "big")), 10)
            out = handle_notify(data, str(peer[0]), feeds)
            log("notify", "info" if out.feed else "warning", source=str(peer[0]), transport="tcp", feed=out.feed,
                reason=out.reason)
            if out.reply is not None:
                writer.write(len(out.reply).to_bytes(2, "big") + out.reply)
                await writer.drain()
            if out.feed is not None:
                wake(out.feed)
    except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()


class Worker:
    """One feed: its own thread (one Updater / one zone at a time), woken by timers or NOTIFY."""

    def __init__(self, cfg: Config, feed: FeedConfig, db_path: str) -> None:
        self.cfg = cfg
        self.feed = feed
        self.db_path = db_path
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"feed-{feed.name}")
        self.event = asyncio.Event()
        self._sync: Any = None

    def _cycle(self) -> tuple[bool, FeedState]:
        from .control import ControlClient
        from .statedb import StateDB
        from .sync import FeedSync
        if self._sync is None:
            self._sync = FeedSync(self.cfg, self.feed, StateDB(self.db_path), ControlClient(self.cfg.control_socket))
            self._sync.load_seed()
        res = self._sync.cycle()
        return res.outcome in ("applied", "no_change", "held"), self._sync.db.state(self.feed.name)

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                ok, st = await loop.run_in_executor(self.pool, self._cycle)
            except Exception as exc:  # a bug must not end the daemon's other feeds
                log("cycle_crashed", "error", feed=self.feed.name, error=f"{type(exc).__name__}: {exc}")
                ok, st = False, FeedState(self.feed.name)
            delay = next_delay(self.feed, st, ok, time.time())
            waker = asyncio.ensure_future(self.event.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waker, stopper}, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            for t in (waker, stopper):
                t.cancel()
            self.event.clear()
        self.pool.shutdown(wait=True)


async def serve(cfg: Config, db_path: str, stop: asyncio.Event, ready: Callable[[], None] | None = None) -> None:
    workers = {f.name: Worker(cfg, f, db_path) for f in cfg.feeds}
    loop = asyncio.get_running_loop()
    transports = []
    servers: list[asyncio.Server] = []
    by_listen: dict[str, list[FeedConfig]] = {}
    for f in cfg.feeds:
        if f.type == "xfr" and f.notify_listen:
            by_listen.setdefault(f.notify_listen, []).append(f)
    for listen, feeds in by_listen.items():
        host, port = parse_listen(listen)
        tr, _ = await loop.create_datagram_endpoint(
            lambda feeds=feeds: NotifyProtocol(feeds, lambda name: workers[name].event.set()),  # type: ignore[misc]
            local_addr=(host, port))
        transports.append(tr)

        def wake(name: str) -> None:
            workers[name].event.set()

        srv = await asyncio.start_server(
            lambda r, w, feeds=feeds: notify_tcp(r, w, feeds, wake), host, port)  # type: ignore[misc]
        servers.append(srv)
        log("notify_listening", listen=listen, feeds=[f.name for f in feeds], transports=["udp", "tcp"])
    if ready is not None:
        ready()
    try:
        await asyncio.gather(*(w.run(stop) for w in workers.values()))
    finally:
        for tr in transports:
            tr.close()
        for srv in servers:
            srv.close()


def run(cfg: Config, db_path: str, metrics_listen: str | None = None) -> int:
    if metrics_listen:
        from prometheus_client import start_http_server

        from .metrics import registry
        host, port = parse_listen(metrics_listen)
        start_http_server(port, host, registry=registry(cfg, db_path))
        log("metrics_listening", listen=metrics_listen)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        log("daemon_started", feeds=[f.name for f in cfg.feeds])
        await serve(cfg, db_path, stop)
        log("daemon_stopped")

    asyncio.run(main())
    return 0
