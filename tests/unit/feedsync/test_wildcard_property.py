"""Property: after compilation, every name is decided by the most specific order that covers it
(an `exact` order covers its name, a `subdomains` order its name and every name below), as the rpz
core evaluates the compiled zone with DNS wildcard semantics. Brute force is the reference."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import rpz
from feedsync import bundle as b
from rpz import names

from .helpers import T0, entry

LABELS = ("a", "b", "c")
KIND = {"nxdomain": rpz.ActionKind.NXDOMAIN, "nodata": rpz.ActionKind.NODATA,
        "passthru": rpz.ActionKind.PASSTHRU}

name_st = st.lists(st.sampled_from(LABELS), min_size=0, max_size=3).map(
    lambda labs: ".".join([*labs, "bad", "test"]))
order_st = st.tuples(name_st, st.sampled_from(["exact", "subdomains"]), st.sampled_from(sorted(KIND)))


def covers(target: str, match: str, q: str) -> bool:
    return q == target or (match == "subdomains" and q.endswith("." + target))


@settings(max_examples=300, deadline=None)
@given(st.lists(order_st, min_size=1, max_size=6, unique_by=lambda o: o[0]),
       st.lists(st.lists(st.sampled_from((*LABELS, "z")), max_size=5), min_size=1, max_size=12))
def test_most_specific_order_decides_every_name(orders: list[tuple[str, str, str]],
                                                 queries: list[list[str]]) -> None:
    acc = []
    for i, (target, match, action) in enumerate(orders):
        got = b.parse_entry(entry(i, target=target, match=match, action=action), i)
        assert isinstance(got, b.Entry)
        acc.append((i, got))
    c = b.compile_zone("feed.rpz.test", 1, acc, {}, now=T0)
    assert not c.conflicts
    zone = rpz.compile_text(c.text, "prop", "feed.rpz.test")
    assert not zone.rejections
    policy = rpz.Policy([rpz.PolicyZone(zone, rpz.ZoneSettings())])
    for labs in queries:
        q = ".".join([*labs, "bad", "test"])
        applicable = [o for o in orders if covers(o[0], o[1], q)]
        want = KIND[max(applicable, key=lambda o: len(o[0]))[2]] if applicable else None
        d = policy.evaluate("192.0.2.1", 1, [rpz.Stage(names.from_text(q + "."))])
        got_kind = d.action if isinstance(d, rpz.Decision) else None
        assert got_kind == want, (q, orders, c.text.decode())
