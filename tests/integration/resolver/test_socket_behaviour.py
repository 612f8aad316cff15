"""What the resolver does with what arrives on its sockets: malformed messages, clients outside
the ACL, EDNS versions, classes, transfers, truncation, TCP framing; and its metrics endpoint."""

from __future__ import annotations

import random
import socket
import struct
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdataclass
import pytest

from . import zones
from .peers import Peer, ask, free_port, resolver_config, start_resolver

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, unbound: Peer) -> Iterator[Peer]:
    work: Path = tmp_path_factory.mktemp("sockets")
    zone = work / "rpz.zone"
    zone.write_text(zones.POLICY_MAIN)
    port = free_port()
    metrics = free_port()
    cfg = resolver_config(work, port, [unbound.port], [{"file": str(zone), "ede": 15}],
                          allow=("127.0.0.1/32", "127.0.0.4/32"), metrics_port=metrics)
    peer = start_resolver(work, cfg, port)
    peer.extra["metrics"] = metrics
    yield peer
    peer.stop()


def udp_exchange(port: int, payload: bytes, timeout: float = 0.4, source: str = "127.0.0.1") -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.settimeout(timeout)
        s.sendto(payload, ("127.0.0.1", port))
        try:
            return s.recv(65535)
        except TimeoutError:
            return None


def header(qid: int = 0x1234, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


QNAME = b"\x03www\x07example\x00"
QUESTION = QNAME + b"\x00\x01\x00\x01"
OPT = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
OPT_TAIL = OPT[1:]                                                   # type, class, TTL, RDLENGTH 0
LONG_NAME = b"\x3f" + b"a" * 63 + (b"\x3f" + b"b" * 63) * 4 + b"\x00"  # 321 octets
A_RECORD = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x01\x02\x03\x04"

# (what, bytes, expected): expected is None (no reply) or the rcode of a reply with the same ID
MALFORMED = [
    ("empty datagram", b"", None),
    ("shorter than a header", b"\x12\x34\x01\x00\x00", None),
    ("a response sent to us", header(flags=0x8180) + QUESTION, None),
    ("no question", header(qd=0), dns.rcode.FORMERR),
    ("two questions", header(qd=2) + QUESTION + QUESTION, dns.rcode.FORMERR),
    ("question name cut short", header() + b"\x03www\x07exa", dns.rcode.FORMERR),
    ("no QTYPE/QCLASS", header() + QNAME, dns.rcode.FORMERR),
    ("compression pointer in the question", header() + b"\xc0\x0c\x00\x01\x00\x01", dns.rcode.FORMERR),
    ("label type 0x40", header() + b"\x41abc\x00\x00\x01\x00\x01", dns.rcode.FORMERR),
    ("name longer than 255 octets", header() + LONG_NAME + b"\x00\x01\x00\x01", dns.rcode.FORMERR),
    ("compression loop in the additional section", header(ar=1) + QUESTION + b"\xc0\x1d" + OPT_TAIL,
     dns.rcode.FORMERR),
    ("two OPT records", header(ar=2) + QUESTION + OPT + OPT, dns.rcode.FORMERR),
    ("OPT not owned by the root", header(ar=1) + QUESTION + b"\x01a\x00" + OPT_TAIL, dns.rcode.FORMERR),
    ("additional record runs past the end", header(ar=1) + QUESTION + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x10",
     dns.rcode.FORMERR),
    ("answer records in a query", header(an=1) + QUESTION + A_RECORD, dns.rcode.FORMERR),
    ("trailing garbage", header() + QUESTION + b"garbage", dns.rcode.FORMERR),
    ("opcode NOTIFY", header(flags=0x2000) + QUESTION, dns.rcode.NOTIMP),
    ("opcode UPDATE", header(flags=0x2800) + QUESTION, dns.rcode.NOTIMP),
    ("oversized garbage", header() + bytes(4000), dns.rcode.FORMERR),
]


def _still_answers(port: int) -> None:
    r = ask(port, "www.example.")
    assert r.rcode() == dns.rcode.NOERROR and r.answer


@pytest.mark.parametrize(("what", "payload", "expected"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_gets_formerr_or_nothing(server: Peer, what: str, payload: bytes, expected: int | None) -> None:
    reply = udp_exchange(server.port, payload)
    if expected is None:
        assert reply is None, f"{what}: expected no reply, got {reply!r}"
    else:
        assert reply is not None, f"{what}: expected {dns.rcode.to_text(expected)}, got no reply"
        qid, flags = struct.unpack("!HH", reply[:4])
        assert qid == 0x1234 and flags & 0x8000, f"{what}: reply {reply!r}"
        assert flags & 0xF == expected, f"{what}: rcode {flags & 0xF}"
    _still_answers(server.port)


def test_random_garbage_never_crashes_the_server(server: Peer) -> None:
    rng = random.Random(20261122)
    sent = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        for _ in range(300):
            n = rng.choice([1, 11, 12, 13, 20, 40, 300, 1500])
            payload = bytes(rng.getrandbits(8) for _ in range(n))
            sent.add(payload[:2])
            s.sendto(payload, ("127.0.0.1", server.port))
        s.settimeout(0.5)
        replies = []
        try:
            while True:
                replies.append(s.recv(65535))
        except TimeoutError:
            pass
    for reply in replies:   # anything we answer is a reply (QR=1) to one of those IDs
        assert reply[:2] in sent and reply[2] & 0x80
    _still_answers(server.port)


def test_malformed_over_tcp_and_broken_framing(server: Peer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as s:
        bad = header(qd=2) + QUESTION + QUESTION
        s.sendall(struct.pack("!H", len(bad)) + bad)
        size = struct.unpack("!H", s.recv(2))[0]
        reply = s.recv(size)
        assert reply[3] & 0xF == dns.rcode.FORMERR
        # a length prefix promising more than ever comes, then close: the server must shrug
        s.sendall(b"\xff\xff" + b"x" * 100)
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as s:
        s.sendall(b"\x00")   # half a length prefix
    _still_answers(server.port)


def test_tcp_pipelined_queries_all_answered(server: Peer) -> None:
    names = ["www.example.", "blocked.example.", "garden.example.", "chain3.example."]
    msgs = [dns.message.make_query(n, "A", id=100 + i) for i, n in enumerate(names)]
    with socket.create_connection(("127.0.0.1", server.port), timeout=3) as s:
        s.sendall(b"".join(struct.pack("!H", len(w)) + w for w in (m.to_wire() for m in msgs)))
        got = {}
        buf = b""
        while len(got) < len(msgs):
            chunk = s.recv(65535)
            assert chunk, "connection closed early"
            buf += chunk
            while len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
                size = struct.unpack("!H", buf[:2])[0]
                r = dns.message.from_wire(buf[2 : 2 + size])
                buf = buf[2 + size :]
                got[r.id] = r
    assert sorted(got) == [100, 101, 102, 103]
    assert got[101].rcode() == dns.rcode.NXDOMAIN
    assert str(got[102].answer[0][0]) == "192.0.2.80"


def test_clients_outside_the_acl_are_refused(server: Peer) -> None:
    r = ask(server.port, "www.example.", source="127.0.0.9")
    assert r.rcode() == dns.rcode.REFUSED and not r.answer
    assert not r.flags & dns.flags.RA
    assert ask(server.port, "www.example.", source="127.0.0.4").rcode() == dns.rcode.NOERROR
    # and malformed messages from outside get nothing at all (no reflection)
    assert udp_exchange(server.port, header(qd=2) + QUESTION + QUESTION, source="127.0.0.9") is None


def test_edns_version_1_gets_badvers(server: Peer) -> None:
    q = dns.message.make_query("www.example.", "A", use_edns=1)
    r = dns.query.udp(q, "127.0.0.1", port=server.port, timeout=2)
    assert r.rcode() == dns.rcode.BADVERS and r.edns == 0


def test_chaos_class_and_zone_transfers_are_refused(server: Peer) -> None:
    q = dns.message.make_query("version.bind.", "TXT", rdclass=dns.rdataclass.CH)
    assert dns.query.udp(q, "127.0.0.1", port=server.port, timeout=2).rcode() == dns.rcode.REFUSED
    q = dns.message.make_query("example.", "AXFR")
    assert dns.query.udp(q, "127.0.0.1", port=server.port, timeout=2).rcode() == dns.rcode.REFUSED


def test_large_answers_truncate_over_udp_without_edns_and_come_whole_over_tcp(server: Peer) -> None:
    plain = ask(server.port, "big.example.", "TXT", edns=None)
    assert plain.flags & dns.flags.TC and not plain.answer
    full = ask(server.port, "big.example.", "TXT", tcp=True)
    assert not full.flags & dns.flags.TC and len(full.answer[0]) == 10
    with_edns = ask(server.port, "big.example.", "TXT", edns=0)
    assert not with_edns.flags & dns.flags.TC and len(with_edns.answer[0]) == 10


def test_metrics_endpoint_counts_what_happened(server: Peer) -> None:
    ask(server.port, "blocked.example.")
    ask(server.port, "www.example.", source="127.0.0.9")
    body = urllib.request.urlopen(f"http://127.0.0.1:{server.extra['metrics']}/metrics", timeout=5).read().decode()
    assert 'hotline_edge_resolver_policy_hits_total{action="nxdomain",zone="rpz.test."}' in body
    assert 'hotline_edge_resolver_refused_total{reason="acl"}' in body
    assert 'hotline_edge_resolver_queries_total{rcode="nxdomain",transport="udp"}' in body
    assert 'hotline_edge_resolver_policy_serial{zone="rpz.test."} 2.026010101e+09' in body
    assert "hotline_edge_resolver_ready 1.0" in body
    assert 'hotline_edge_resolver_upstream_latency_seconds_count{upstream="127.0.0.1:' in body
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"http://127.0.0.1:{server.extra['metrics']}/other", timeout=5)


def test_metrics_show_the_data_plane_collects_its_oldest_generation_rarely(server: Peer) -> None:
    """The resolver's own process (one worker: it serves queries itself) runs with the collector
    setting of decision 0003 (resolver.service.GC_THRESHOLDS), and says so."""
    from resolver.service import GC_THRESHOLDS
    body = urllib.request.urlopen(f"http://127.0.0.1:{server.extra['metrics']}/metrics", timeout=5).read().decode()
    assert f"hotline_edge_resolver_gc_full_collection_every {float(GC_THRESHOLDS[2])}" in body, body[-2000:]
    assert 'hotline_edge_resolver_gc_collections_total{generation="0"}' in body
