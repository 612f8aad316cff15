"""Reading RPZ master files: RFC 1035 section 5 syntax, rejections one by one with file:line."""

import pytest

from rpz.actions import ActionKind
from rpz.errors import ZoneReadError
from rpz.zone import compile_records, compile_text

from .conftest import ask, make_policy, wire

FULL = b"""; a policy zone using most of the master-file syntax
$TTL 1h
$ORIGIN rpz.test.
@   IN  SOA ns.rpz.test. admin.rpz.test. (
            7        ; serial
            3600 600 86400
            60 )     ; minimum
    IN  NS  localhost.
bad.example     CNAME .                   ; comment after a record
                TXT   "order=TW-2026-0001"
$ORIGIN sub.rpz.test.
rel             CNAME *.                  ; rel.sub.rpz.test.
$ORIGIN rpz.test.
abs.example.rpz.test. 30 IN CNAME rpz-drop.
quoted.example  TXT   "text with ; and ( inside"
esc\\.dot.example CNAME .
"""


def test_full_syntax():
    z = compile_text(FULL, "full.rpz")
    assert z.rejections == [] and z.serial == 7 and z.stats.rules == 5
    p = make_policy(z)
    assert ask(p, "bad.example").order_ref == "TW-2026-0001"
    assert ask(p, "rel.sub").action is ActionKind.NODATA
    assert ask(p, "abs.example").action is ActionKind.DROP
    assert ask(p, "quoted.example", qtype=16).records[0].rdata.startswith(b"\x18text with ; and ( inside")
    assert ask(p, "esc\\.dot.example").action is ActionKind.NXDOMAIN


def test_bad_records_rejected_one_by_one_with_lines():
    text = b"""$ORIGIN rpz.test.
@ SOA ns admin 1 3600 600 86400 60
ok.example CNAME .
bad..example CNAME .
x.example CNAME rpz-unknown.
33.0.2.0.192.rpz-ip CNAME .
ns.example NS ns.other.test.
a.example A 192.0.2.300
both.example CNAME .
both.example A 192.0.2.1
$INCLUDE other.zone
$GENERATE 1-10 h$ CNAME .
out.example.other.test. CNAME .
fine.example CNAME *.
"""
    z = compile_text(text, "bad.rpz")
    lines = {r.line: r.reason for r in z.rejections}
    assert sorted(lines) == [4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    assert "empty label" in lines[4]
    assert "unknown RPZ action" in lines[5]
    assert "out of range" in lines[6]
    assert "NS" in lines[7]
    assert "CNAME and other data" in lines[9] and "CNAME and other data" in lines[10]
    assert "$INCLUDE is refused" in lines[11]
    assert "outside the zone" in lines[13]
    assert str(z.rejections[0]).startswith("bad.rpz:4: ")
    p = make_policy(z)
    assert ask(p, "ok.example").action is ActionKind.NXDOMAIN
    assert ask(p, "fine.example").action is ActionKind.NODATA
    assert ask(p, "both.example") is None


@pytest.mark.parametrize(("text", "reason"), [
    (b"$ORIGIN rpz.test.\nok.example CNAME .\n", "no SOA"),
    (b"ok.example CNAME .\n", "no zone origin"),
    (b"$ORIGIN rpz.test.\n@ SOA ns admin ( 1 2 3 4 5\nx CNAME .\n", "unbalanced parentheses"),
])
def test_unreadable_input_fails_the_zone(text, reason):
    with pytest.raises(ZoneReadError, match=reason):
        compile_text(text, "broken.rpz")


def test_ttl_defaults_follow_bind():
    z = compile_text(b"$ORIGIN rpz.test.\n@ 3600 SOA ns admin 1 3600 600 86400 120\na A 192.0.2.1\n$TTL 30\n"
                     b"b A 192.0.2.2\nc 7 A 192.0.2.3\n", "ttl.rpz")
    from rpz.policy import ZoneSettings
    p = make_policy(z, settings=[ZoneSettings(max_policy_ttl=1 << 30)])
    assert [ask(p, n).records[0].ttl for n in ("a", "b", "c")] == [120, 30, 7]


def test_records_from_a_transfer():
    soa = compile_text(FULL, "x").soa
    recs = [(wire("rpz.test"), 6, soa.ttl, soa.rdata),
            (wire("bad.example.rpz.test"), 5, 60, b"\x00"),
            (wire("*.bad.example.rpz.test"), 5, 60, b"\x01*\x00"),
            (wire("24.0.2.0.192.rpz-ip.rpz.test"), 5, 60, b"\x00")]
    z = compile_records("rpz.test", recs, "axfr")
    p = make_policy(z)
    assert ask(p, "bad.example").action is ActionKind.NXDOMAIN
    assert ask(p, "w.bad.example").action is ActionKind.NODATA
    assert ask(p, "x", answer_ips=["192.0.2.1"]).action is ActionKind.NXDOMAIN
    with pytest.raises(ZoneReadError):
        compile_records("rpz.test", recs[1:], "axfr")
