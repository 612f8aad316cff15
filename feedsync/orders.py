"""Which orders a feed version enforces: order reference -> action and target names.

Pure: a version's rules in, ``{order_ref: OrderRules}`` out. The state database keeps, per feed and
order, the spans of versions that held it (``StateDB.record_orders``), which answers "since when is
order X enforced here, under which feed and serial" (the hotline's ``GET /hotline/orders/{ref}``).

    orders = from_bundle_rules(prepared.rules)        # bundle feeds: owner -> Rule(cname, order_ref)
    orders = from_xfr_owners(index.owners.values())   # RPZ feeds: TXT "order=..." beside each rule
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from itertools import repeat
from typing import Any, NamedTuple

from rpz import RecordError, names
from rpz.actions import RR, classify, cname_action

MAX_TARGETS = 5      # names kept per order (enough to probe it; the zone has them all)
T_TXT = 16


class OrderRules(NamedTuple):
    """One order as a version holds it (a named tuple: a million of them are made per version)."""

    action: str                  # rpz action label of the order's rules (the first seen when they differ)
    targets: tuple[str, ...]     # up to MAX_TARGETS rule owners, relative to the zone ("bad.test", "*.bad.test")
    rules: int                   # how many rule owners carry the order


def _add(out: dict[str, list[Any]], ref: str, owner: str, action: str) -> None:
    cur = out.get(ref)
    if cur is None:
        out[ref] = [action, [owner], 1]
        return
    cur[2] += 1
    if len(cur[1]) < MAX_TARGETS:
        cur[1].append(owner)


def _target_order(o: str) -> tuple[bool, str]:
    return o.startswith("*."), o


def _freeze(out: dict[str, list[Any]]) -> dict[str, OrderRules]:
    return {ref: OrderRules(a, (t[0],) if n == 1 else tuple(sorted(t, key=_target_order)), n)
            for ref, (a, t, n) in out.items()}


def _cname_label(cname: str) -> str:
    target = names.from_text(cname if cname.endswith(".") else cname + ".").lower()
    return cname_action(target, 0, None).kind.label


def from_bundle_rules(rules: Mapping[str, Any]) -> dict[str, OrderRules]:
    """Bundle feeds: ``{owner: feedsync.bundle.Rule}`` (its ``cname`` and ``order_ref``)."""
    owners = list(rules)
    got = [rules[o] for o in owners]
    return from_rule_columns(owners, [r.cname for r in got], [r.order_ref for r in got])


def from_rule_columns(owners: Sequence[str], cnames: Sequence[str], refs: Sequence[str]) -> dict[str, OrderRules]:
    """Bundle feeds, by column (feedsync.bundlebulk.RuleTable): owner, CNAME target, order reference."""
    labels = {c: _cname_label(c) for c in set(cnames)}
    counts = Counter(refs)
    counts.pop("", None)
    if len(counts) == len(refs):   # one rule per order (the usual bundle): no grouping needed
        return dict(zip(refs, map(OrderRules, map(labels.__getitem__, cnames), zip(owners), repeat(1)),
                        strict=True))
    out: dict[str, list[Any]] = {}
    one: dict[str, OrderRules] = {}
    get = out.get
    for owner, cname, ref in zip(owners, cnames, refs, strict=True):
        n = counts.get(ref, 0)
        if n == 1:
            one[ref] = OrderRules(labels[cname], (owner,), 1)
        elif n:
            cur = get(ref)
            if cur is None:
                out[ref] = [labels[cname], [owner], 1]
            else:
                cur[2] += 1
                if len(cur[1]) < MAX_TARGETS:
                    cur[1].append(owner)
    one.update(_freeze(out))
    return one


def from_xfr_owners(owners: Iterable[Any]) -> dict[str, OrderRules]:
    """RPZ feeds: XfrIndex owners (``rel``, ``records`` as (owner wire, type, ttl, rdata), ``rejection``);
    an owner without a TXT record carries no order and costs one pass over its records."""
    out: dict[str, list[Any]] = {}
    for o in owners:
        if o.rejection is not None or not any(r[1] == T_TXT for r in o.records):
            continue
        try:
            action, ref = classify([RR(t, ttl, rd) for _, t, ttl, rd in o.records], None)
        except RecordError:
            continue
        if ref:
            _add(out, ref, o.rel, action.kind.label)
    return _freeze(out)
