"""Policy.decide_qnames: QNAME decisions for a batch, equal to Policy.evaluate name by name
(draft-vixie-dnsop-dns-rpz-00 sections 5.2 zone order, 5.3 exact over wildcard, 6.1 overrides).

Every case runs three ways: the vectorized match with probes sorted by bucket, unsorted, and the
name-by-name match small batches use."""

from __future__ import annotations

import random

import numpy as np
import pytest

from rpz import RR, names
from rpz.actions import ActionKind
from rpz.batch import F_DISABLED, F_NEED_RESPONSE, F_NOTE, _Batch, decide_qnames
from rpz.errors import DnsNameError
from rpz.index import name_hash
from rpz.policy import NEED_RESPONSE, Override, Policy, Stage, ZoneSettings
from rpz.zone import compile_records

from .conftest import make_policy, make_zone, wire

WAYS = [dict(vector_from=0, sort_from=0), dict(vector_from=0, sort_from=10**9),
        dict(vector_from=10**9, sort_from=0)]
WAY_IDS = ["vector-sorted", "vector", "one-by-one"]

BODY = """
bad.example.test CNAME .
*.wild.test CNAME *.
deep.a.b.c.test A 192.0.2.1
*.b.c.test CNAME *.garden.test.
ld.test A 192.0.2.2
ld.test TXT "order=TW-2026-0042"
"""


def _same_as_evaluate(policy: Policy, qnames: list[bytes], qtype: int = 1, **way: int):
    res = decide_qnames(policy, qnames, qtype, **way)
    assert len(res) == len(qnames)
    for i, q in enumerate(qnames):
        want = policy.evaluate(None, qtype, [Stage(q)], complete=False)
        got = res.decision(i)
        assert got == want, (q, got, want)
        if want is NEED_RESPONSE:
            assert res.flags[i] & F_NEED_RESPONSE and res.zone[i] == -1 and res.kind[i] == 0
        elif want is None:
            assert (res.zone[i], res.kind[i], res.rule[i]) == (-1, 0, 0)
        else:
            assert res.kind[i] == want.action and res.zone[i] == want.zone_index
            assert bool(res.flags[i] & F_DISABLED) == bool(want.disabled)
            assert bool(res.flags[i] & F_NOTE) == bool(want.note)
            assert bool(res.wildcard[i]) == (want.rule_key != q)  # exact: the rule is the name itself
    return res


@pytest.fixture(params=WAYS, ids=WAY_IDS)
def way(request):
    return request.param


def _names(*texts: str) -> list[bytes]:
    return [wire(t) for t in texts]


QUERIES = ["bad.example.test", "x.bad.example.test", "q.wild.test", "wild.test", "*.wild.test", "a.b.c.test",
           "deep.a.b.c.test", "z.deep.a.b.c.test", "y.x.b.c.test", "ld.test", "c.test", "nope.example", "."]


def test_empty_batch_and_empty_policy(way):
    p = make_policy(make_zone(BODY))
    res = decide_qnames(p, [], **way)
    assert len(res) == 0 and res.kind.shape == (0,) and res.zone.shape == (0,)
    res = decide_qnames(Policy([]), _names("bad.example.test", "."), **way)
    assert [res.decision(i) for i in range(2)] == [None, None]


@pytest.mark.parametrize("qtype", [1, 28, 5, 255])
def test_one_zone_exact_wildcard_and_local_data(way, qtype):
    """5.3: an exact node decides alone; otherwise the closest existing ancestor's wildcard; an
    empty non-terminal (b.c.test, a.b.c.test) exists and stops a wildcard above it. Local data
    without the asked type is NODATA with a note (3.6)."""
    p = make_policy(make_zone(BODY))
    res = _same_as_evaluate(p, _names(*QUERIES), qtype, **way)
    kinds = dict(zip(QUERIES, res.kind.tolist(), strict=True))
    assert kinds["bad.example.test"] == ActionKind.NXDOMAIN
    assert kinds["q.wild.test"] == ActionKind.NODATA and kinds["wild.test"] == 0
    assert kinds["a.b.c.test"] == 0  # an empty non-terminal: exists, no rule, no wildcard applies
    assert kinds["y.x.b.c.test"] == ActionKind.CNAME_WILDCARD
    assert kinds["ld.test"] == (ActionKind.LOCAL_DATA if qtype in (1, 255) else ActionKind.NODATA)
    ld = res.decision(QUERIES.index("ld.test"))
    assert ld is not None and ld is not NEED_RESPONSE and ld.order_ref == "TW-2026-0042"


def test_zone_order_disabled_zones_and_need_response(way):
    """5.2: the first zone with a match decides; a DISABLED zone's match is kept (logged) and
    evaluation goes on; a zone with IP triggers makes an unmatched name wait for the response."""
    first = make_zone(BODY, "one.rpz.test.")
    second = make_zone("x.test CNAME rpz-passthru.\n*.test CNAME rpz-drop.\nbad.example.test CNAME rpz-drop.\n",
                       "two.rpz.test.")
    with_ip = make_zone("32.7.2.0.192.rpz-ip CNAME .\nonly.test CNAME .\n", "ip.rpz.test.")
    qs = _names(*QUERIES, "x.test", "other.test", "only.test")
    for settings in ([ZoneSettings(), ZoneSettings()], [ZoneSettings(override=Override.DISABLED), ZoneSettings()],
                     [ZoneSettings(override=Override.DISABLED), ZoneSettings(override=Override.DISABLED)]):
        _same_as_evaluate(make_policy(first, second, settings=settings), qs, **way)
    res = _same_as_evaluate(make_policy(first, with_ip, second,
                                        settings=[ZoneSettings(override=Override.DISABLED), ZoneSettings(),
                                                  ZoneSettings()]), qs, **way)
    i = qs.index(wire("bad.example.test"))
    assert res.decision(i) is NEED_RESPONSE  # the disabled match does not decide; ip.rpz may win
    j = qs.index(wire("only.test"))
    assert res.kind[j] == ActionKind.NXDOMAIN and res.zone[j] == 1


@pytest.mark.parametrize("override", list(Override))
def test_every_override(way, override):
    """6.1: the zone's override replaces the rule's action (cname: local data with that CNAME)."""
    s = ZoneSettings(override=override, cname_target=wire("walled.garden.test") if override is Override.CNAME
                     else b"", ede_code=17, ede_text="{qname} blocked by {order_ref} via {owner}")
    _same_as_evaluate(make_policy(make_zone(BODY), settings=[s]), _names(*QUERIES), **way)


def test_walled_garden_too_long_takes_the_fallback(way):
    """3.6: an expansion over 255 octets must not pass: the zone's fallback, with a note."""
    long_label = "g" * 63
    garden = f"{long_label}.{long_label}.{long_label}.test"
    z = make_zone(f"*.w.test CNAME *.{garden}.\n")
    q = ".".join(["q" * 60, "w.test"])
    for fallback in (ActionKind.NXDOMAIN, ActionKind.DROP):
        p = make_policy(z, settings=[ZoneSettings(long_cname_fallback=fallback)])
        res = _same_as_evaluate(p, _names(q, "a.w.test"), **way)
        assert res.kind.tolist() == [fallback, ActionKind.CNAME_WILDCARD]
        assert res.flags[0] & F_NOTE and not res.flags[1] & F_NOTE


def test_root_deep_and_longest_names(way):
    """The root, names deeper than any rule (only an ancestor's wildcard can apply) and names of
    the maximum 255 octets."""
    p = make_policy(make_zone(BODY + "*.test CNAME rpz-drop.\n"))
    labels63 = ["a" * 63] * 3
    longest = ".".join([*labels63, "b" * 56, "test"])  # 3 * 64 + 57 + 5 + 1 = 255 octets
    assert len(wire(longest)) == 255
    deep = ".".join(["x"] * 100 + ["wild", "test"])
    qs = _names(".", longest, deep, ".".join(["y"] * 120 + ["test"]), "bad.example.test")
    res = _same_as_evaluate(p, qs, **way)
    assert res.kind.tolist() == [0, ActionKind.DROP, ActionKind.NODATA, ActionKind.DROP, ActionKind.NXDOMAIN]


def test_decisions_are_shared_where_they_cannot_differ(way):
    """An exact rule decides the same for every sighting of its name: one object. A wildcard's
    decision carries the QNAME, so each name has its own."""
    p = make_policy(make_zone(BODY))
    qs = _names("bad.example.test", "a.wild.test", "bad.example.test", "b.wild.test")
    res = decide_qnames(p, qs, **way)
    assert res.decision(0) is res.decision(2)
    a, b = res.decision(1), res.decision(3)
    assert a is not None and b is not None and a is not NEED_RESPONSE and b is not NEED_RESPONSE
    assert (a.qname, b.qname) == (qs[1], qs[3]) and a.rule_key == b.rule_key == wire("*.wild.test")


def _colliding_pair() -> tuple[bytes, bytes]:
    """Two different one-label names with the same table hash: B's value is A's minus 2**61-1
    (the first octet one more, bit 61 taken from octet 7), so every bucket and check hash agree."""
    a = bytes([10]) + b"abcdef\xc1hij" + b"\x00"
    b = (int.from_bytes(a, "little") - ((1 << 61) - 1)).to_bytes(13, "little")
    return a, b


def test_a_full_hash_collision_is_told_apart_by_the_bytes(way):
    a, b = _colliding_pair()
    assert a != b and name_hash(a) == name_hash(b) and names.label_count(b) == 1
    origin = wire("coll.rpz.test")
    soa = (origin, 6, 60, wire("ns.test") + wire("h.test") + (1).to_bytes(4, "big") * 5)
    only_a = compile_records(origin, [soa, (a[:-1] + origin, 5, 60, b"\x00")])
    both = compile_records(origin, [soa, (a[:-1] + origin, 5, 60, b"\x00"), (b[:-1] + origin, 5, 60, b"\x01*\x00")])
    res = _same_as_evaluate(make_policy(only_a), [a, b, a], **way)
    assert res.kind.tolist() == [ActionKind.NXDOMAIN, 0, ActionKind.NXDOMAIN]
    res = _same_as_evaluate(make_policy(both), [b, a], **way)
    assert res.kind.tolist() == [ActionKind.NODATA, ActionKind.NXDOMAIN]


def test_a_large_table_finds_every_key_including_both_ends_of_its_blob(way):
    """Keys are compared as 64-bit word rows; those at the very start and end of a large table's
    name blob take the careful path. Every owner of a 600-rule zone must be found."""
    rnd = random.Random(7)
    owners = [".".join(f"l{rnd.randrange(10**6)}" for _ in range(rnd.randint(1, 4))) for _ in range(600)]
    owners = [*sorted(set(owners)), "a", "b.c"]
    z = make_zone("".join(f"{o} CNAME .\n" for o in owners))
    p = make_policy(z)
    qs = _names(*owners, *(f"miss.{o}" for o in owners[:50]))
    res = _same_as_evaluate(p, qs, **way)
    assert (res.kind[: len(owners)] == ActionKind.NXDOMAIN).all()


def test_overlay_changes_are_decided_through_the_overlay(way):
    """An IXFR overlay over the base table: names whose walk meets a changed key follow the
    overlay (a removed rule, an added one, a removed last child that un-hides a wildcard)."""
    z = make_zone(BODY + "only.child.wild.test CNAME .\n")
    origin = wire("rpz.test")
    changed = z.with_owners({
        wire("bad.example.test")[:-1] + origin: [],
        wire("new.example.test")[:-1] + origin: [RR(5, 60, b"\x00")],
        wire("only.child.wild.test")[:-1] + origin: [],
    })
    qs = _names(*QUERIES, "new.example.test", "only.child.wild.test", "x.child.wild.test", "child.wild.test")
    res = _same_as_evaluate(make_policy(changed), qs, **way)
    assert res.kind[qs.index(wire("bad.example.test"))] == 0
    assert res.kind[qs.index(wire("new.example.test"))] == ActionKind.NXDOMAIN
    assert res.kind[qs.index(wire("child.wild.test"))] == ActionKind.NODATA  # the wildcard applies again


@pytest.mark.parametrize("bad", [b"", b"\x01a", b"\x02a\x00", b"\x01a\x00\x00", b"\x40" + b"a" * 64 + b"\x00",
                                 b"\x3f" + b"a" * 63 + b"\x3f" + b"a" * 63 + b"\x3f" + b"a" * 63 + b"\x3f"
                                 + b"a" * 63 + b"\x00"])
def test_a_malformed_name_is_refused(way, bad):
    p = make_policy(make_zone(BODY))
    with pytest.raises(DnsNameError, match="#1"):
        decide_qnames(p, [wire("ok.test"), bad], **way)


def test_suffix_hashes_equal_the_lookup_hash():
    """The batch's suffix hash (partial sums, no pass over the suffix) equals name_hash."""
    rnd = random.Random(3)
    qs = []
    for _ in range(400):
        labels, total = [], 1
        for _ in range(rnd.randint(0, 12)):
            n = rnd.choice([1, 2, 7, 8, 9, 15, 16, 17, 63])
            if total + n + 1 > 255:
                break
            labels.append(bytes([n]) + bytes(rnd.randrange(256) for _ in range(n)))
            total += n + 1
        qs.append(b"".join(labels) + b"\x00")
    batch = _Batch(qs)
    rows = np.arange(len(qs), dtype=np.int64)
    for cut in range(len(batch.label_starts)):
        off = batch.label_at(rows, np.full(len(qs), cut, dtype=np.int64)) - batch.base
        got = batch.suffix_hashes(rows, off).tolist()
        assert got == [name_hash(q[o:]) for q, o in zip(qs, off.tolist(), strict=True)]


def test_policy_method_uses_the_batch_path():
    p = make_policy(make_zone(BODY), make_zone("*.test CNAME rpz-drop.\n", "two.rpz.test."))
    qs = _names(*QUERIES) * 30  # above the size from which the batch is vectorized
    res = p.decide_qnames(qs)
    want = [p.evaluate(None, 1, [Stage(q)], complete=False) for q in qs]
    assert [res.decision(i) for i in range(len(qs))] == want
    assert res.rewrites.tolist() == [w is not None and w is not NEED_RESPONSE and w.rewrites for w in want]
