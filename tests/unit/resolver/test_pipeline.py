"""The pipeline in memory: policy zones compiled from text, the cache filled with upstream replies
built by dnspython, queries handed to ``handle``/``fast`` as bytes; nothing on the network."""

from __future__ import annotations

import dataclasses

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

import rpz
from resolver import wire
from resolver.active import PolicyHolder
from resolver.cache import AnswerCache
from resolver.config import Endpoint, ResolverConfig
from resolver.hits import CountingSink
from resolver.pipeline import GARDEN, MISS, TCP, UDP, Pending, Pipeline
from resolver.upstream import UpstreamClient

ZONE = """\
$ORIGIN rpz.test.
$TTL 300
@ SOA ns.rpz.test. admin.rpz.test. 7 3600 600 86400 60
  NS localhost.
blocked.example CNAME .
                TXT "order=TW-1"
pass.example    CNAME rpz-passthru.
drop.example    CNAME rpz-drop.
tcp.example     CNAME rpz-tcp-only.
local.example   A 192.0.2.80
wild.example    CNAME *.walled.test.
"""
CLIENT_ZONE = """\
$ORIGIN cip.rpz.test.
@ SOA ns.cip.rpz.test. admin.cip.rpz.test. 3 3600 600 86400 60
  NS localhost.
32.9.2.0.192.rpz-client-ip CNAME .
"""
LOGONLY = """\
$ORIGIN log.rpz.test.
@ SOA ns.log.rpz.test. admin.log.rpz.test. 5 3600 600 86400 60
  NS localhost.
www.example CNAME .
"""


def policy(*zones: tuple[str, rpz.ZoneSettings]) -> rpz.Policy:
    return rpz.Policy([rpz.PolicyZone(rpz.compile_text(t.encode()), s) for t, s in zones])


class World:
    def __init__(self, pol: rpz.Policy | None, **cfg: object) -> None:
        self.cfg = dataclasses.replace(ResolverConfig(upstreams=(Endpoint("127.0.0.1", 9),)), **cfg)  # type: ignore[arg-type]
        self.holder = PolicyHolder()
        if pol is not None:
            self.holder.swap(pol, 1, 0.0)
        self.now = 1000.0
        self.cache = AnswerCache(100)
        self.sink = CountingSink()
        upstream = UpstreamClient([Endpoint("127.0.0.1", 9)], 0.1, 0.2, 1232)
        self.p = Pipeline(self.cfg, self.holder, self.cache, upstream, self.sink, clock=lambda: self.now,
                          wallclock=lambda: 1_795_000_000.123)

    def upstream_truth(self, name: str, rdtype: str, *rrsets: dns.rrset.RRset, do: bool = False) -> None:
        q = dns.message.make_query(name, rdtype, id=1, use_edns=0, want_dnssec=do)
        r = dns.message.make_response(q)
        for rrset in rrsets:
            r.answer.append(rrset)
        data = r.to_wire()
        qn = dns.name.from_text(name).to_wire().lower()
        t = dns.rdatatype.from_text(rdtype)
        reply = wire.parse_reply(data, 1, qn, t, 1)
        self.cache.store((qn, t, 1, do, False), reply, data, int(self.now))

    def ask(self, name: str, rdtype: str = "A", ip: str = "192.0.2.7", transport: str = UDP,
            **kw: object) -> tuple[bytes, bytes | Pending | None]:
        data = dns.message.make_query(name, rdtype, id=0x2222, **kw).to_wire()  # type: ignore[arg-type]
        return data, self.p.handle(data, ip, 5353, transport)


def msg(out: object) -> dns.message.Message:
    assert isinstance(out, bytes), out
    return dns.message.from_wire(out)


ALLOW = ("192.0.2.0/24",)


def main_policy(**settings: object) -> rpz.Policy:
    return policy((ZONE, rpz.ZoneSettings(ede_code=17, ede_text="order {order_ref}", **settings)))  # type: ignore[arg-type]


def test_blocked_answer_hit_and_memo() -> None:
    w = World(main_policy(), allow=ALLOW)
    data, out = w.ask("Blocked.Example.", use_edns=0)
    m = msg(out)
    assert m.rcode() == dns.rcode.NXDOMAIN and m.additional[0].name.to_text() == "rpz.test."
    assert [(o.code, o.text) for o in m.options] == [(17, "order TW-1")]
    hit = w.sink.recent[-1]
    assert (hit.client_ip, hit.client_port, hit.qname, hit.qtype, hit.zone, hit.serial) == (
        "192.0.2.7", 5353, "blocked.example.", 1, "rpz.test.", 7)
    assert (hit.trigger, hit.rule_owner, hit.action, hit.order_ref, hit.transport, hit.time_ms) == (
        "QNAME", "blocked.example.rpz.test.", "nxdomain", "TW-1", "udp", 1_795_000_000_123)
    # the same bytes again (another ID): answered from the remembered response, hit reported again
    again = w.p.fast(b"\x77\x77" + data[2:], "192.0.2.8", 1, UDP)
    assert isinstance(again, bytes) and again[:2] == b"\x77\x77" and again[2:] == out[2:]  # type: ignore[index]
    assert w.sink.total == 2 and w.sink.recent[-1].client_ip == "192.0.2.8"


def test_a_swap_invalidates_remembered_answers() -> None:
    w = World(main_policy(), allow=ALLOW)
    data, out = w.ask("blocked.example.")
    assert msg(out).rcode() == dns.rcode.NXDOMAIN
    empty = ZONE.split("blocked.example", maxsplit=1)[0]
    w.p.swap(policy((empty, rpz.ZoneSettings())), 2, 1.0)
    assert w.p.fast(data, "192.0.2.7", 1, UDP) is MISS
    assert isinstance(w.p.handle(data, "192.0.2.7", 1, UDP), Pending)   # now forwarded


def test_clients_outside_the_acl_and_before_the_policy() -> None:
    w = World(main_policy(), allow=ALLOW)
    _, out = w.ask("blocked.example.", ip="198.51.100.1")
    m = msg(out)
    assert m.rcode() == dns.rcode.REFUSED and not m.flags & dns.flags.RA
    for rcode, want in (("refused", dns.rcode.REFUSED), ("servfail", dns.rcode.SERVFAIL)):
        w2 = World(None, allow=ALLOW, not_ready_rcode=rcode)
        assert msg(w2.ask("www.example.")[1]).rcode() == want
    w3 = World(None, allow=ALLOW, serve_without_policy=True)
    assert isinstance(w3.ask("www.example.")[1], Pending)


def test_client_ip_decisions_are_never_remembered() -> None:
    w = World(policy((CLIENT_ZONE, rpz.ZoneSettings()), (ZONE, rpz.ZoneSettings())), allow=ALLOW)
    w.upstream_truth("www.example.", "A", dns.rrset.from_text("www.example.", 300, "IN", "A", "203.0.113.20"))
    data, out = w.ask("www.example.", ip="192.0.2.9")
    assert msg(out).rcode() == dns.rcode.NXDOMAIN
    _, out = w.ask("www.example.", ip="192.0.2.7")
    assert msg(out).rcode() == dns.rcode.NOERROR
    assert w.p.fast(data, "192.0.2.9", 1, UDP) is MISS and not w.p.fast_udp
    assert w.holder.active is not None and not w.holder.active.memo


def test_actions() -> None:
    w = World(main_policy(max_policy_ttl=20), allow=ALLOW)
    w.upstream_truth("pass.example.", "A", dns.rrset.from_text("pass.example.", 300, "IN", "A", "203.0.113.9"))
    w.upstream_truth("tcp.example.", "A", dns.rrset.from_text("tcp.example.", 300, "IN", "A", "203.0.113.7"))
    m = msg(w.ask("local.example.")[1])
    assert str(m.answer[0][0]) == "192.0.2.80" and m.answer[0].ttl == 20
    m = msg(w.ask("local.example.", "AAAA")[1])
    assert m.rcode() == dns.rcode.NOERROR and not m.answer and m.additional   # NODATA + SOA
    assert w.ask("drop.example.")[1] is None and w.sink.recent[-1].action == "drop"
    m = msg(w.ask("tcp.example.")[1])
    assert m.flags & dns.flags.TC and not m.answer
    m = msg(w.ask("tcp.example.", transport=TCP)[1])
    assert str(m.answer[0][0]) == "203.0.113.7" and w.sink.recent[-1].action == "tcp-only"
    m = msg(w.ask("pass.example.", use_edns=0)[1])
    assert str(m.answer[0][0]) == "203.0.113.9" and not m.options
    assert w.sink.recent[-1].action == "passthru"
    out = w.ask("Wild.example.")[1]
    assert isinstance(out, Pending) and out.verdict.mode == GARDEN
    assert out.verdict.decision is not None
    assert out.verdict.decision.cname_target == b"\x04wild\x07example\x06walled\x04test\x00"


def test_cname_target_blocked_after_the_answer() -> None:
    w = World(main_policy(), allow=ALLOW)
    w.upstream_truth("chain.example.", "A",
                     dns.rrset.from_text("chain.example.", 300, "IN", "CNAME", "blocked.example."),
                     dns.rrset.from_text("blocked.example.", 300, "IN", "A", "203.0.113.1"))
    m = msg(w.ask("chain.example.")[1])
    assert m.rcode() == dns.rcode.NXDOMAIN
    assert [r.rdtype for r in m.answer] == [dns.rdatatype.CNAME] and m.additional
    assert w.sink.recent[-1].qname == "blocked.example."


def test_log_only_zone_reports_and_answers_the_truth() -> None:
    w = World(policy((LOGONLY, rpz.ZoneSettings(override=rpz.Override.DISABLED)), (ZONE, rpz.ZoneSettings())),
              allow=ALLOW)
    w.upstream_truth("www.example.", "A", dns.rrset.from_text("www.example.", 300, "IN", "A", "203.0.113.20"))
    m = msg(w.ask("www.example.")[1])
    assert str(m.answer[0][0]) == "203.0.113.20"
    assert [(h.zone, h.action) for h in w.sink.recent] == [("log.rpz.test.", "disabled")]


def test_dnssec_signed_data_is_checked_first_when_break_dnssec_is_off() -> None:
    w = World(main_policy(), allow=ALLOW, break_dnssec=False)
    assert isinstance(w.ask("blocked.example.", use_edns=0, want_dnssec=True)[1], Pending)
    assert msg(w.ask("blocked.example.", use_edns=0)[1]).rcode() == dns.rcode.NXDOMAIN


@pytest.mark.parametrize("qclass", ["CH", "HS"])
def test_other_classes_are_refused(qclass: str) -> None:
    w = World(main_policy(), allow=ALLOW)
    data = dns.message.make_query("version.bind.", "TXT", rdclass=qclass).to_wire()
    assert msg(w.p.handle(data, "192.0.2.7", 1, UDP)).rcode() == dns.rcode.REFUSED


def test_a_packed_batch_reaches_a_sink_without_submit_packed_as_records() -> None:
    import socket

    from resolver.mmsg import NAME_SIZE
    w = World(main_policy(), allow=ALLOW)
    slots = bytearray(3 * NAME_SIZE)
    for i, (ip, port) in enumerate((("192.0.2.7", 5353), ("192.0.2.8", 53), ("192.0.2.9", 40000))):
        o = i * NAME_SIZE
        slots[o:o + 2] = int(socket.AF_INET).to_bytes(2, "little")
        slots[o + 2:o + 4] = port.to_bytes(2, "big")
        slots[o + 4:o + 8] = socket.inet_aton(ip)
    t1 = ("blocked.example.", 1, "rpz.test.", 7, "QNAME", "blocked.example.rpz.test.", "nxdomain", "TW-1")
    t2 = ("drop.example.", 28, "rpz.test.", 7, "QNAME", "drop.example.rpz.test.", "drop", None)
    w.p.submit_packed(int(socket.AF_INET), memoryview(bytes(slots)), [2, 0], [(t1,), (t1, t2)], UDP)
    assert [(h.client_ip, h.client_port, h.qname, h.time_ms, h.transport) for h in w.sink.recent] == [
        ("192.0.2.9", 40000, "blocked.example.", 1_795_000_000_123, "udp"),
        ("192.0.2.7", 5353, "blocked.example.", 1_795_000_000_123, "udp"),
        ("192.0.2.7", 5353, "drop.example.", 1_795_000_000_123, "udp")]


@pytest.mark.parametrize("tagging", [False, True])
def test_hit_tags_only_for_a_batched_reader_and_a_full_numbering(tagging: bool) -> None:
    """Remembered UDP answers carry their hits' tag only while a batched reader reads tags; then
    a full numbering stops remembering answers with hits (until the reader starts it again).
    Without one (the recvfrom reader), nothing changes: every answer is remembered, untagged."""
    from resolver.hits import TemplateNumbers
    w = World(main_policy(), allow=ALLOW)
    w.p.tagging = tagging
    w.p.numbers = TemplateNumbers(limit=1)
    first = dns.message.make_query("blocked.example.", "A").to_wire()
    second = dns.message.make_query("blocked.example.", "AAAA").to_wire()
    for data in (first, second):
        assert msg(w.p.handle(data, "192.0.2.7", 1, UDP)).rcode() == dns.rcode.NXDOMAIN
    remembered = {k: f[7] for k, f in w.p.fast_udp.items()}
    if tagging:
        assert remembered == {first[2:]: 0} and w.p.numbers.full          # the second waits for a restart
        w.p.restart_numbers()
        assert not w.p.fast_udp and not w.p.numbers.full and w.p.numbers.tuples == []
    else:
        assert remembered == {first[2:]: None, second[2:]: None} and w.p.numbers.tuples == []
