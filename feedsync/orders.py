"""Which orders a feed version enforces: order reference -> action and target names.

Pure: a version's rules in, ``{order_ref: OrderRules}`` out. The state database keeps, per feed and
order, the spans of versions that held it (``StateDB.record_orders``), which answers "since when is
order X enforced here, under which feed and serial" (the hotline's ``GET /hotline/orders/{ref}``).

    orders = from_bundle_rules(prepared.rules)        # bundle feeds: owner -> Rule(cname, order_ref)
    orders = from_xfr_owners(index.owners.values())   # RPZ feeds: TXT "order=..." beside each rule
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rpz import RecordError, names
from rpz.actions import RR, classify, cname_action

MAX_TARGETS = 5      # names kept per order (enough to probe it; the zone has them all)
T_TXT = 16


@dataclass(frozen=True, slots=True)
class OrderRules:
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


def _freeze(out: dict[str, list[Any]]) -> dict[str, OrderRules]:
    return {ref: OrderRules(a, tuple(sorted(t, key=lambda o: (o.startswith("*."), o))), n)
            for ref, (a, t, n) in out.items()}


def _cname_label(cname: str) -> str:
    target = names.from_text(cname if cname.endswith(".") else cname + ".").lower()
    return cname_action(target, 0, None).kind.label


def from_bundle_rules(rules: Mapping[str, Any]) -> dict[str, OrderRules]:
    """Bundle feeds: ``{owner: feedsync.bundle.Rule}`` (its ``cname`` and ``order_ref``)."""
    labels: dict[str, str] = {}
    out: dict[str, list[Any]] = {}
    for owner, rule in rules.items():
        if not rule.order_ref:
            continue
        label = labels.get(rule.cname)
        if label is None:
            label = labels[rule.cname] = _cname_label(rule.cname)
        _add(out, rule.order_ref, owner, label)
    return _freeze(out)


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
