"""The fast readers of a full zone transfer (feedsync.xfrwire) and of the seed (feedsync.xfrseed) build
exactly what dnspython builds from the same bytes (dns.xfr.Inbound into a zone; dns.zone.from_text),
on zones with the odd corners dnspython has rules for; every message's TSIG is still verified (a
tampered message in the middle of a transfer is refused); and the IXFR base built from records per
owner takes IXFRs through dnspython as a full zone does. A canned primary on loopback serves the
messages, signed with the feed's key."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable

import dns.message
import dns.name
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.xfr
import dns.zone
import pytest

from feedsync import config as fconfig
from feedsync import xfr, xfrseed, xfrwire
from feedsync.config import Primary
from feedsync.errors import FeedRefused, RefusalCode
from feedsync.xfrindex import XfrIndex

from .helpers import xfr_feed

ZONE = "feed.rpz.test"
ORIGIN = ZONE + "."
SECRET = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"
RING = {dns.name.from_text("edge-key."): dns.tsig.Key("edge-key.", SECRET, "hmac-sha256")}
SOA = f"@ 300 IN SOA ns.{ORIGIN} noc.{ORIGIN} 7 3600 600 86400 60"


def feed(protected: str = '["isp.test"]') -> fconfig.FeedConfig:
    return xfr_feed(ZONE, tsig_name="edge-key", tsig_secret=SECRET, primaries='["127.0.0.1"]', protected=protected)


def psl(name: str) -> bool:
    return name in ("com", "co.uk", "github.io")


# zones with what dnspython has rules for: case, duplicates, TTLs, CNAME beside other data, singletons,
# sets split over messages, order references, guards, escapes, other types
ZONES = {
    "plain": ["bad.test 60 IN CNAME .", "*.bad.test 60 IN CNAME .", "shop.fraud.test 60 IN CNAME stop.example.test.",
              "ok.test 60 IN CNAME rpz-passthru."],
    "odd": ["Mixed.Case.TEST 60 IN CNAME Stop.Example.TEST.", "mixed.case.test 30 IN CNAME stop.example.test.",
            "y.test 60 IN A 192.0.2.1", "y.test 30 IN A 192.0.2.2", "y.test 90 IN A 192.0.2.1",
            "y.test 60 IN AAAA 2001:db8::1", "t.test 60 IN TXT \"a \\\"quoted\\\" \\\\ back\" \"two\"",
            "t.test 60 IN TXT \"bytes \\200\\001\\255\"", "two.test 60 IN CNAME a.example.test.",
            "two.test 60 IN CNAME b.example.test.", "cn.test 60 IN TXT \"order=TW-9\"", "cn.test 60 IN CNAME .",
            "tx.test 60 IN CNAME .", "tx.test 60 IN TXT \"order=TW-8\"", "m.test 60 IN MX 10 mail.example.test.",
            "s.test 60 IN SRV 1 2 443 svc.example.test.", "@ 300 IN NS ns2.example.test.",
            "x.test 60 IN CNAME .", "x.test.rpz-order 60 IN TXT \"order=TW-1\"",
            "lone.test.rpz-order 60 IN TXT \"order=TW-2\"", "bad.test.rpz-order 60 IN A 192.0.2.9",
            "bad.test 60 IN CNAME .", "rpz-order 60 IN TXT \"order=TW-3\"",
            "com 60 IN CNAME .", "*.co.uk 60 IN CNAME .", "www.isp.test 60 IN CNAME .",
            "isp.test 60 IN CNAME rpz-passthru.",
            "24.0.2.0.192.rpz-ip 60 IN CNAME .", "ns.test.rpz-nsdname 60 IN CNAME .",
            "e\\.dot.test 60 IN CNAME .", "sp\\032ace.test 60 IN CNAME ."],
}


def rrsets(lines: list[str]) -> list[dns.rrset.RRset]:
    out = []
    for line in lines:
        owner, ttl, cls, rtype, rdata = line.split(" ", 4)
        name = dns.name.from_text(owner, dns.name.from_text(ORIGIN)) if owner != "@" else dns.name.from_text(ORIGIN)
        out.append(dns.rrset.from_text(name, int(ttl), cls, rtype, rdata))
    return out


Build = Callable[[dns.message.Message], list[bytes]]


def axfr_messages(lines: list[str], per_message: int = 3, tamper: int | None = None,
                  unsigned: tuple[int, ...] = ()) -> Build:
    """The zone as an AXFR answer: the SOA, ``per_message`` records per message, the SOA again."""
    def build(q: dns.message.Message) -> list[bytes]:
        soa = rrsets([SOA])[0]
        body = rrsets([f"@ 300 IN NS ns.{ORIGIN}", *lines])
        chunks = [body[i:i + per_message] for i in range(0, len(body), per_message)]
        chunks[0].insert(0, soa)
        chunks[-1].append(soa)
        wires, ctx = [], None
        for i, chunk in enumerate(chunks):
            r = dns.message.make_response(q)
            for rr in chunk:
                r.answer.append(rr)
            if i in unsigned:
                r.keyring = None
                r.tsig = None
            w = r.to_wire(multi=True, tsig_ctx=ctx)
            ctx = r.tsig_ctx if r.tsig_ctx is not None else ctx
            if i == tamper:
                w = w.replace(b"\x00\x00\x00\x3c", b"\x00\x00\x00\x3d", 1)   # a TTL of 60 becomes 61
            wires.append(w)
        return wires
    return build


class Primary_:
    """One transfer on loopback: reads the signed query, answers with ``build(query)``."""

    def __init__(self, build: Build) -> None:
        self.build = build
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            (n,) = struct.unpack("!H", conn.recv(2, socket.MSG_WAITALL))
            q = dns.message.from_wire(conn.recv(n, socket.MSG_WAITALL), keyring=RING)
            try:
                for w in self.build(q):
                    conn.sendall(struct.pack("!H", len(w)) + w)
            except OSError:      # the client stopped reading (a refused transfer): as a primary sees it
                pass
        self.sock.close()


def fetch(build: Build, base: dns.zone.Zone | None = None, base_serial: int | None = None,
          max_bytes: int = 10_000_000) -> tuple[xfr.Received, int, str, set[dns.name.Name]]:
    p = Primary_(build)
    return xfr.transfer(feed(), Primary("127.0.0.1", p.port), base, base_serial, max_bytes=max_bytes, timeout=10)


def dnspython_axfr(build: Build) -> dns.zone.Zone:
    """What dnspython's Inbound makes of the same messages."""
    q = dns.message.make_query(ORIGIN, dns.rdatatype.AXFR)
    q.use_tsig(RING, "edge-key.", algorithm="hmac-sha256")
    q.to_wire()
    zone = dns.zone.Zone(dns.name.from_text(ORIGIN), relativize=False)
    with dns.xfr.Inbound(zone, dns.rdatatype.AXFR) as inbound:
        for w in build(q):
            r = dns.message.from_wire(w, keyring=xfr._defer_tsig, request_mac=q.mac, xfr=True, multi=True,
                                      origin=None, one_rr_per_rrset=False)
            inbound.process_message(r)
    return zone


def as_records(zone: dns.zone.Zone) -> dict[bytes, tuple[bytes, tuple[xfrwire.RR, ...]]]:
    out = {}
    for name, node in zone.nodes.items():
        wire = bytes(name.to_wire() or b"")
        out[wire.lower()] = (wire, xfr.rrs_of(node))
    return out


def same_index(a: XfrIndex, b: XfrIndex, owner_case: bool = True) -> None:
    assert a.texts() == b.texts()
    assert a.digest() == b.digest()
    assert a.rejected() == b.rejected()
    assert a.accepted == b.accepted and a.serial == b.serial
    if owner_case:
        assert sorted(a.records()) == sorted(b.records())
    else:     # the seed holds owners in lower case (so did dnspython's reading of it)
        assert sorted((o.lower(), *r) for o, *r in a.records()) == sorted((o.lower(), *r) for o, *r in b.records())
    assert a.companion_of == b.companion_of


@pytest.mark.parametrize("per_message", [1, 3, 50])
@pytest.mark.parametrize("zone", sorted(ZONES))
def test_axfr_reader_builds_what_dnspython_builds(zone: str, per_message: int) -> None:
    build = axfr_messages(ZONES[zone], per_message)
    got, nbytes, mode, _ = fetch(build)
    assert mode == "axfr" and nbytes > 0 and isinstance(got, xfrwire.ZoneRecords)
    want = dnspython_axfr(build)
    assert got.owners == as_records(want)          # same owners, same case, same records in the same order
    fast, slow = XfrIndex(feed(), psl), XfrIndex(feed(), psl)
    fast.load(got)
    slow.rebuild(want)
    same_index(fast, slow)


def test_the_guards_still_refuse_owners_with_their_reasons() -> None:
    got, *_ = fetch(axfr_messages(ZONES["odd"]))
    ix = XfrIndex(feed(), psl)
    ix.load(got)
    reasons = {r["entry_id"]: r["reason"] for r in ix.rejected()}
    assert reasons["com"] == "ENTRY_PUBLIC_SUFFIX" and reasons["*.co.uk"] == "ENTRY_PUBLIC_SUFFIX"
    assert reasons["www.isp.test"] == "ENTRY_PROTECTED"
    assert "isp.test" not in reasons                              # a PASSTHRU is never refused as protected
    assert reasons["bad.test.rpz-order"] == "ENTRY_UNUSABLE_RECORD"
    assert "24.0.2.0.192.rpz-ip" in ix.accepted and "x.test" in ix.accepted


def test_seed_reader_builds_what_dnspython_builds() -> None:
    for lines in ZONES.values():
        got, *_ = fetch(axfr_messages(lines))
        assert isinstance(got, xfrwire.ZoneRecords)
        ix = XfrIndex(feed(), psl)
        ix.load(got)
        seed, _policy = ix.texts()
        records = xfrseed.read(seed, ZONE)
        assert records is not None                                 # the form feedsync writes
        assert records.owners == as_records(xfr.zone_from_text(seed, feed()))
        fast, slow = XfrIndex(feed(), psl), XfrIndex(feed(), psl)
        fast.load(records)
        slow.rebuild(xfr.zone_from_text(seed, feed()))
        same_index(fast, slow)
        same_index(fast, ix, owner_case=False)                     # and what the transfer gave


@pytest.mark.parametrize("text", [
    f"$ORIGIN {ORIGIN}\n$TTL 60\n{SOA}\n@ 60 IN NS ns.{ORIGIN}\nbad.test CNAME .\n",           # another directive
    f"$ORIGIN {ORIGIN}\n{SOA}\n@ 60 IN NS ns.{ORIGIN}\nbad.test 60 IN CNAME . ; a comment\n",
    f"$ORIGIN {ORIGIN}\n@ 300 IN SOA ns.{ORIGIN} noc.{ORIGIN} (\n 7 3600 600 86400 60 )\n@ 60 IN NS ns.{ORIGIN}\n",
    f"$ORIGIN {ORIGIN}\n{SOA}\n@ 60 IN NS ns.{ORIGIN}\n\tbad.test 60 IN CNAME .\n",              # a blank owner
    f"$ORIGIN {ORIGIN}\n{SOA}\n@\t60\tIN\tNS\tns.{ORIGIN}\nbad.test 60 IN CNAME .\n",
    f"$ORIGIN {ORIGIN}\n{SOA}\nbad.test 60 IN CNAME .\n",                    # no NS: dnspython refuses
])
def test_seed_in_another_form_is_left_to_dnspython(text: str) -> None:
    assert xfrseed.read(text.encode(), ZONE) is None


def test_tsig_failure_in_the_middle_of_a_transfer_is_refused() -> None:
    lines = [f"n{i}.test 60 IN CNAME ." for i in range(20)] + ["bad.test 60 IN CNAME ."]
    fetch(axfr_messages(lines, 3))                                 # genuine: verifies
    for broken in (axfr_messages(lines, 3, tamper=7), axfr_messages(lines, 3, tamper=3)):
        with pytest.raises(FeedRefused) as e:
            fetch(broken)
        assert e.value.code is RefusalCode.TSIG
    with pytest.raises(FeedRefused, match="not signed") as e:      # the last message must be signed
        fetch(axfr_messages(lines, 3, unsigned=(7,)))
    assert e.value.code is RefusalCode.TSIG
    with pytest.raises(FeedRefused) as e:
        fetch(axfr_messages(lines, 3), max_bytes=500)
    assert e.value.code is RefusalCode.TOO_LARGE


def test_malformed_transfers_are_refused() -> None:
    def no_soa(q: dns.message.Message) -> list[bytes]:
        r = dns.message.make_response(q)
        r.answer.append(rrsets(["bad.test 60 IN CNAME ."])[0])
        return [r.to_wire(multi=True)]

    def outside(q: dns.message.Message) -> list[bytes]:
        r = dns.message.make_response(q)
        r.answer.append(rrsets([SOA])[0])
        r.answer.append(dns.rrset.from_text("elsewhere.test.", 60, "IN", "CNAME", "."))
        r.answer.append(rrsets([SOA])[0])
        return [r.to_wire(multi=True)]

    for build, check in ((no_soa, "message"), (outside, "message")):
        with pytest.raises(FeedRefused) as e:
            fetch(build)
        assert (e.value.code, e.value.check) == (RefusalCode.INTEGRITY, check)


def test_the_base_from_records_takes_an_ixfr_like_a_full_zone() -> None:
    lines = ZONES["odd"]
    got, *_ = fetch(axfr_messages(lines))
    assert isinstance(got, xfrwire.ZoneRecords)
    ix = XfrIndex(feed(), psl)
    ix.load(got)
    base = xfr.base_zone(feed(), ix)
    assert len(base.nodes) == ix.zone_size() == len(got.owners)
    full = dnspython_axfr(axfr_messages(lines))
    ref = XfrIndex(feed(), psl)
    ref.rebuild(full)

    def ixfr(q: dns.message.Message) -> list[bytes]:
        new_soa = rrsets([SOA.replace(" 7 ", " 8 ")])[0]
        r = dns.message.make_response(q)
        r.answer.append(new_soa)
        r.answer.append(rrsets([SOA])[0])
        for rr in rrsets(["bad.test 60 IN CNAME .", "x.test.rpz-order 60 IN TXT \"order=TW-1\"",
                          "y.test 30 IN A 192.0.2.2"]):
            r.answer.append(rr)
        r.answer.append(new_soa)
        for rr in rrsets(["new.test 60 IN CNAME .", "x.test.rpz-order 60 IN TXT \"order=TW-77\"",
                          "Y.test 60 IN A 192.0.2.3"]):
            r.answer.append(rr)
        r.answer.append(new_soa)
        return [r.to_wire(multi=True)]

    zone, _, mode, touched = fetch(ixfr, base, 7)
    assert mode == "ixfr" and zone is base
    _, _, mode2, touched2 = fetch(ixfr, full, 7)
    assert mode2 == "ixfr" and touched == touched2
    ix.update(base, touched)
    base.nodes.settle()                                           # type: ignore[attr-defined]
    ref.update(full, touched2)
    same_index(ix, ref)
    assert ix.serial == 8 and "new.test" in ix.added and "bad.test" not in {o.rel for o in ix.owners.values()}
    assert ix.changes(touched) == ref.changes(touched2)
    # the base zone reads back the records the index now holds
    assert as_records(base) == as_records(full)
    # an IXFR that does not fit the base is refused, and the base is unchanged
    with pytest.raises(FeedRefused) as e:
        fetch(ixfr, base, 7)
    assert e.value.code in (RefusalCode.INCONSISTENT, RefusalCode.INTEGRITY)
    assert as_records(base) == as_records(full)


def test_an_ixfr_answered_axfr_style_takes_the_fast_reader() -> None:
    got, *_ = fetch(axfr_messages(ZONES["plain"]))
    ix = XfrIndex(feed(), psl)
    ix.load(got)
    base = xfr.base_zone(feed(), ix)

    def full(q: dns.message.Message) -> list[bytes]:
        assert q.question[0].rdtype == dns.rdatatype.IXFR
        return axfr_messages([*ZONES["plain"][1:], "other.test 60 IN CNAME ."], 2)(q)

    # the canned zone keeps serial 7: ask from 6 so it is newer
    zone, _, mode, _ = fetch(full, base, 6)
    assert mode == "axfr" and isinstance(zone, xfrwire.ZoneRecords)
    assert b"\x05other\x04test" + ix.okey in zone.owners and b"\x03bad\x04test" + ix.okey not in zone.owners


def test_the_public_suffix_shortcut_answers_as_the_package_does() -> None:
    from publicsuffixlist import PublicSuffixList

    from feedsync.sync import public_suffix_check
    psl, check = PublicSuffixList(), public_suffix_check()
    rules = sorted(getattr(psl, "_publicsuffix", ()))
    assert rules, "the package's rule set is where the shortcut looks"
    names = ["com", "co.uk", "example.co.uk", "github.io", "foo.github.io", "a.foo.github.io", "kobe.jp",
             "city.kobe.jp", "x.kobe.jp", "y.x.kobe.jp", "www.ck", "ck", "s1.d1.bad.test", "bad.test", "test",
             "xn--55qx5d.cn", "a.xn--55qx5d.cn", "compute.amazonaws.com", "x.compute.amazonaws.com"]
    for r in rules[::7]:               # every seventh rule, its parent and a child, as the feed could hold them
        base = r.lstrip("!").removeprefix("*.")
        names += [base, f"sub.{base}", f"a.b.{base}", base.partition(".")[2]]
    for n in names:
        if n:
            assert check(n) == bool(psl.is_public(n)), n
