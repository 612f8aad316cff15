"""compile_records decides common owner shapes in bulk; it must mean exactly what the careful
builder means, for every rule shape the model generates plus order references."""

from __future__ import annotations

import dns.name
import dns.rdataclass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpz import names
from rpz.policy import Policy, PolicyZone, Stage, ZoneSettings
from rpz.zone import compile_records
from rpz.zonetext import parse_fields

from .rpz_model import ACTIONS, Zone, names_st, zones_st


def _records(z: Zone, with_refs: bool) -> list[tuple[bytes, int, int, bytes]]:
    origin = dns.name.from_text(z.origin)
    soa = parse_fields(f"SOA ns.{z.origin} admin.{z.origin} 1 3600 600 86400 60", origin)
    out = [(origin.to_wire(), 6, 60, soa.rdata), (origin.to_wire(), 2, 60, b"\x09localhost\x00")]
    for i, r in enumerate(z.rules):
        owner = names.from_text(f"{r.owner()}.{z.origin}")
        f = parse_fields(ACTIONS[r.action], origin)
        out.append((owner, f.rdtype, 60, f.rdata))
        if with_refs and i % 3:
            ref = f"order=REF-{i}".encode()
            out.append((owner, 16, 60, bytes((len(ref),)) + ref))
    return out


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(zones_st(max_zones=1), st.booleans(), st.lists(names_st, min_size=1, max_size=12))
def test_bulk_equals_careful(zones, with_refs, queries):
    z = zones[0]
    recs = _records(z, with_refs)
    a = compile_records(z.origin, recs, "bulk")
    b = compile_records(z.origin, recs, "careful", bulk=False)
    assert a.stats.rules == b.stats.rules and a.stats.by_action == b.stats.by_action
    assert sorted(r.reason for r in a.rejections) == sorted(r.reason for r in b.rejections)
    pa, pb = (Policy([PolicyZone(x, ZoneSettings())]) for x in (a, b))
    for q in queries:
        w = names.from_text(".".join(q) + ".")
        da, db = pa.evaluate(None, 1, [Stage(w)]), pb.evaluate(None, 1, [Stage(w)])
        assert (da and (da.action, da.owner, da.order_ref, da.records)) == \
            (db and (db.action, db.owner, db.order_ref, db.records))


def test_dnspython_class_is_in():
    assert dns.rdataclass.IN == 1


def test_soa_anywhere_in_the_apex_records():
    """Transfers may give the apex NS before the SOA, or the SOA twice (AXFR ends with it)."""
    z = Zone("ord.rpz.test.", [])
    recs = _records(z, False)
    ns, soa = recs[1], recs[0]
    bad = (names.from_text("x.ord.rpz.test."), 5, 60, b"\x00")
    for order in ([ns, soa, bad], [bad, ns, soa, soa], [soa, bad, soa]):
        a = compile_records(z.origin, order, "bulk")
        assert a.serial == 1 and a.stats.rules == 1


def test_a_longer_careful_owner_keeps_the_wildcard_of_an_exact_owner():
    """An owner that must go through the careful builder and is longer than every bulk owner widens
    the name matrix; the wildcard of an owner that is also an exact rule must survive that (the
    rows are keyed again at the new width). Found by test_bulk_equals_careful."""
    from .rpz_model import Rule
    z = Zone("z0.rpz.test.", [Rule("qname", ("*", "a", "a"), "", "nodata"), Rule("qname", ("a", "a"), "", "nodata"),
                              Rule("qname", ("a", "test", "a"), "", "local-data")])
    recs = _records(z, False)
    a = compile_records(z.origin, recs, "bulk")
    b = compile_records(z.origin, recs, "careful", bulk=False)
    pa, pb = (Policy([PolicyZone(x, ZoneSettings())]) for x in (a, b))
    w = names.from_text("x.a.a.")
    da, db = pa.evaluate(None, 1, [Stage(w)]), pb.evaluate(None, 1, [Stage(w)])
    assert db is not None and db.owner == "*.a.a.z0.rpz.test."
    assert da is not None and (da.action, da.owner) == (db.action, db.owner)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=40), st.booleans())
def test_rule_ids_one_reference_per_row_equal_the_general_numbering(aids, distinct):
    """_rule_ids numbers (action, reference) pairs as np.unique orders them; with every row its own
    reference it takes a shortcut (a stable sort by action), which must number rules identically."""
    from rpz.actions import Action, ActionKind
    from rpz.bulk import _rule_ids
    from rpz.zone import ZoneBuilder
    acts = [Action(ActionKind.NXDOMAIN), Action(ActionKind.NODATA), Action(ActionKind.PASSTHRU),
            Action(ActionKind.DROP)]
    refs = [f"R-{j}".encode() if distinct else f"R-{j % 3}".encode() if j % 4 else b"" for j in range(len(aids))]
    b = ZoneBuilder(b"\x03rpz\x04test\x00", "t")
    got = _rule_ids(b, acts, aids, refs)
    # the numbering spelled out: pairs (global action id, reference id) sorted, ids after the first
    gaid = [b.action_id(a) for a in acts]
    rid = {r: k for k, r in enumerate((r for r in dict.fromkeys(refs) if r), start=1)}
    rid[b""] = 0
    pairs = sorted({(gaid[a], rid[r]) for a, r in zip(aids, refs, strict=True)})
    want = [1 + pairs.index((gaid[a], rid[r])) for a, r in zip(aids, refs, strict=True)]
    assert got.tolist() == want
    assert b.rule_action[1:] == [p[0] for p in pairs] and b.rule_ref[1:] == [p[1] for p in pairs]
    assert b.extra_refs == [r for r in dict.fromkeys(refs) if r]
