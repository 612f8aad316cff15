"""``hotline-edge demo``: the resolver on 127.0.0.1:5353 with the demo policy and a tiny upstream.

Two functions are the seams for growing the demo (signed feed, blocked-lookup log, admin API):
``start_components`` starts everything and returns a ``DemoStack`` that knows how to stop it, and
``print_dig_lines`` shows what to try. Everything is synthetic (.test names, documentation
addresses) and stays on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, TextIO

from .config import Config, Endpoint, NodeConfig, ResolverConfig, ZoneConfig
from .hits import CountingSink
from .logs import Logger

DEMO_EDE_TEXT = "blocked under order {order_ref} (hotline.rpz.test)"

# what the demo upstream knows: (name, type) -> (ttl, rdata text); everything else under .test is NXDOMAIN
DEMO_RECORDS: dict[tuple[str, str], list[str]] = {
    ("www.example.test.", "A"): ["192.0.2.10"],
    ("www.example.test.", "AAAA"): ["2001:db8::10"],
    ("news.example.test.", "A"): ["192.0.2.11"],
    ("csam-site.test.", "A"): ["198.51.100.66"],
    ("www.csam-site.test.", "A"): ["198.51.100.66"],
    ("fraud-shop.test.", "A"): ["198.51.100.67"],
    ("login.phish-kit.test.", "A"): ["198.51.100.68"],
    ("nodata-order.test.", "A"): ["198.51.100.69"],
    ("shop.fraud-ring.test.", "A"): ["203.0.113.9"],
    ("stop.hotline-edge.test.", "A"): ["192.0.2.80"],
}
DEMO_WILDCARDS = {"garden.hotline-edge.test.": ("A", "192.0.2.81")}


class DemoUpstream(asyncio.DatagramProtocol):
    """A tiny authoritative-style server for the demo names (dnslib is fine off the data plane)."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        out = demo_answer(data)
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)


def demo_answer(data: bytes) -> bytes | None:
    from dnslib import QTYPE, RCODE, RR, SOA, DNSLabel, DNSRecord
    try:
        req = DNSRecord.parse(data)
    except Exception:  # the demo upstream ignores what it cannot parse
        return None
    reply = req.reply()
    q = req.q
    name = str(q.qname).lower()
    qtype = QTYPE[q.qtype]
    known = {n for n, _ in DEMO_RECORDS}
    for rdata in DEMO_RECORDS.get((name, qtype), []):
        reply.add_answer(*RR.fromZone(f"{name} 300 IN {qtype} {rdata}"))
    for suffix, (wtype, rdata) in DEMO_WILDCARDS.items():
        if name.endswith("." + suffix) and qtype == wtype:
            reply.add_answer(*RR.fromZone(f"{name} 300 IN {wtype} {rdata}"))
            known.add(name)
    if not reply.rr:
        if name not in known and not any(name.endswith("." + s) for s in DEMO_WILDCARDS):
            reply.header.rcode = RCODE.NXDOMAIN
        reply.add_auth(RR(DNSLabel("test."), QTYPE.SOA, ttl=60,
                          rdata=SOA("ns.test.", "noc.test.", (1, 3600, 600, 86400, 60))))
    return bytes(reply.pack())


@dataclass
class DemoStack:
    resolver: Endpoint
    upstream: Endpoint
    cfg: Config
    sink: CountingSink
    stops: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    tmp: Any = None

    async def stop(self) -> None:
        for stop in reversed(self.stops):
            with contextlib.suppress(Exception):
                await stop()
        if self.tmp is not None:
            self.tmp.cleanup()


def demo_config(listen: Endpoint, upstream: Endpoint, runtime_dir: str) -> Config:
    zone = str(resources.files("rpz") / "data" / "demo-hotline.rpz")
    zc = ZoneConfig(source="file", path=zone, name="hotline.rpz.test.", ede=17,
                    ede_text=DEMO_EDE_TEXT)
    res = ResolverConfig(listen=(listen,), upstreams=(upstream,), allow=("127.0.0.0/8", "::1/128"), workers=1)
    node = NodeConfig(id="demo-node", state_dir=runtime_dir, runtime_dir=runtime_dir)
    return Config(node=node, resolver=res, zones=(zc,))


async def start_components(port: int = 5353, upstream_port: int = 5354, log: Logger | None = None) -> DemoStack:
    """Start the demo upstream and the resolver (in this process); returns the running stack."""
    from .supervisor import Supervisor
    log = log or Logger("demo")
    loop = asyncio.get_running_loop()
    tmp = tempfile.TemporaryDirectory(prefix="hotline-edge-demo-")
    up = Endpoint("127.0.0.1", upstream_port)
    transport, _ = await loop.create_datagram_endpoint(DemoUpstream, local_addr=(up.host, up.port))
    cfg = demo_config(Endpoint("127.0.0.1", port), up, tmp.name)
    sink = CountingSink()
    stack = DemoStack(resolver=cfg.resolver.listen[0], upstream=up, cfg=cfg, sink=sink, tmp=tmp)

    async def stop_upstream() -> None:
        transport.close()
    stack.stops.append(stop_upstream)
    sup = Supervisor(cfg, log.child("resolver"), env={}, sink=sink)
    try:
        await sup.start()
    except BaseException:
        await stack.stop()
        raise
    stack.stops.append(sup.shutdown)
    return stack


DIG_EXAMPLES = (
    ("csam-site.test", "A", "blocked by court order: NXDOMAIN, policy SOA, EDE 17 naming the order"),
    ("login.phish-kit.test", "A", "walled garden: CNAME to *.garden.hotline-edge.test and its address"),
    ("fraud-shop.test", "A", "stop page: CNAME to stop.hotline-edge.test"),
    ("shop.fraud-ring.test", "A", "answer address in a blocked range (rpz-ip): NXDOMAIN"),
    ("www.example.test", "A", "not listed: the upstream's answer, untouched"),
)


def print_dig_lines(stack: DemoStack, out: TextIO) -> None:
    """Print dig commands to try, each with what the resolver answered just now."""
    import dns.message
    import dns.query
    r = stack.resolver
    out.write(f"\nhotline-edge demo: resolver on {r} (policy hotline.rpz.test), demo upstream on {stack.upstream}\n")
    out.write("Try these (Ctrl-C stops everything):\n\n")
    for name, qtype, what in DIG_EXAMPLES:
        out.write(f"  dig @{r.host} -p {r.port} {name} {qtype}\n      # {what}\n")
        try:
            q = dns.message.make_query(name, qtype, use_edns=0)
            resp = dns.query.udp(q, r.host, port=r.port, timeout=2)
            out.write("      -> " + _summary(resp) + "\n")
        except Exception as exc:
            out.write(f"      -> (no answer: {exc})\n")
    out.write("\n")
    out.flush()


def _summary(resp: Any) -> str:
    import dns.rcode
    parts = [dns.rcode.to_text(resp.rcode())]
    for rrset in resp.answer:
        for rd in rrset:
            parts.append(f"{rrset.name} {rrset.ttl} {_type(rrset.rdtype)} {rd}")
    for rrset in resp.additional:
        if _type(rrset.rdtype) == "SOA":
            parts.append(f"additional SOA {rrset.name}")
    for opt in getattr(resp, "options", ()) or ():
        if getattr(opt, "otype", None) == 15:
            parts.append(f"EDE {opt.code}: {opt.text}")
    return "; ".join(parts)


def _type(t: int) -> str:
    import dns.rdatatype
    return dns.rdatatype.to_text(dns.rdatatype.RdataType.make(t))


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def run_demo(port: int, upstream_port: int, out: TextIO) -> int:
    log = Logger("demo", journald_prefix=False, min_level="warning")
    for p in (port, upstream_port):
        if not port_free(p):
            out.write(f"port {p} on 127.0.0.1 is in use: stop what uses it or pick --port/--upstream-port\n")
            return 3
    stack = await start_components(port, upstream_port, log)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await loop.run_in_executor(None, print_dig_lines, stack, out)
        if os.environ.get("HOTLINE_EDGE_DEMO_ONCE"):
            return 0
        await stop.wait()
        out.write(f"\nstopping; {stack.sink.total} policy hits were recorded\n")
        return 0
    finally:
        await stack.stop()
