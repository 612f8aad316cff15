"""Actions, draft-vixie-dnsop-dns-rpz-00 section 3, and per-zone overrides, section 6.1."""

import pytest

from rpz import names
from rpz.actions import ActionKind
from rpz.errors import PolicyConfigError
from rpz.policy import Override, ZoneSettings

from .conftest import ask, make_policy, make_zone, wire

ZONE = """\
nx.example CNAME .
nodata.example CNAME *.
pass.example CNAME rpz-passthru.
drop.example CNAME rpz-drop.
tcp.example CNAME rpz-tcp-only.
garden.example CNAME walled.garden.test.
wild.example CNAME *.garden.test.
ld.example A 192.0.2.80
ld.example AAAA 2001:db8::80
ld.example MX 10 mail.garden.test.
legacy.example CNAME legacy.example.rpz.test.
ordered.example CNAME .
ordered.example TXT "order=TW-2026-0042"
"""


@pytest.fixture(scope="module")
def policy():
    return make_policy(make_zone(ZONE))


@pytest.mark.parametrize(("name", "kind"), [
    ("nx.example", ActionKind.NXDOMAIN),          # 3.1
    ("nodata.example", ActionKind.NODATA),        # 3.2
    ("pass.example", ActionKind.PASSTHRU),        # 3.3
    ("drop.example", ActionKind.DROP),            # 3.4
    ("tcp.example", ActionKind.TCP_ONLY),         # 3.5
    ("garden.example", ActionKind.LOCAL_DATA),    # 3.6
    ("wild.example", ActionKind.CNAME_WILDCARD),  # 3.6, "*." target
    ("legacy.example", ActionKind.PASSTHRU),      # the pre-format-3 PASSTHRU: CNAME to its own owner
])
def test_each_action(policy, name, kind):
    assert ask(policy, name).action is kind


def test_local_data_by_qtype_section_3_6(policy):
    a = ask(policy, "ld.example", qtype=1)
    assert [r.rdtype for r in a.records] == [1] and a.records[0].rdata == bytes([192, 0, 2, 80])
    assert [r.rdtype for r in ask(policy, "ld.example", qtype=28).records] == [28]
    assert {r.rdtype for r in ask(policy, "ld.example", qtype=255).records} == {1, 28, 15}  # ANY: all
    txt = ask(policy, "ld.example", qtype=16)
    assert txt.action is ActionKind.NODATA and txt.records == ()  # missing type -> NODATA


def test_cname_local_data_answers_every_type(policy):
    d = ask(policy, "garden.example", qtype=28)
    assert d.action is ActionKind.LOCAL_DATA and d.cname_target == wire("walled.garden.test")


def test_wildcard_cname_prepends_the_qname_section_3_6(policy):
    d = ask(policy, "wild.example")
    assert d.cname_target == wire("wild.example.garden.test")
    assert d.records[0].rdata == wire("wild.example.garden.test")


def test_wildcard_cname_expansion_over_255_octets_never_passes():
    z = make_zone("*.long.example CNAME *." + "g" * 60 + "." + "h" * 60 + ".test.\n")
    long_q = ".".join(["q" * 60] * 3) + ".long.example"  # 197 octets + the 130 of the garden
    d = ask(make_policy(z), long_q)
    assert d.action is ActionKind.NXDOMAIN and "255" in d.note
    d = ask(make_policy(z, settings=[ZoneSettings(long_cname_fallback=ActionKind.DROP)]), long_q)
    assert d.action is ActionKind.DROP
    short = ask(make_policy(z), "a.long.example")
    assert short.action is ActionKind.CNAME_WILDCARD


def test_order_reference_is_metadata_not_local_data(policy):
    d = ask(policy, "ordered.example", qtype=16)
    assert d.action is ActionKind.NXDOMAIN and d.order_ref == "TW-2026-0042"


def test_ttls_capped_by_max_policy_ttl():
    z = make_zone("ld.example 3600 A 192.0.2.80\n")
    assert ask(make_policy(z, settings=[ZoneSettings(max_policy_ttl=5)]), "ld.example").records[0].ttl == 5
    assert ask(make_policy(z, settings=[ZoneSettings(max_policy_ttl=86400)]), "ld.example").records[0].ttl == 3600


@pytest.mark.parametrize(("override", "kind"), [
    (Override.NXDOMAIN, ActionKind.NXDOMAIN), (Override.NODATA, ActionKind.NODATA),
    (Override.PASSTHRU, ActionKind.PASSTHRU), (Override.DROP, ActionKind.DROP),
    (Override.TCP_ONLY, ActionKind.TCP_ONLY), (Override.GIVEN, ActionKind.LOCAL_DATA),
])
def test_overrides_replace_every_action_section_6_1(override, kind):
    z = make_zone("ld.example A 192.0.2.80\n")
    assert ask(make_policy(z, settings=[ZoneSettings(override=override)]), "ld.example").action is kind


def test_cname_override_section_6_1():
    z = make_zone("nx.example CNAME .\n")
    d = ask(make_policy(z, settings=[ZoneSettings(override=Override.CNAME, cname_target=wire("stop.isp.test"))]),
            "nx.example")
    assert d.action is ActionKind.LOCAL_DATA and d.cname_target == wire("stop.isp.test")


def test_disabled_zone_is_logged_and_the_next_match_used_section_6_1():
    first = make_zone("bad.example CNAME .\n", origin="first.test.")
    second = make_zone("bad.example CNAME *.\n", origin="second.test.")
    p = make_policy(first, second, settings=[ZoneSettings(override=Override.DISABLED), ZoneSettings()])
    d = ask(p, "bad.example")
    assert d.action is ActionKind.NODATA and d.zone == "second.test."
    assert [x.zone for x in d.disabled] == ["first.test."] and d.disabled[0].action is ActionKind.DISABLED
    only = make_policy(first, settings=[ZoneSettings(override=Override.DISABLED)])
    d = ask(only, "bad.example")
    assert d.action is ActionKind.DISABLED and not d.rewrites


def test_ede_on_hits_never_on_passthru():
    z = make_zone("nx.example CNAME .\nok.example CNAME rpz-passthru.\nordered.example CNAME .\n"
                  'ordered.example TXT "order=HK-EH-2026-0107"\n')
    s = ZoneSettings(ede_code=17, ede_text="blocked: order {order_ref} ({zone})")
    p = make_policy(z, settings=[s])
    assert ask(p, "ordered.example").ede_text == "blocked: order HK-EH-2026-0107 (rpz.test.)"
    assert ask(p, "nx.example").ede_code == 17
    ok = ask(p, "ok.example")
    assert ok.action is ActionKind.PASSTHRU and ok.ede_code is None and ok.ede_text == ""


@pytest.mark.parametrize("bad", [
    dict(ede_code=18), dict(ede_text="{customer}"), dict(override=Override.CNAME), dict(max_policy_ttl=-1),
    dict(long_cname_fallback=ActionKind.PASSTHRU)])
def test_invalid_settings_refused(bad):
    with pytest.raises(PolicyConfigError):
        ZoneSettings(**bad)


def test_cname_target_text_helper():
    assert names.to_text(wire("a.b")) == "a.b."
