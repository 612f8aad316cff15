"""Fuzzing the wire codec: whatever bytes arrive, parsing returns a value or raises WireError.

Three sources of input: arbitrary bytes, mutations of valid messages (bit flips, cuts, splices,
so most inputs get past the first checks), and messages built field by field with random counts
and compression pointers (including loops). Nothing else may escape, and nothing may hang.
"""

from __future__ import annotations

import os

import dns.message
import dns.rrset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolver import wire
from resolver.errors import WireError

EXAMPLES = int(os.environ.get("HOTLINE_EDGE_FUZZ_EXAMPLES", "500"))   # raise for a longer run
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

QUERIES = [dns.message.make_query(n, t, use_edns=e, want_dnssec=d).to_wire()
           for n, t, e, d in (("www.example.", "A", None, False), ("a.b.c.example.", "AAAA", 0, True),
                              ("x.test.", "TXT", 0, False))]
_R = dns.message.make_response(dns.message.make_query("chain.example.", "A", id=7, use_edns=0))
_R.answer.append(dns.rrset.from_text("chain.example.", 300, "IN", "CNAME", "blocked.example."))
_R.answer.append(dns.rrset.from_text("blocked.example.", 300, "IN", "A", "203.0.113.1"))
_R.authority.append(dns.rrset.from_text("example.", 300, "IN", "SOA", "ns.example. h.example. 1 2 3 4 5"))
_R.additional.append(dns.rrset.from_text("ns.example.", 300, "IN", "A", "127.0.0.1"))
REPLY = _R.to_wire()
QN = b"\x05chain\x07example\x00"


def _query_ok(data: bytes) -> None:
    try:
        q = wire.parse_query(data)
    except WireError as exc:
        assert exc.rcode in (None, wire.Rcode.FORMERR, wire.Rcode.NOTIMP)
        return
    assert q.qname.lower() == q.qname_lower and q.udp_size >= 512
    assert data[12 : 12 + len(q.question)] == q.question


def _reply_ok(data: bytes) -> None:
    try:
        r = wire.parse_reply(data, 7, QN, 1, 1)
    except WireError as exc:
        assert exc.rcode is None
        return
    chain = wire.walk_chain(QN, r.answer)
    assert chain.names[0] == QN and len(chain.names) <= wire.MAX_CHAIN + 1


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "set"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            data[i] = draw(st.sampled_from([0x00, 0xC0, 0xC0 | (i >> 8 & 0x3F), 0x3F, 0x40, 0xFF]))
    return bytes(data)


@SETTINGS
@given(st.binary(max_size=600))
def test_any_bytes_as_a_query(data: bytes) -> None:
    _query_ok(data)


@SETTINGS
@given(st.sampled_from(QUERIES).flatmap(mutated))
def test_mutated_queries(data: bytes) -> None:
    _query_ok(data)


@SETTINGS
@given(st.binary(max_size=600))
def test_any_bytes_as_a_reply(data: bytes) -> None:
    _reply_ok(data)


@SETTINGS
@given(mutated(REPLY))
def test_mutated_replies(data: bytes) -> None:
    _reply_ok(b"\x00\x07" + data[2:] if len(data) >= 2 else data)


@st.composite
def pointer_soup(draw: st.DrawFn) -> bytes:
    """A header, the right question, then records whose names are random label/pointer mixes."""
    n = draw(st.integers(0, 4))
    head = b"\x00\x07\x81\x80\x00\x01" + n.to_bytes(2, "big") + b"\x00\x00\x00\x00"
    body = bytearray(head + QN + b"\x00\x01\x00\x01")
    for _ in range(n):
        for _ in range(draw(st.integers(0, 4))):
            if draw(st.booleans()):
                body += b"\xc0" + bytes([draw(st.integers(0, max(0, len(body) + 4)))])
                break
            label = draw(st.binary(min_size=1, max_size=10))
            body += bytes([len(label)]) + label
        else:
            body += b"\x00"
        rtype = draw(st.sampled_from([1, 5, 2, 6, 15, 39, 28, 41]))
        rdata = draw(st.binary(max_size=30))
        body += rtype.to_bytes(2, "big") + b"\x00\x01\x00\x00\x00\x3c" + len(rdata).to_bytes(2, "big") + rdata
    return bytes(body)


@SETTINGS
@given(pointer_soup())
def test_replies_with_random_compression(data: bytes) -> None:
    _reply_ok(data)


@SETTINGS
@given(st.binary(max_size=300), st.integers(0, 300))
def test_read_name_ends(data: bytes, pos: int) -> None:
    try:
        name, end = wire.read_name(data, pos)
    except WireError:
        return
    assert len(name) <= 255 and name.endswith(b"\x00") and pos < end <= len(data)
