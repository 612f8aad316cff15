"""Precedence, draft-vixie-dnsop-dns-rpz-00 section 5, and application, section 6."""

from rpz.actions import ActionKind
from rpz.policy import NEED_RESPONSE, Stage
from rpz.triggers import TriggerKind

from .conftest import ask, make_policy, make_zone, wire


def test_5_1_earlier_chain_position_wins_even_passthru():
    z = make_zone("www.shop.example CNAME rpz-passthru.\ncdn.evil.example CNAME .\n")
    p = make_policy(z)
    d = ask(p, "www.shop.example", chain=["cdn.evil.example"])
    assert d.action is ActionKind.PASSTHRU and d.position == 0
    d = ask(p, "img.shop.example", chain=["cdn.evil.example"])
    assert d.action is ActionKind.NXDOMAIN and d.position == 1 and d.trigger_value == "cdn.evil.example."


def test_5_1_only_for_types_other_than_any_cname_dname():
    p = make_policy(make_zone("cdn.evil.example CNAME .\n"))
    assert ask(p, "img.shop.example", qtype=5, chain=["cdn.evil.example"]) is None
    assert ask(p, "img.shop.example", qtype=255, chain=["cdn.evil.example"]) is None
    assert ask(p, "img.shop.example", qtype=1, chain=["cdn.evil.example"]) is not None


def test_5_2_earlier_zone_wins_across_trigger_types():
    allow = make_zone("24.0.2.0.192.rpz-ip CNAME rpz-passthru.\n", origin="allow.test.")
    block = make_zone("shop.example CNAME .\n", origin="block.test.")
    p = make_policy(allow, block)
    d = ask(p, "shop.example", answer_ips=["192.0.2.1"])
    assert d.action is ActionKind.PASSTHRU and d.zone == "allow.test."
    assert ask(p, "shop.example", answer_ips=["198.51.100.1"]).zone == "block.test."


def test_5_3_exact_beats_wildcard():
    p = make_policy(make_zone("*.example CNAME .\nok.example CNAME rpz-passthru.\n"))
    assert ask(p, "ok.example").action is ActionKind.PASSTHRU
    assert ask(p, "other.example").action is ActionKind.NXDOMAIN


def test_5_3_longest_wildcard_wins():
    p = make_policy(make_zone("*.example CNAME .\n*.sub.example CNAME *.\n"))
    assert ask(p, "x.sub.example").action is ActionKind.NODATA
    assert ask(p, "x.other.example").action is ActionKind.NXDOMAIN


def test_5_4_trigger_types_in_order_within_one_zone():
    z = make_zone("32.7.2.0.192.rpz-client-ip CNAME rpz-drop.\nshop.example CNAME *.\n"
                  "24.0.2.0.192.rpz-ip CNAME .\nns.evil.example.rpz-nsdname CNAME rpz-tcp-only.\n"
                  "24.0.113.0.203.rpz-nsip A 192.0.2.99\n")
    p = make_policy(z)
    full = dict(answer_ips=["192.0.2.5"], ns=["ns.evil.example"], ns_ips=["203.0.113.1"])
    assert ask(p, "shop.example", client="192.0.2.7", **full).trigger is TriggerKind.CLIENT_IP
    assert ask(p, "shop.example", client="192.0.2.8", **full).trigger is TriggerKind.QNAME
    assert ask(p, "other.example", **full).trigger is TriggerKind.IP
    assert ask(p, "other.example", ns=["ns.evil.example"], ns_ips=["203.0.113.1"]).trigger is TriggerKind.NSDNAME
    assert ask(p, "other.example", ns_ips=["203.0.113.1"]).trigger is TriggerKind.NSIP


def test_5_5_nsdname_last_in_canonical_order_wins():
    z = make_zone("a.example.rpz-nsdname CNAME .\nz.example.rpz-nsdname CNAME *.\n"
                  "yljkjljk.a.example.rpz-nsdname CNAME rpz-drop.\n")
    p = make_policy(z)
    d = ask(p, "q.example", ns=["a.example", "yljkjljk.a.example", "z.example"])
    assert d.action is ActionKind.NODATA and d.trigger_value == "z.example."
    d = ask(p, "q.example", ns=["a.example", "yljkjljk.a.example"])
    assert d.action is ActionKind.DROP


def test_5_6_longest_prefix_ipv4_counts_plus_96():
    z = make_zone("16.0.0.2.192.rpz-ip CNAME .\n24.0.2.0.192.rpz-ip CNAME *.\n"
                  "112.zz.db8.2001.rpz-ip CNAME rpz-drop.\n")
    p = make_policy(z)
    assert ask(p, "x", answer_ips=["192.0.2.1"]).action is ActionKind.NODATA
    # IPv4 /24 is internal 120, beats IPv6 /112
    assert ask(p, "x", answer_ips=["2001:db8::1", "192.0.2.1"]).action is ActionKind.NODATA
    assert ask(p, "x", answer_ips=["2001:db8::1", "192.0.9.1"]).action is ActionKind.DROP


def test_5_7_equal_prefix_smaller_address_wins_draft_example():
    z = make_zone("25.0.2.0.192.rpz-ip CNAME most.example.com.\n25.128.2.0.192.rpz-ip CNAME middle.example.com.\n"
                  "121.280.c000.zz.db8.2001.rpz-ip CNAME least.example.com.\n")
    p = make_policy(z)
    d = ask(p, "x", answer_ips=["2001:db8::c000:280", "192.0.2.129", "192.0.2.1"])
    assert d.cname_target == wire("most.example.com")
    d = ask(p, "x", answer_ips=["2001:db8::c000:280", "192.0.2.129"])
    assert d.cname_target == wire("middle.example.com")


def test_decision_before_recursion_waits_for_earlier_response_triggers():
    ipz = make_zone("24.0.2.0.192.rpz-ip CNAME rpz-passthru.\n", origin="ip.test.")
    qz = make_zone("shop.example CNAME .\n", origin="q.test.")
    assert make_policy(ipz, qz).evaluate_query(None, wire("shop.example"), 1) is NEED_RESPONSE
    d = make_policy(qz, ipz).evaluate_query(None, wire("shop.example"), 1)
    assert d.action is ActionKind.NXDOMAIN  # the QNAME zone comes first: final before recursion


def test_section_6_soa_of_the_policy_zone_is_given():
    p = make_policy(make_zone("nx.example CNAME .\n", serial=2026112201))
    d = ask(p, "nx.example")
    assert d.soa_owner == wire("rpz.test") and d.serial == 2026112201 and d.soa.ttl == 60


def test_decision_cache_is_per_policy_version():
    p1 = make_policy(make_zone("bad.example CNAME .\n", serial=1))
    p2 = make_policy(make_zone("bad.example CNAME *.\n", serial=2))
    assert p1.evaluate_query(None, wire("bad.example"), 1).action is ActionKind.NXDOMAIN
    assert p1.evaluate_query(None, wire("bad.example"), 1).action is ActionKind.NXDOMAIN  # cached
    assert p2.evaluate_query(None, wire("bad.example"), 1).action is ActionKind.NODATA


def test_client_ip_outcomes_bypass_the_cache():
    p = make_policy(make_zone("32.7.2.0.192.rpz-client-ip CNAME rpz-passthru.\nbad.example CNAME .\n"))
    assert p.evaluate_query("192.0.2.8", wire("bad.example"), 1).action is ActionKind.NXDOMAIN
    assert p.evaluate_query("192.0.2.7", wire("bad.example"), 1).action is ActionKind.PASSTHRU
    assert p.evaluate_query("192.0.2.8", wire("bad.example"), 1).action is ActionKind.NXDOMAIN


def test_stage_dataclass_defaults():
    assert Stage(wire("a")).addresses == ()
