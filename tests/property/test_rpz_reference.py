"""The compiled policy decides exactly as a brute-force model of the draft, over random zones and
random questions, across several zones (draft-vixie-dnsop-dns-rpz-00 sections 4, 5, 6.1)."""

from __future__ import annotations

import ipaddress

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpz import names
from rpz.actions import ActionKind
from rpz.fastzone import compile_text_fast
from rpz.policy import Override, Policy, PolicyZone, Stage, ZoneSettings
from rpz.zone import compile_text

from .rpz_model import KIND_OF, evaluate, questions_st, zones_st


def _wire(labels: tuple[str, ...]) -> bytes:
    return names.from_text(".".join(labels) + ".") if labels else b"\x00"


def _policy(zones, fast: bool) -> Policy:
    pzs = []
    for z in zones:
        data = z.text().encode()
        cz = compile_text_fast(data, z.origin, None, None, min_bytes=0) if fast else compile_text(data, z.origin)
        assert cz.rejections == [], [str(r) for r in cz.rejections]
        pzs.append(PolicyZone(cz, ZoneSettings(override=Override.DISABLED if z.disabled else Override.GIVEN)))
    return Policy(pzs)


def _ask(policy: Policy, q: dict):
    chain = q["chain"] if q["qtype"] not in (5, 39, 255) else []  # no chain is followed for these
    stage_names = [_wire(q["qname"]), *[_wire(c) for c in chain]]
    packed = tuple(ipaddress.ip_address(a).packed for a in q["answer"])
    ns = tuple(_wire(n) for n in q["ns_names"])
    nsip = tuple(ipaddress.ip_address(a).packed for a in q["ns_ips"])
    stages = [Stage(n, ns_names=ns, ns_addresses=nsip) for n in stage_names]
    stages[-1] = Stage(stage_names[-1], addresses=packed, ns_names=ns, ns_addresses=nsip)
    return policy.evaluate(q["client"], q["qtype"], stages)


def _check(zones, policy, q):
    want = evaluate(zones, q["qtype"], [q["qname"], *q["chain"]], q["client"], q["answer"], q["ns_names"],
                    q["ns_ips"])
    got = _ask(policy, q)
    note = f"zones={[(z.origin, z.disabled, z.text()) for z in zones]} q={q} want={want} got={got}"
    try:
        _compare(zones, q, want, got)
    except AssertionError as exc:
        raise AssertionError(note) from exc


def _compare(zones, q, want, got):
    if want is None:
        assert got is None
        return
    zi, rule, pos, disabled = want
    assert got is not None
    assert [d.zone_index for d in got.disabled] == disabled
    if rule is None:  # only disabled matches
        assert got.action is ActionKind.DISABLED and got.zone_index == zi
        return
    assert (got.zone_index, got.position) == (zi, pos)
    assert got.trigger.label.lower() == rule.trigger
    assert got.owner == f"{rule.owner()}.{zones[zi].origin}"
    kind = KIND_OF[rule.action]
    if kind == "local-data" and rule.action == "local-data" and q["qtype"] not in (1, 255):
        kind = "nodata"  # only an A record: other types get NODATA (section 3.6)
    assert got.action.label == kind


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(zones_st(), st.lists(questions_st(), min_size=1, max_size=6))
def test_compiled_policy_matches_the_model(zones, questions):
    policy = _policy(zones, fast=False)
    for q in questions:
        _check(zones, policy, q)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(zones_st(), st.lists(questions_st(), min_size=1, max_size=6))
def test_vectorized_reader_matches_the_model(zones, questions):
    policy = _policy(zones, fast=True)
    for q in questions:
        _check(zones, policy, q)
