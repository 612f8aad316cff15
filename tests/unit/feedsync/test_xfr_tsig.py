"""TSIG on a multi-message transfer is checked against each message's arrival time (a slow parse of
a large AXFR must not turn into BADTIME), and a tampered or unsigned message is still refused."""

from __future__ import annotations

import time

import dns.exception
import dns.message
import dns.name
import dns.rdatatype
import dns.rrset
import dns.tsig
import pytest

from feedsync.xfr import _defer_tsig, _TsigCheck

RING = {dns.name.from_text("edge-key."): dns.tsig.Key("edge-key.", "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "hmac-sha256")}
ORIGIN = "feed.rpz.test."


def transfer(n: int = 3, signed: tuple[int, ...] | None = None) -> tuple[bytes, list[bytes]]:
    q = dns.message.make_query(ORIGIN, dns.rdatatype.AXFR)
    q.use_tsig(RING, "edge-key.", algorithm="hmac-sha256")
    q.to_wire()
    soa = dns.rrset.from_text(ORIGIN, 60, "IN", "SOA", "ns. noc. 5 3600 600 86400 60")
    wires, ctx = [], None
    for i in range(n):
        r = dns.message.make_response(q)
        if i == 0:
            r.answer.append(soa)
        r.answer.append(dns.rrset.from_text(f"n{i}.{ORIGIN}", 60, "IN", "CNAME", "."))
        if i == n - 1:
            r.answer.append(soa)
        if signed is not None and i not in signed:
            r.keyring = None
            r.tsig = None
        w = r.to_wire(multi=True, tsig_ctx=ctx)
        ctx = r.tsig_ctx if r.tsig_ctx is not None else ctx
        wires.append(w)
    return bytes(q.mac), wires


def run(mac: bytes, wires: list[bytes], arrived: float) -> None:
    check = _TsigCheck(dict(RING), mac)
    for w in wires:
        msg = dns.message.from_wire(w, keyring=_defer_tsig, request_mac=mac, xfr=True, multi=True)
        check(w, msg, arrived)


def test_genuine_transfer_verifies_even_when_parsed_late() -> None:
    mac, wires = transfer()
    run(mac, wires, time.time())          # parsed now, arrived now
    # what matters is the arrival: a transfer that arrived in time verifies whenever it is parsed
    with pytest.raises(dns.tsig.BadTime):
        run(mac, wires, time.time() + 1000)


def test_tampered_message_is_refused() -> None:
    mac, wires = transfer()
    bad = bytearray(wires[1])
    bad[bad.index(b"\x02n1") + 2] = ord("x")
    wires[1] = bytes(bad)
    with pytest.raises(dns.tsig.BadSignature):
        run(mac, wires, time.time())


def test_unsigned_first_message_is_refused() -> None:
    q = dns.message.make_query(ORIGIN, dns.rdatatype.AXFR)
    q.use_tsig(RING, "edge-key.", algorithm="hmac-sha256")
    q.to_wire()
    r = dns.message.make_response(q)
    r.keyring = None
    r.tsig = None
    w = r.to_wire()
    with pytest.raises(dns.exception.FormError, match="missing TSIG"):
        run(bytes(q.mac), [w], time.time())
