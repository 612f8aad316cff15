"""resolver.cache: what is kept, for how long, and how TTLs age."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import dns.rrset

from resolver import wire
from resolver.cache import AnswerCache, cache_ttl

QN = b"\x03www\x07example\x00"


def reply(rcode: int = 0, answer: tuple[dns.rrset.RRset, ...] = (), authority: tuple[dns.rrset.RRset, ...] = (),
          tc: bool = False) -> tuple[wire.Reply, bytes]:
    q = dns.message.make_query("www.example.", "A", id=1)
    r = dns.message.make_response(q)
    r.set_rcode(rcode)
    r.answer.extend(answer)
    r.authority.extend(authority)
    if tc:
        r.flags |= dns.flags.TC
    data = r.to_wire()
    return wire.parse_reply(data, 1, QN, 1, 1), data


A300 = dns.rrset.from_text("www.example.", 300, "IN", "A", "203.0.113.20")
SOA = dns.rrset.from_text("example.", 900, "IN", "SOA", "ns.example. h.example. 1 2 3 4 120")


def test_ttl_rules() -> None:
    assert cache_ttl(reply(answer=(A300,))[0], 0, 86400, 3600) == 300
    assert cache_ttl(reply(answer=(A300,))[0], 0, 100, 3600) == 100           # max
    assert cache_ttl(reply(answer=(A300,))[0], 400, 86400, 3600) == 400       # min
    assert cache_ttl(reply(rcode=dns.rcode.NXDOMAIN, authority=(SOA,))[0], 0, 86400, 3600) == 120
    assert cache_ttl(reply(authority=(SOA,))[0], 0, 86400, 60) == 60          # NODATA, negative cap
    assert cache_ttl(reply(rcode=dns.rcode.NXDOMAIN)[0], 0, 86400, 3600) == 0  # no SOA: not kept
    assert cache_ttl(reply(rcode=dns.rcode.SERVFAIL)[0], 0, 86400, 3600) == 0
    assert cache_ttl(reply(answer=(A300,), tc=True)[0], 0, 86400, 3600) == 0


def test_entries_expire_and_age() -> None:
    c = AnswerCache(10)
    key = (QN, 1, 1, False, False)
    r, data = reply(answer=(A300,))
    c.store(key, r, data, 1000)
    e = c.get(key, 1100)
    assert e is not None and c.hits == 1
    client = wire.parse_query(dns.message.make_query("www.example.", "A", id=5).to_wire())
    out = wire.relay(client, e.flags, e.rcode, e.body_at(1100), counts=(e.an, e.ns, e.ar), edns_udp_size=1232,
                     limit=None)
    assert dns.message.from_wire(out).answer[0].ttl == 200
    assert c.get(key, 1300) is None and c.misses == 1 and len(c) == 0


def test_full_cache_drops_the_oldest() -> None:
    c = AnswerCache(16)
    r, data = reply(answer=(A300,))
    for i in range(40):
        c.store((QN, i, 1, False, False), r, data, 0)
    assert len(c) <= 16
    assert c.get((QN, 39, 1, False, False), 1) is not None
    assert c.get((QN, 0, 1, False, False), 1) is None
