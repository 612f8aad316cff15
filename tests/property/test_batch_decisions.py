"""Policy.decide_qnames decides every name of a batch exactly as Policy.evaluate decides it alone
(no client, the QNAME stage, complete=False), over random zones: several zones in order, every
override including disabled (log only), wildcards and empty non-terminals, local data, IP and NS
triggers (NEED_RESPONSE), IXFR overlays; and random names: hits, misses, deep names, names longer
than any rule. Both the vectorized match (probes sorted by bucket or not) and the name-by-name
match of small batches are held to it."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpz import names
from rpz.actions import RR, ActionKind
from rpz.batch import F_NEED_RESPONSE, decide_qnames
from rpz.policy import NEED_RESPONSE, Override, Policy, PolicyZone, Stage, ZoneSettings
from rpz.zone import compile_text
from rpz.zonetext import parse_fields

from .rpz_model import ACTIONS, LABELS, Rule, Zone, rules_st, zones_st

OVERRIDES = st.sampled_from([Override.GIVEN] * 4 + list(Override))
FALLBACKS = st.sampled_from([ActionKind.NXDOMAIN, ActionKind.NODATA, ActionKind.DROP])


@st.composite
def zone_settings(draw, zone: Zone) -> ZoneSettings:
    override = Override.DISABLED if zone.disabled else draw(OVERRIDES)
    return ZoneSettings(override=override, cname_target=names.from_text("walled.garden.test.") if override is
                        Override.CNAME else b"", long_cname_fallback=draw(FALLBACKS),
                        ede_code=draw(st.sampled_from([None, 17])), ede_text="{qname} via {owner} ({order_ref})")


long_label = st.integers(1, 63).map(lambda n: "x" * n)
query_label = st.sampled_from([*LABELS, "*"]) | long_label
query_labels = st.just([]) | st.lists(query_label, max_size=2) | st.lists(query_label, max_size=9)


def _wire(labels: list[str]) -> bytes | None:
    if not labels:
        return b"\x00"
    try:
        return names.from_text(".".join(labels) + ".")
    except ValueError:
        return None  # over 255 octets: not a name


@st.composite
def batches(draw, zones: list[Zone], changed: list[Rule]) -> list[bytes]:
    owners = [list(r.name) for r in [*(r for z in zones for r in z.rules), *changed] if r.trigger == "qname"]
    picks = []
    for _ in range(draw(st.integers(0, 40))):
        base = draw(st.sampled_from(owners)) if owners and draw(st.booleans()) else []
        picks.append(draw(query_labels) + [lab for lab in base if lab != "*" or draw(st.booleans())])
    out = [w for w in map(_wire, picks) if w is not None]
    return [*out, names.from_text(".".join(["y"] * 120) + ".")] if draw(st.booleans()) else out


def _changes(zone: Zone, changes: list[tuple[Rule, bool]]) -> dict[bytes, list[RR]]:
    import dns.name
    origin = dns.name.from_text(zone.origin)
    out: dict[bytes, list[RR]] = {}
    for rule, remove in changes:
        key = names.from_text(f"{rule.owner()}.{zone.origin}").lower()
        if remove:
            out[key] = []
        else:
            f = parse_fields(ACTIONS[rule.action], origin)
            out[key] = [RR(f.rdtype, 60, f.rdata)]
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_batch_decisions_equal_one_by_one_evaluation(data):
    zones = data.draw(zones_st(max_zones=4))
    pzs = []
    changed: list[Rule] = []
    for z in zones:
        if data.draw(st.integers(0, 5)):  # most zones without IP/NS triggers: fewer NEED_RESPONSE
            z.rules = [r for r in z.rules if r.trigger in ("qname", "client-ip")]
        cz = compile_text(z.text().encode(), z.origin)
        if data.draw(st.booleans()):  # an IXFR's changes kept in an overlay over the compiled base
            delta = data.draw(st.lists(st.tuples(rules_st(), st.booleans()), max_size=6))
            cz = cz.with_owners(_changes(z, delta))
            changed += [r for r, _ in delta]
        pzs.append(PolicyZone(cz, data.draw(zone_settings(z))))
    policy = Policy(pzs)
    qnames = data.draw(batches(zones, changed))
    qtype = data.draw(st.sampled_from([1, 28, 5, 16, 255]))
    want = [policy.evaluate(None, qtype, [Stage(q)], complete=False) for q in qnames]
    for way in (dict(vector_from=0, sort_from=0), dict(vector_from=0, sort_from=10**9),
                dict(vector_from=10**9, sort_from=0)):
        res = decide_qnames(policy, qnames, qtype, **way)
        got = [res.decision(i) for i in range(len(qnames))]
        assert got == want, (way, [names.to_text(q) for q in qnames])
        kinds = [0 if w is None or w is NEED_RESPONSE else int(w.action) for w in want]
        assert res.kind.tolist() == kinds
        assert [bool(f & F_NEED_RESPONSE) for f in res.flags.tolist()] == [w is NEED_RESPONSE for w in want]
        assert res.zone.tolist() == [-1 if w is None or w is NEED_RESPONSE else w.zone_index for w in want]
