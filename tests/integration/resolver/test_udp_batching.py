"""UDP answered in batches (recvmmsg/sendmmsg, resolver/mmsg.py) and one datagram at a time
(``HOTLINE_EDGE_UDP_MMSG=0``): bursts from many clients at once, over IPv4 and IPv6, each client
gets its own answer with its own ID, the same answers in both modes, and DROP sends nothing."""

from __future__ import annotations

import select
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from resolver import mmsg

from .peers import Peer, free_port, resolver_config, start_resolver

pytestmark = pytest.mark.integration

# no CLIENT-IP trigger: repeated questions are answered from the table of remembered answers
POLICY = """\
$ORIGIN batch.rpz.test.
$TTL 300
@   SOA ns.batch.rpz.test. admin.batch.rpz.test. 7 3600 600 86400 60
    NS  localhost.
blocked.example        CNAME .
                       TXT   "order=TW-2026-0077"
garden.example         A     192.0.2.80
drop.example           CNAME rpz-drop.
nodata.example         CNAME *.
"""

# name -> expected (rcode, first answer rdata or None); None = no reply at all (DROP)
EXPECT: dict[str, tuple[int, str | None] | None] = {
    "blocked.example.": (dns.rcode.NXDOMAIN, None),
    "garden.example.": (dns.rcode.NOERROR, "192.0.2.80"),
    "nodata.example.": (dns.rcode.NOERROR, None),
    "www.example.": (dns.rcode.NOERROR, "203.0.113.20"),    # allowed: the upstream's answer
    "drop.example.": None,
}


@pytest.fixture(scope="module", params=["batched", "per-datagram"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, unbound: Peer) -> Iterator[Peer]:
    if request.param == "batched" and not mmsg.available():
        pytest.skip("recvmmsg/sendmmsg not available from this C library")
    work: Path = tmp_path_factory.mktemp(f"udp-{request.param}")
    zone = work / "batch.zone"
    zone.write_text(POLICY)
    port = free_port()
    cfg = resolver_config(work, port, [unbound.port], [{"file": str(zone), "ede": 17}],
                          allow=("127.0.0.1/32", "::1/128"), v6=True)
    peer = start_resolver(work, cfg, port, env={"HOTLINE_EDGE_UDP_MMSG": "1" if request.param == "batched" else "0"})
    peer.extra["mode"] = request.param
    io = "recvmmsg/sendmmsg" if request.param == "batched" else "recvfrom/sendto"
    assert f'"udp_io":"{io}"' in peer.log.read_text(), "the resolver does not use the UDP I/O asked for"
    yield peer
    peer.stop()


Replies = dict[tuple[int, int], dns.message.Message | None]


def burst(port: int, family: int, host: str, clients: int, rounds: int) -> Replies:
    """``clients`` sockets each send one query per round, all sent before any reply is read (so
    the server finds many datagrams waiting at once); returns (client, round) -> reply or None."""
    names = sorted(EXPECT)
    socks = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(clients)]
    out: Replies = {}
    try:
        for s in socks:
            s.bind((host, 0))
            s.setblocking(False)
        for r in range(rounds):
            sent: dict[int, dns.message.Message] = {}
            for c, s in enumerate(socks):
                q = dns.message.make_query(names[(c + r) % len(names)], "A", use_edns=0)
                q.id = (c * 131 + r * 7919 + 1) & 0xFFFF
                sent[c] = q
                s.sendto(q.to_wire(), (host, port))
            waiting = {s.fileno(): c for c, s in enumerate(socks)
                       if EXPECT[names[(c + r) % len(names)]] is not None}
            for c in range(clients):
                out[(c, r)] = None
            deadline_polls = 0
            while waiting and deadline_polls < 40:
                ready, _, _ = select.select(list(waiting), [], [], 0.1)
                if not ready:
                    deadline_polls += 1
                    continue
                for fd in ready:
                    c = waiting.pop(fd)
                    wire = socks[c].recv(65535)
                    reply = dns.message.from_wire(wire)
                    assert sent[c].is_response(reply), f"client {c}: the reply does not answer its query"
                    out[(c, r)] = reply
            # a DROP'd query must stay unanswered: give a reply a moment to arrive, then look
            for c, s in enumerate(socks):
                if EXPECT[names[(c + r) % len(names)]] is None:
                    ready, _, _ = select.select([s], [], [], 0.05)
                    assert not ready, f"client {c}: DROP answered"
    finally:
        for s in socks:
            s.close()
    return out


def check(replies: Replies) -> dict[str, tuple[int, str | None]]:
    names = sorted(EXPECT)
    seen: dict[str, tuple[int, str | None]] = {}
    for (c, r), reply in replies.items():
        name = names[(c + r) % len(names)]
        want = EXPECT[name]
        if want is None:
            assert reply is None
            continue
        assert reply is not None, f"no answer for {name} (client {c}, round {r})"
        assert reply.question[0].name.to_text() == name
        a = [rr for rrset in reply.answer for rr in rrset if rrset.rdtype == dns.rdatatype.A]
        got = (reply.rcode(), a[0].to_text() if a else None)
        assert got == want, f"{name}: {got} != {want}"
        seen[name] = got
    return seen


def test_a_burst_from_many_ipv4_clients_gets_every_answer_to_its_own_client(server: Peer) -> None:
    # round 0 fills the table of remembered answers; rounds 1-3 are answered from it in batches
    seen = check(burst(server.port, socket.AF_INET, "127.0.0.1", clients=150, rounds=4))
    assert set(seen) == {n for n, e in EXPECT.items() if e is not None}


def test_a_burst_from_ipv6_clients_gets_every_answer_to_its_own_client(server: Peer) -> None:
    check(burst(server.port, socket.AF_INET6, "::1", clients=60, rounds=3))


def test_a_client_outside_the_acl_is_refused_even_when_the_answer_is_remembered(server: Peer) -> None:
    check(burst(server.port, socket.AF_INET, "127.0.0.1", clients=10, rounds=2))   # remembered now
    q = dns.message.make_query("blocked.example.", "A", use_edns=0)
    for source, want in (("127.0.0.2", dns.rcode.REFUSED), ("127.0.0.1", dns.rcode.NXDOMAIN)):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.bind((source, 0))
            s.sendto(q.to_wire(), ("127.0.0.1", server.port))
            assert dns.message.from_wire(s.recv(65535)).rcode() == want, source


def test_a_short_datagram_in_a_burst_does_not_disturb_the_others(server: Peer) -> None:
    good = dns.message.make_query("blocked.example.", "A", use_edns=0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bad, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        bad.bind(("127.0.0.1", 0))
        s.bind(("127.0.0.1", 0))
        s.settimeout(2)
        for k in range(20):
            bad.sendto(struct.pack("!H", k), ("127.0.0.1", server.port))      # 2 bytes: no header
            good.id = 1000 + k
            s.sendto(good.to_wire(), ("127.0.0.1", server.port))
        ids = sorted(dns.message.from_wire(s.recv(65535)).id for _ in range(20))
    assert ids == list(range(1000, 1020))
