"""Triggers, draft-vixie-dnsop-dns-rpz-00 section 4."""

import pytest

from rpz.actions import ActionKind
from rpz.errors import RecordError
from rpz.triggers import Prefix, TriggerKind, parse_owner, parse_prefix

from .conftest import ask, make_policy, make_zone, wire


def labels(text):
    return [p.encode() for p in text.split(".")]


def test_qname_exact_section_4_2():
    p = make_policy(make_zone("bad.example CNAME .\n"))
    d = ask(p, "bad.example")
    assert d.action is ActionKind.NXDOMAIN and d.trigger is TriggerKind.QNAME
    assert d.owner == "bad.example.rpz.test."
    assert ask(p, "www.bad.example") is None  # exact only
    assert ask(p, "example") is None


def test_qname_wildcard_matches_below_not_at_section_4_2():
    p = make_policy(make_zone("*.bad.example CNAME .\n"))
    assert ask(p, "a.bad.example").owner == "*.bad.example.rpz.test."
    assert ask(p, "x.y.bad.example").action is ActionKind.NXDOMAIN
    assert ask(p, "bad.example") is None


def test_empty_non_terminal_stops_a_wildcard_like_bind():
    # *.ent.example plus deep.sub.ent.example: sub.ent.example exists (empty non-terminal)
    p = make_policy(make_zone("*.ent.example CNAME .\ndeep.sub.ent.example CNAME .\n"))
    assert ask(p, "sub.ent.example") is None
    assert ask(p, "x.sub.ent.example") is None
    assert ask(p, "other.ent.example").owner == "*.ent.example.rpz.test."


def test_existing_name_stops_a_higher_wildcard():
    # DNS wildcard semantics: the closest encloser of x.a.example is a.example, which has no "*."
    p = make_policy(make_zone("*.example CNAME .\na.example CNAME rpz-passthru.\n"))
    assert ask(p, "x.a.example") is None
    assert ask(p, "b.example").action is ActionKind.NXDOMAIN


@pytest.mark.parametrize(("text", "v6", "length", "network"), [
    ("24.0.2.0.192", False, 24, "192.0.2.0/24"),
    ("32.1.2.0.192", False, 32, "192.0.2.1/32"),
    ("128.3.zz.db8.2001", True, 128, "2001:db8::3/128"),
    ("48.zz.101.db8.2001", True, 48, "2001:db8:101::/48"),
    ("64.zz.2.1", True, 64, "1:2::/64"),
])
def test_ip_encodings_section_4_1_1(text, v6, length, network):
    pre = parse_prefix(labels(text))
    assert (pre.v6, pre.length, str(pre)) == (v6, length, network)
    assert pre.owner_labels() == text


@pytest.mark.parametrize(("text", "reason"), [
    ("33.0.2.0.192", "out of range"),
    ("24.0.2.192", "4 must be present"),
    ("8.2.0.0.10", "bits set after"),
    ("24.0.02.0.192", "leading zero"),
    ("24.0.2.0.256", "out of range"),
    ("0.0.0.0.0", "out of range"),
    ("64.zz.1.zz.2001", "more than one 'zz'"),
    ("128.1.2.3.4.5.6.7.8.9", "hextets"),
    ("64.g.2001", "not an IPv6 hextet"),
    ("129.zz.1", "out of range"),
    ("48.zz.0db8.2001", "leading zero"),
])
def test_invalid_prefixes_rejected_section_4_1_1(text, reason):
    with pytest.raises(RecordError, match=reason):
        parse_prefix(labels(text))


def test_client_ip_trigger_section_4_1():
    p = make_policy(make_zone("24.0.2.0.192.rpz-client-ip CNAME rpz-drop.\n"
                              "128.3.zz.db8.2001.rpz-client-ip CNAME .\n"))
    assert ask(p, "any.example", client="192.0.2.77").action is ActionKind.DROP
    assert ask(p, "any.example", client="2001:db8::3").action is ActionKind.NXDOMAIN
    assert ask(p, "any.example", client="198.51.100.1") is None
    assert ask(p, "any.example", client="2001:db8::4") is None


def test_response_ip_trigger_section_4_3():
    p = make_policy(make_zone("24.0.2.0.192.rpz-ip CNAME .\n32.2.2.0.192.rpz-ip CNAME rpz-passthru.\n"))
    d = ask(p, "shop.example", answer_ips=["192.0.2.9"])
    assert d.action is ActionKind.NXDOMAIN and d.trigger is TriggerKind.IP and d.trigger_value == "192.0.2.9"
    assert ask(p, "shop.example", answer_ips=["192.0.2.2"]).action is ActionKind.PASSTHRU
    assert ask(p, "shop.example", answer_ips=["198.51.100.2"]) is None


def test_nsdname_and_nsip_triggers_sections_4_4_4_5():
    p = make_policy(make_zone("ns.evil.example.rpz-nsdname CNAME .\n*.bad-ns.example.rpz-nsdname CNAME *.\n"
                              "24.113.0.203.rpz-nsip CNAME rpz-drop.\n".replace("24.113.0.203", "24.0.113.0.203")))
    assert ask(p, "x.example", ns=["ns.evil.example"]).trigger is TriggerKind.NSDNAME
    assert ask(p, "x.example", ns=["a.bad-ns.example"]).action is ActionKind.NODATA
    d = ask(p, "x.example", ns_ips=["203.0.113.53"])
    assert d.trigger is TriggerKind.NSIP and d.action is ActionKind.DROP
    assert ask(p, "x.example", ns=["ns.good.example"], ns_ips=["198.51.100.53"]) is None


def test_owner_decoding():
    assert parse_owner(wire("a.b")).kind is TriggerKind.QNAME
    t = parse_owner(wire("*.b"))
    assert t.wildcard and t.name == wire("b")
    t = parse_owner(wire("ns.x.rpz-nsdname"))
    assert t.kind is TriggerKind.NSDNAME and t.name == wire("ns.x")
    assert parse_owner(wire("24.0.2.0.192.rpz-ip")).prefix == Prefix(False, 24, 0xC0000200)
    with pytest.raises(RecordError, match="unknown trigger type"):
        parse_owner(wire("a.rpz-nsdomain"))
    with pytest.raises(RecordError, match="leftmost"):
        parse_owner(wire("a.*.b"))
