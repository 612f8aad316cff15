"""Order references at ``<rule>.rpz-order`` names (the form zone servers accept beside a CNAME)
mean exactly what a TXT at the rule's own owner means, on every compile path: text fast and
careful, records in bulk and careful, and incremental changes (with_owners)."""

from __future__ import annotations

import random

import dns.name
import dns.rdata
import dns.rdatatype
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpz import names
from rpz.actions import companion_base
from rpz.policy import Policy, PolicyZone, Stage, ZoneSettings
from rpz.zone import CompiledZone, compile_records, compile_text
from rpz.zonetext import parse_fields

from .rpz_model import ACTIONS, Zone, names_st, zones_st

Rec = tuple[bytes, int, int, bytes]


def _records(z: Zone, companions: bool, seed: int) -> list[Rec]:
    origin = dns.name.from_text(z.origin)
    soa = parse_fields(f"SOA ns.{z.origin} admin.{z.origin} 1 3600 600 86400 60", origin)
    out: list[Rec] = [(origin.to_wire(), 6, 60, soa.rdata), (origin.to_wire(), 2, 60, b"\x09localhost\x00")]
    refs: list[Rec] = []
    for i, r in enumerate(z.rules):
        owner = names.from_text(f"{r.owner()}.{z.origin}")
        f = parse_fields(ACTIONS[r.action], origin)
        out.append((owner, f.rdtype, 60, f.rdata))
        if i % 3:
            ref = f"order=REF-{i}".encode()
            txt = bytes((len(ref),)) + ref
            if companions:
                refs.append((names.from_text(f"{r.owner()}.rpz-order.{z.origin}"), 16, 60, txt))
            else:
                out.append((owner, 16, 60, txt))
    random.Random(seed).shuffle(refs)      # a transfer gives them in canonical order, far from their rule
    return out + refs


def _text(origin: str, recs: list[Rec]) -> bytes:
    lines = [f"$ORIGIN {origin}"]
    for owner, t, ttl, rd in recs:
        rdata = dns.rdata.from_wire(1, t, rd, 0, len(rd)).to_text()
        lines.append(f"{names.to_text(owner)} {ttl} IN {dns.rdatatype.to_text(t)} {rdata}")
    return ("\n".join(lines) + "\n").encode()


def _decisions(z: CompiledZone, queries: list[list[str]]) -> list[object]:
    p = Policy([PolicyZone(z, ZoneSettings())])
    out = []
    for q in queries:
        d = p.evaluate(None, 1, [Stage(names.from_text(".".join(q) + "."))])
        out.append(d and (d.action, d.owner, d.order_ref, d.records))
    return out


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(zones_st(max_zones=1), st.integers(0, 2**16), st.lists(names_st, min_size=1, max_size=12))
def test_companions_mean_what_inline_references_mean(zones, seed, queries):
    z = zones[0]
    inline = compile_records(z.origin, _records(z, False, seed), "inline", bulk=False)
    want = _decisions(inline, queries)
    recs = _records(z, True, seed)
    text = _text(z.origin, recs)
    for got in (compile_records(z.origin, recs, "bulk"), compile_records(z.origin, recs, "careful", bulk=False),
                compile_text(text, "fast"), compile_text(text, "careful", fast=False)):
        assert got.stats.rules == inline.stats.rules, got.source
        assert sorted(r.reason for r in got.rejections) == sorted(r.reason for r in inline.rejections), got.source
        assert _decisions(got, queries) == want, got.source


def test_companion_base_walks_labels() -> None:
    apex = names.from_text("rpz.test.")
    assert companion_base(names.from_text("a.b.rpz-order.rpz.test."), apex) == names.from_text("a.b.rpz.test.")
    assert companion_base(names.from_text("rpz-order.rpz.test."), apex) == apex
    assert companion_base(names.from_text("rpz-order.a.rpz.test."), apex) is None       # not the last label
    assert companion_base(names.from_text("a.xrpz-order.rpz.test."), apex) is None
    assert companion_base(names.from_text("a.rpz-order.other.test."), apex) is None


def test_refused_companions_say_why() -> None:
    z = compile_text(b"$ORIGIN p.test.\n@ SOA ns. noc. 1 2 3 4 5\na.test CNAME .\n"
                     b"a.test.rpz-order A 192.0.2.1\nlost.test.rpz-order TXT \"order=X-1\"\n"
                     b"rpz-order TXT \"order=X-2\"\n", "z")
    why = {(r.line, r.reason.split(" (")[0].split(":")[0]) for r in z.rejections}
    assert why == {(4, 'only TXT "order=..." may sit at an rpz-order name'),
                   (5, "order reference without a policy record at this owner"),
                   (6, "rpz-order at the zone apex names no rule")}
    assert z.stats.rules == 1
