"""resolver.wire: the DNS message codec, checked against dnspython as the independent reader/writer."""

from __future__ import annotations

import struct

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from resolver import wire
from resolver.errors import WireError


def q_wire(name: str = "Www.Example.TEST.", rdtype: str = "A", **kw: object) -> bytes:
    return dns.message.make_query(name, rdtype, id=0x4242, **kw).to_wire()  # type: ignore[arg-type]


def test_parse_query_keeps_case_and_lowers_once() -> None:
    q = wire.parse_query(q_wire())
    assert q.id == 0x4242 and q.qtype == 1 and q.qclass == 1
    assert q.qname == b"\x03Www\x07Example\x04TEST\x00"
    assert q.qname_lower == b"\x03www\x07example\x04test\x00"
    assert not q.edns and q.udp_size == 512 and not q.do


def test_parse_query_reads_edns_size_and_do() -> None:
    q = wire.parse_query(q_wire(use_edns=0, payload=4096, want_dnssec=True))
    assert q.edns and q.udp_size == 4096 and q.do and q.edns_version == 0
    small = wire.parse_query(q_wire(use_edns=0, payload=100))
    assert small.udp_size == 512   # RFC 6891 6.2.5: values below 512 are treated as 512


QUESTION = b"\x03www\x07example\x00\x00\x01\x00\x01"
OPT = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"


def hdr(flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", 7, flags, qd, an, ns, ar)


@pytest.mark.parametrize(("data", "rcode"), [
    (b"", None),
    (b"\x00" * 11, None),
    (hdr(flags=0x8000) + QUESTION, None),
    (hdr(flags=0x2000) + QUESTION, wire.Rcode.NOTIMP),
    (hdr(qd=0), wire.Rcode.FORMERR),
    (hdr(qd=2) + QUESTION + QUESTION, wire.Rcode.FORMERR),
    (hdr(ns=1) + QUESTION, wire.Rcode.FORMERR),
    (hdr() + b"\x03www", wire.Rcode.FORMERR),
    (hdr() + b"\xc0\x0c\x00\x01\x00\x01", wire.Rcode.FORMERR),
    (hdr() + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01", wire.Rcode.FORMERR),
    (hdr() + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01", wire.Rcode.FORMERR),
    (hdr() + QUESTION + b"\x00", wire.Rcode.FORMERR),
    (hdr(ar=2) + QUESTION + OPT + OPT, wire.Rcode.FORMERR),
    (hdr(ar=1) + QUESTION + b"\x01x\x00" + OPT[1:], wire.Rcode.FORMERR),
    (hdr(ar=1) + QUESTION + OPT[:-1], wire.Rcode.FORMERR),
    (hdr(ar=1) + QUESTION + b"\xc0", wire.Rcode.FORMERR),
])
def test_parse_query_refuses_malformed(data: bytes, rcode: int | None) -> None:
    with pytest.raises(WireError) as ei:
        wire.parse_query(data)
    assert ei.value.rcode == rcode


def test_name_of_exactly_255_octets_is_accepted() -> None:
    name = (b"\x3f" + b"a" * 63) * 3 + b"\x3d" + b"b" * 61 + b"\x00"
    assert len(name) == 255
    q = wire.parse_query(hdr() + name + b"\x00\x01\x00\x01")
    assert q.qname == name


def test_header_error_echoes_id_and_opcode_only() -> None:
    out = wire.header_error(hdr(qd=2, flags=0x0110) + QUESTION * 2, wire.Rcode.FORMERR)
    assert out == struct.pack("!HHHHHH", 7, 0x8000 | 0x0110 | 1, 0, 0, 0, 0)
    assert wire.header_error(b"\x00" * 5, 1) is None
    assert wire.header_error(hdr(flags=0x8000), 1) is None


def test_ede_option_decodes_with_dnspython() -> None:
    opt = wire.ede_option(17, "order TW-2026-0042")
    code, length = struct.unpack("!HH", opt[:4])
    assert code == 15 and length == len(opt) - 4
    ede = dns.edns.EDEOption.from_wire_parser(15, dns.wire.Parser(opt[4:]))  # type: ignore[attr-defined]
    assert ede.code == 17 and ede.text == "order TW-2026-0042"


def _pieces(rcode: int = 3, ede: bytes = b"") -> wire.Pieces:
    rdata = b"\x02ns\x03rpz\x04test\x00\x05admin\x03rpz\x04test\x00" + struct.pack("!IIIII", 1, 2, 3, 4, 60)
    soa = wire.encode_rr(b"\x03rpz\x04test\x00", 6, 60, rdata)
    return wire.Pieces(rcode, 0, b"", 0, b"", 0, soa, 1, ede)


def test_assemble_synthesized_nxdomain_with_and_without_edns() -> None:
    p = _pieces(ede=wire.ede_option(16, "censored"))
    q = wire.parse_query(q_wire(use_edns=0, want_dnssec=True))
    m = dns.message.from_wire(wire.assemble(q, p, 1232, 1232))
    assert m.id == 0x4242 and m.rcode() == dns.rcode.NXDOMAIN
    assert m.flags & dns.flags.QR and m.flags & dns.flags.RA and m.flags & dns.flags.RD and not m.flags & dns.flags.AA
    assert m.question[0].name.to_text() == "Www.Example.TEST."       # the client's case, echoed
    assert m.additional[0].name.to_text() == "rpz.test." and m.additional[0].ttl == 60
    assert m.edns == 0 and m.payload == 1232 and m.ednsflags & dns.flags.DO
    assert [(o.code, o.text) for o in m.options] == [(16, "censored")]
    plain = dns.message.from_wire(wire.assemble(wire.parse_query(q_wire()), p, 1232, 512))
    assert plain.edns == -1 and plain.rcode() == dns.rcode.NXDOMAIN


def test_local_data_owner_points_at_the_question() -> None:
    rr = wire.encode_rr(wire.POINTER_TO_QNAME, 1, 30, bytes([192, 0, 2, 80]))
    p = wire.Pieces(0, 0, rr, 1, b"", 0, b"", 0, b"")
    m = dns.message.from_wire(wire.assemble(wire.parse_query(q_wire()), p, 1232, None))
    assert m.answer[0].name.to_text() == "Www.Example.TEST." and str(m.answer[0][0]) == "192.0.2.80"


def test_assemble_truncates_over_the_limit() -> None:
    big = b"".join(wire.encode_rr(wire.POINTER_TO_QNAME, 16, 30, b"\xff" + bytes([65 + i]) * 255) for i in range(3))
    p = wire.Pieces(0, 0, big, 3, b"", 0, b"", 0, b"")
    q = wire.parse_query(q_wire())
    m = dns.message.from_wire(wire.assemble(q, p, 1232, 512))
    assert m.flags & dns.flags.TC and not m.answer
    assert len(dns.message.from_wire(wire.assemble(q, p, 1232, None)).answer[0]) == 3


def _reply(query: dns.message.Message, *rrsets: dns.rrset.RRset, extra_opt: bool = True) -> bytes:
    r = dns.message.make_response(query)
    for rrset in rrsets:
        r.answer.append(rrset)
    if not extra_opt:
        r.use_edns(False)
    return r.to_wire()


def test_parse_reply_checks_id_and_question_and_expands_names() -> None:
    query = dns.message.make_query("chain.example.", "A", id=99, use_edns=0)
    data = _reply(query,
                  dns.rrset.from_text("chain.example.", 300, "IN", "CNAME", "mid.example."),
                  dns.rrset.from_text("mid.example.", 300, "IN", "CNAME", "end.example."),
                  dns.rrset.from_text("end.example.", 60, "IN", "A", "198.51.100.1", "198.51.100.2"))
    qn = b"\x05chain\x07example\x00"
    r = wire.parse_reply(data, 99, qn, 1, 1)
    assert [rr.rtype for rr in r.answer] == [5, 5, 1, 1]
    assert r.answer[0].rdata == b"\x03mid\x07example\x00"   # compressed on the wire, expanded here
    assert r.edns and r.body_end < len(data)
    with pytest.raises(WireError) as ei:
        wire.parse_reply(data, 98, qn, 1, 1)
    assert ei.value.rcode is None
    with pytest.raises(WireError):
        wire.parse_reply(data, 99, b"\x05other\x07example\x00", 1, 1)
    with pytest.raises(WireError):
        wire.parse_reply(data, 99, qn, 28, 1)
    chain = wire.walk_chain(qn, r.answer)
    assert chain.names == (qn, b"\x03mid\x07example\x00", b"\x03end\x07example\x00")
    assert sorted(chain.addresses[2]) == [bytes([198, 51, 100, 1]), bytes([198, 51, 100, 2])]
    assert chain.addresses[0] == () and len(chain.links[1]) == 1


def test_walk_chain_through_a_dname() -> None:
    query = dns.message.make_query("x.dn.example.", "A", id=1)
    data = _reply(query,
                  dns.rrset.from_text("dn.example.", 300, "IN", "DNAME", "blocked.example."),
                  dns.rrset.from_text("x.dn.example.", 300, "IN", "CNAME", "x.blocked.example."),
                  dns.rrset.from_text("x.blocked.example.", 300, "IN", "A", "203.0.113.2"))
    qn = b"\x01x\x02dn\x07example\x00"
    r = wire.parse_reply(data, 1, qn, 1, 1)
    chain = wire.walk_chain(qn, r.answer)
    assert chain.names[1] == b"\x01x\x07blocked\x07example\x00"
    assert [rr.rtype for rr in chain.links[1]] == [39, 5]


def test_walk_chain_stops_on_a_loop() -> None:
    query = dns.message.make_query("a.example.", "A", id=1)
    data = _reply(query,
                  dns.rrset.from_text("a.example.", 300, "IN", "CNAME", "b.example."),
                  dns.rrset.from_text("b.example.", 300, "IN", "CNAME", "a.example."))
    qn = b"\x01a\x07example\x00"
    chain = wire.walk_chain(qn, wire.parse_reply(data, 1, qn, 1, 1).answer)
    assert len(chain.names) == 2


def test_compression_loop_in_a_reply_is_refused() -> None:
    qn = b"\x01a\x07example\x00"
    data = struct.pack("!HHHHHH", 5, 0x8180, 1, 1, 0, 0) + qn + b"\x00\x01\x00\x01"
    loop_at = len(data)
    data += struct.pack("!H", 0xC000 | loop_at) + b"\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x01\x02\x03\x04"
    with pytest.raises(WireError, match="backwards"):
        wire.parse_reply(data, 5, qn, 1, 1)
    forward = struct.pack("!HHHHHH", 5, 0x8180, 1, 1, 0, 0) + qn + b"\x00\x01\x00\x01"
    forward += struct.pack("!H", 0xC000 | (len(forward) + 2)) + b"\x00"
    with pytest.raises(WireError):
        wire.parse_reply(forward, 5, qn, 1, 1)


def test_relay_uses_client_id_question_and_our_opt_and_ages_ttls() -> None:
    query = dns.message.make_query("www.example.", "A", id=3, use_edns=0)
    data = _reply(query, dns.rrset.from_text("www.example.", 300, "IN", "A", "203.0.113.20"))
    qn = b"\x03www\x07example\x00"
    r = wire.parse_reply(data, 3, qn, 1, 1)
    body = data[r.body_start : r.body_end]
    offs = tuple((rr.ttl_off - r.body_start, rr.ttl) for rr in r.answer)
    aged = wire.age_body(body, offs, 100)
    client = wire.parse_query(dns.message.make_query("WWW.example.", "A", id=77).to_wire())
    out = wire.relay(client, r.flags, r.rcode, aged, counts=(1, 0, 0), edns_udp_size=1232, limit=512)
    m = dns.message.from_wire(out)
    assert m.id == 77 and m.question[0].name.to_text() == "WWW.example." and m.edns == -1
    assert m.answer[0].ttl == 200 and str(m.answer[0][0]) == "203.0.113.20"
    assert wire.age_body(body, offs, 1000) != body
    assert dns.message.from_wire(wire.relay(client, r.flags, r.rcode, wire.age_body(body, offs, 1000),
                                            counts=(1, 0, 0), edns_udp_size=1232, limit=512)).answer[0].ttl == 0


def test_upstream_query_always_carries_edns_with_the_clients_do_bit() -> None:
    m = dns.message.from_wire(wire.upstream_query(9, b"\x01a\x04test\x00", 28, 1, do=True, cd=True, udp_size=1232))
    assert m.id == 9 and m.flags & dns.flags.RD and m.flags & dns.flags.CD
    assert m.edns == 0 and m.ednsflags & dns.flags.DO and m.payload == 1232
