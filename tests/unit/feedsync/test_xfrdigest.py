"""The xfr content digest (feedsync.xfrdigest): the per-owner tree kept by XfrIndex equals the one
computed from the stored seed text, does not depend on the order of owners or records, and changes
with any record."""

from __future__ import annotations

import dns.zone

from feedsync import config as fconfig
from feedsync import xfrdigest
from feedsync.xfrindex import XfrIndex

from .helpers import xfr_feed

ZONE = "feed.rpz.test"
HEAD = f"$ORIGIN {ZONE}.\n@ 60 IN SOA ns.{ZONE}. noc.{ZONE}. 7 3600 600 86400 60\n@ 60 IN NS localhost.\n"
RULES = ["bad.test 60 IN CNAME .", "*.bad.test 60 IN CNAME .", "shop.fraud.test 60 IN CNAME stop.example.test.",
         "x.test 60 IN CNAME .", "x.test.rpz-order 60 IN TXT \"order=TW-1\"", "y.test 60 IN A 192.0.2.1",
         "y.test 60 IN A 192.0.2.2", "com 60 IN CNAME ."]


def feed() -> fconfig.FeedConfig:
    return xfr_feed(ZONE, tsig_name="k", tsig_secret="A" * 44)


def index_of(lines: list[str]) -> tuple[XfrIndex, dns.zone.Zone]:
    z = dns.zone.from_text(HEAD + "\n".join(lines) + "\n", origin=ZONE + ".", relativize=False)
    ix = XfrIndex(feed(), lambda n: n == "com")
    ix.rebuild(z)
    return ix, z


def test_the_kept_digest_is_the_digest_of_the_seed_text() -> None:
    ix, _ = index_of(RULES)
    source, _policy = ix.texts()
    assert ix.digest() == xfrdigest.of_text(ZONE, source)
    assert ix.digest().startswith("xfrtree-sha256:") and len(ix.digest()) == len("xfrtree-sha256:") + 64


def test_order_of_owners_and_records_does_not_matter() -> None:
    a, _ = index_of(RULES)
    b, _ = index_of(list(reversed(RULES)))
    assert a.digest() == b.digest()
    source, _ = a.texts()
    lines = source.decode().splitlines()
    shuffled = "\n".join([lines[0], *reversed(lines[1:])]).encode()
    assert xfrdigest.of_text(ZONE, shuffled) == a.digest()


def test_any_change_changes_it_and_an_update_keeps_it_exact() -> None:
    ix, z = index_of(RULES)
    before = ix.digest()
    for changed in (["bad.test 60 IN CNAME rpz-passthru."], ["bad.test 61 IN CNAME ."], ["new.test 60 IN CNAME ."]):
        other, _ = index_of([r for r in RULES if not r.startswith("bad.test ")] + changed)
        assert other.digest() != before
    # an incremental update (what an IXFR does) ends where a rebuild of the new zone does
    name = dns.name.from_text("bad.test." + ZONE + ".")
    with z.writer() as txn:
        txn.delete(name)
        txn.add(dns.name.from_text("new.test." + ZONE + "."), 60,
                dns.rdata.from_text("IN", "CNAME", "."))
    ix.update(z, [name, dns.name.from_text("new.test." + ZONE + ".")])
    rebuilt, _ = index_of([r for r in RULES if not r.startswith("bad.test ")] + ["new.test 60 IN CNAME ."])
    assert ix.digest() == rebuilt.digest() == xfrdigest.of_text(ZONE, ix.texts()[0])
    assert ix.digest() != before
