"""Incremental changes (CompiledZone.with_owners) decide exactly as a full compile of the changed
zone, including DNS existence of empty non-terminals under wildcards."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpz import names
from rpz.policy import Policy, PolicyZone, Stage, ZoneSettings
from rpz.zone import compile_text
from rpz.zonetext import parse_fields

from .rpz_model import ACTIONS, Rule, Zone, names_st, rules_st


def _records(rule: Rule, origin):
    f = parse_fields(ACTIONS[rule.action], origin)
    from rpz.actions import RR
    return [RR(f.rdtype, 60, f.rdata)]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rules_st(), max_size=14), st.lists(st.tuples(rules_st(), st.booleans()), max_size=8),
       st.lists(names_st, min_size=1, max_size=10))
def test_overlay_equals_full_compile(base_rules, changes, queries):
    import dns.name
    origin = "ov.rpz.test."
    base = {r.owner(): r for r in base_rules}
    zone = compile_text(Zone(origin, list(base.values())).text().encode(), origin)
    final = dict(base)
    delta = {}
    dorigin = dns.name.from_text(origin)
    for rule, remove in changes:
        owner = rule.owner()
        key = names.from_text(f"{owner}.{origin}").lower()
        if remove:
            final.pop(owner, None)
            delta[key] = []
        else:
            final[owner] = rule
            delta[key] = _records(rule, dorigin)
    changed = zone.with_owners(delta)
    full = compile_text(Zone(origin, list(final.values())).text().encode(), origin)
    assert changed.stats.rules == full.stats.rules
    pa = Policy([PolicyZone(changed, ZoneSettings())])
    pb = Policy([PolicyZone(full, ZoneSettings())])
    for q in queries:
        w = names.from_text(".".join(q) + ".")
        a, b = pa.evaluate(None, 1, [Stage(w)]), pb.evaluate(None, 1, [Stage(w)])
        assert (a and (a.action, a.owner)) == (b and (b.action, b.owner)), (q, delta)
        for nsn in (q, ("x", *q)):
            nw = names.from_text(".".join(nsn) + ".")
            a = pa.evaluate(None, 1, [Stage(b"\x00", ns_names=(nw,))])
            b = pb.evaluate(None, 1, [Stage(b"\x00", ns_names=(nw,))])
            assert (a and (a.action, a.owner)) == (b and (b.action, b.owner))
