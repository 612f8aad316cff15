"""The IXFR base zone is changed in place (no copy of its map per transfer): a committed transaction
changes it as dnspython's would, a rolled-back one leaves it exactly as it was."""

from __future__ import annotations

import dns.name
import dns.rdata
import dns.zone
import pytest

from feedsync.xfr import IxfrZone

TEXT = """$ORIGIN z.test.
@ 60 IN SOA ns.z.test. noc.z.test. 1 3600 600 86400 60
@ 60 IN NS localhost.
a 60 IN CNAME .
b 60 IN A 192.0.2.1
b 60 IN TXT "order=1"
"""


def zone() -> IxfrZone:
    z = dns.zone.from_text(TEXT, origin="z.test.", relativize=False, zone_factory=IxfrZone)
    assert isinstance(z, IxfrZone)
    return z


def n(s: str) -> dns.name.Name:
    return dns.name.from_text(s + ".z.test.")


def change(txn: dns.zone.Transaction) -> None:
    txn.delete(n("a"))
    txn.delete(n("b"), dns.rdata.from_text("IN", "TXT", '"order=1"'))
    txn.add(n("c"), 60, dns.rdata.from_text("IN", "CNAME", "."))


def test_commit_changes_the_zone_like_dnspython() -> None:
    ours, plain = zone(), dns.zone.from_text(TEXT, origin="z.test.", relativize=False)
    nodes = ours.nodes
    for z in (ours, plain):
        with z.writer() as txn:
            change(txn)
    assert ours.nodes is nodes                                # the same map, changed in place
    assert ours.to_text() == plain.to_text()


def test_rollback_leaves_the_zone_as_it_was() -> None:
    z = zone()
    before = z.to_text()
    with pytest.raises(RuntimeError), z.writer() as txn:
        change(txn)
        raise RuntimeError("the transfer failed")
    assert z.to_text() == before
    assert n("c") not in z.nodes and n("a") in z.nodes
