"""Talking to upstreams: fresh ID and source port per query, replies accepted only from the upstream
asked with the same ID and question, TC -> TCP, DO passed through, failover, SERVFAIL when all fail.

The misbehaving upstream here is a small real server on loopback sockets (it sends wrong-ID,
wrong-question and off-path replies before the genuine one), not a mock.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from . import zones
from .peers import Peer, ask, free_port, resolver_config, start_resolver

pytestmark = pytest.mark.integration

GENUINE = "192.0.2.1"
FORGED = "198.51.100.66"


class TrickyUpstream:
    """Answers every A question with GENUINE; per mode, first sends what must be ignored."""

    def __init__(self) -> None:
        self.port = free_port()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", self.port))
        self.tcp.listen(16)
        self.offpath = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.offpath.bind(("127.0.0.1", 0))
        self.mode = "normal"
        self.seen: list[tuple[int, int, bool]] = []   # (source port, id, DO)
        self.tcp_queries = 0
        self.stop = threading.Event()
        for target in (self._serve_udp, self._serve_tcp):
            threading.Thread(target=target, daemon=True).start()

    def _answer(self, q: dns.message.Message, address: str = GENUINE) -> dns.message.Message:
        r = dns.message.make_response(q)
        r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", address))
        return r

    def _serve_udp(self) -> None:
        while not self.stop.is_set():
            try:
                data, addr = self.udp.recvfrom(65535)
            except OSError:
                return
            q = dns.message.from_wire(data)
            self.seen.append((addr[1], q.id, bool(q.ednsflags & dns.flags.DO)))
            if self.mode == "silent":
                continue
            if self.mode == "tricky":
                forged = self._answer(q, FORGED)
                self.offpath.sendto(forged.to_wire(), addr)          # right ID, wrong source port
                wrong_id = self._answer(q, FORGED)
                wrong_id.id = (q.id + 1) % 65536
                self.udp.sendto(wrong_id.to_wire(), addr)            # right source, wrong ID
                other_q = dns.message.make_query("other.example.", "A", id=q.id)
                self.udp.sendto(self._answer(other_q, FORGED).to_wire(), addr)   # wrong question
            if self.mode == "tc":
                r = dns.message.make_response(q)
                r.flags |= dns.flags.TC
                self.udp.sendto(r.to_wire(), addr)
                continue
            self.udp.sendto(self._answer(q).to_wire(), addr)

    def _serve_tcp(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            with conn:
                size = int.from_bytes(conn.recv(2), "big")
                data = b""
                while len(data) < size:
                    data += conn.recv(size - len(data))
                self.tcp_queries += 1
                wire = self._answer(dns.message.from_wire(data)).to_wire()
                conn.sendall(len(wire).to_bytes(2, "big") + wire)

    def close(self) -> None:
        self.stop.set()
        for s in (self.udp, self.tcp, self.offpath):
            s.close()


def _resolver(work: Path, upstreams: list[int], pool: int = 0) -> Peer:
    zone = work / "rpz.zone"
    zone.write_text(zones.POLICY_MAIN)
    port = free_port()
    cfg = resolver_config(work, port, upstreams, [{"file": str(zone)}], extra=f"upstream_sockets = {pool}")
    return start_resolver(work, cfg, port)


@pytest.fixture(scope="module", params=[0, 4], ids=["socket-per-query", "pool-of-4"])
def tricky(tmp_path_factory: pytest.TempPathFactory,
           request: pytest.FixtureRequest) -> Iterator[tuple[TrickyUpstream, Peer]]:
    up = TrickyUpstream()
    peer = _resolver(tmp_path_factory.mktemp("tricky"), [up.port], request.param)
    peer.extra["pool"] = request.param
    yield up, peer
    peer.stop()
    up.close()


def _addresses(r: dns.message.Message) -> list[str]:
    return [rd.address for rrset in r.answer for rd in rrset]


def test_forged_replies_are_ignored(tricky: tuple[TrickyUpstream, Peer]) -> None:
    up, peer = tricky
    up.mode = "tricky"
    for i in range(5):
        r = ask(peer.port, f"forge{i}.example.")
        assert r.rcode() == dns.rcode.NOERROR
        assert _addresses(r) == [GENUINE]


def test_fresh_id_and_source_port_per_query(tricky: tuple[TrickyUpstream, Peer]) -> None:
    up, peer = tricky
    up.mode = "normal"
    before = len(up.seen)
    for i in range(40):
        assert _addresses(ask(peer.port, f"fresh{i}.example.")) == [GENUINE]
    seen = up.seen[before:]
    assert len(seen) == 40
    ports = {p for p, _, _ in seen}
    ids = {i for _, i, _ in seen}
    assert len(ids) >= 36, f"query IDs repeat: {len(ids)} distinct of 40"
    if peer.extra["pool"] == 0:
        assert len(ports) >= 36, f"source ports repeat: {len(ports)} distinct of 40"
    else:   # a pool of 4 live sockets: 4 ports in turn
        assert len(ports) == 4, ports


def test_truncated_upstream_reply_is_retried_over_tcp(tricky: tuple[TrickyUpstream, Peer]) -> None:
    up, peer = tricky
    up.mode = "tc"
    before = up.tcp_queries
    r = ask(peer.port, "truncated.example.")
    assert _addresses(r) == [GENUINE] and not r.flags & dns.flags.TC
    assert up.tcp_queries == before + 1


def test_do_bit_is_passed_through(tricky: tuple[TrickyUpstream, Peer]) -> None:
    up, peer = tricky
    up.mode = "normal"
    ask(peer.port, "do1.example.", do=True)
    ask(peer.port, "do0.example.", do=False)
    assert up.seen[-2][2] is True and up.seen[-1][2] is False


def test_failover_to_the_next_upstream(tmp_path: Path, unbound: Peer) -> None:
    silent = TrickyUpstream()
    silent.mode = "silent"
    dead = free_port()   # nothing listens there: ICMP port unreachable
    peer = _resolver(tmp_path, [dead, silent.port, unbound.port])
    try:
        r = ask(peer.port, "www.example.", timeout=3)
        assert r.rcode() == dns.rcode.NOERROR and _addresses(r) == ["203.0.113.20"]
        assert len(silent.seen) == 1   # it was asked and timed out
        # the upstream that answered is asked first from now on
        r = ask(peer.port, "chain3.example.", timeout=3)
        assert r.rcode() == dns.rcode.NOERROR and len(silent.seen) == 1
    finally:
        peer.stop()
        silent.close()


def test_servfail_with_ede_when_every_upstream_fails(tmp_path: Path) -> None:
    silent = TrickyUpstream()
    silent.mode = "silent"
    peer = _resolver(tmp_path, [free_port(), silent.port])
    try:
        r = ask(peer.port, "www.example.", timeout=4)
        assert r.rcode() == dns.rcode.SERVFAIL
        assert [(o.code, o.text) for o in r.options if o.otype == 15] == [(22, "no upstream answered")]
        # policy answers need no upstream and keep working
        assert ask(peer.port, "blocked.example.").rcode() == dns.rcode.NXDOMAIN
    finally:
        peer.stop()
        silent.close()
