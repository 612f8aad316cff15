"""The demo upstream: what a tiny authoritative server answers for the demo names.

``hotline-edge demo`` (admin_api/demo.py) runs it on loopback so the whole appliance can be tried
with nothing from the internet. Everything is synthetic (.test names, documentation addresses).
"""

from __future__ import annotations

import asyncio
from typing import Any

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
