"""break_dnssec against a zone Knot really signs, and answering over IPv6."""

from __future__ import annotations

from pathlib import Path

import dns.flags
import dns.rcode
import dns.rdatatype
import pytest

from .peers import Peer, ask, free_port, resolver_config, start_resolver, wait_until

pytestmark = pytest.mark.integration

POLICY = """\
$ORIGIN rpz.test.
@ SOA ns.rpz.test. admin.rpz.test. 1 3600 600 86400 60
  NS localhost.
www.signed.example CNAME .
"""


def _start(tmp_path: Path, unbound: Peer, *, break_dnssec: bool) -> Peer:
    zone = tmp_path / "rpz.zone"
    zone.write_text(POLICY)
    port = free_port()
    cfg = resolver_config(tmp_path, port, [unbound.port], [{"file": str(zone)}], v6=True,
                          allow=("127.0.0.0/8", "::1/128"), extra=f"break_dnssec = {str(break_dnssec).lower()}")
    return start_resolver(tmp_path, cfg, port)


def _signed(unbound: Peer) -> None:
    def ready() -> bool:
        r = ask(unbound.port, "www.signed.example.", do=True)
        return any(rr.rdtype == dns.rdatatype.RRSIG for rr in r.answer)
    wait_until(ready, 20, "Knot signing signed.example.")


def test_break_dnssec_false_answers_signed_data_truthfully_to_do_queries(tmp_path: Path, unbound: Peer) -> None:
    _signed(unbound)
    peer = _start(tmp_path, unbound, break_dnssec=False)
    try:
        r = ask(peer.port, "www.signed.example.", do=True)
        assert r.rcode() == dns.rcode.NOERROR
        assert {rr.rdtype for rr in r.answer} == {dns.rdatatype.A, dns.rdatatype.RRSIG}
        assert ask(peer.port, "www.signed.example.", do=False).rcode() == dns.rcode.NXDOMAIN
    finally:
        peer.stop()


def test_break_dnssec_true_enforces_for_do_queries_too(tmp_path: Path, unbound: Peer) -> None:
    _signed(unbound)
    peer = _start(tmp_path, unbound, break_dnssec=True)
    try:
        r = ask(peer.port, "www.signed.example.", do=True)
        assert r.rcode() == dns.rcode.NXDOMAIN and not r.answer
        assert r.ednsflags & dns.flags.DO   # DO echoed (RFC 3225)
    finally:
        peer.stop()


def test_answers_over_ipv6_udp_and_tcp(tmp_path: Path, unbound: Peer) -> None:
    peer = _start(tmp_path, unbound, break_dnssec=True)
    try:
        assert ask(peer.port, "www.signed.example.", host="::1").rcode() == dns.rcode.NXDOMAIN
        r = ask(peer.port, "www.example.", host="::1", tcp=True)
        assert [str(rd) for rrset in r.answer for rd in rrset] == ["203.0.113.20"]
    finally:
        peer.stop()
