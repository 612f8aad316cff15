"""The order index: which applied versions held an order (the hotline's "since when")."""

from __future__ import annotations

import os

from feedsync import bundle as b
from feedsync.orders import OrderRules, from_bundle_rules, from_rule_columns, from_xfr_owners
from feedsync.statedb import StateDB
from feedsync.xfrindex import Owner
from rpz import names

from .helpers import T0, entry
from .test_sync import Rig, rig  # noqa: F401 (the fixture)


def test_orders_of_bundle_rules() -> None:
    rules = {"a.bad.test": b.Rule(".", "TW-1", "E-1"), "*.a.bad.test": b.Rule(".", "TW-1", "E-1"),
             "shop.test": b.Rule("stop.hotline-edge.test.", "HK-7", "E-2"), "ok.test": b.Rule("*.", "TW-2", "E-3"),
             "pass.test": b.Rule("rpz-passthru.", "", "E-4")}
    assert from_bundle_rules(rules) == {
        "TW-1": OrderRules("nxdomain", ("a.bad.test", "*.a.bad.test"), 2),
        "HK-7": OrderRules("local-data", ("shop.test",), 1),
        "TW-2": OrderRules("nodata", ("ok.test",), 1)}


def test_orders_of_one_rule_each_by_column() -> None:
    """Every order on one rule (the shortcut without grouping) gives what grouping gives."""
    owners, cnames, refs = ["a.test", "b.test", "c.test"], [".", "*.", "stop.hotline-edge.test."], ["R-1", "R-2", "R-3"]
    got = from_rule_columns(owners, cnames, refs)
    assert got == {"R-1": OrderRules("nxdomain", ("a.test",), 1), "R-2": OrderRules("nodata", ("b.test",), 1),
                   "R-3": OrderRules("local-data", ("c.test",), 1)}
    grouped = from_rule_columns([*owners, "d.test"], [*cnames, "."], [*refs, ""])   # "" forces the grouping path
    assert grouped == got


def test_orders_of_transferred_owners() -> None:
    def owner(rel: str, *recs: tuple[int, bytes], rejected: bool = False) -> Owner:
        wire = names.from_text(rel + ".rpz.test.")
        return Owner(rel, b"", [(wire, t, 60, rd) for t, rd in recs], {"reason": "x"} if rejected else None)
    txt = b"\x0forder=TW-2026-9"
    dot = b"\x00"
    got = from_xfr_owners([owner("a.test", (5, dot), (16, txt)), owner("b.test", (5, dot)),
                           owner("c.test", (5, dot), (16, txt), rejected=True),
                           owner("d.test", (1, b"\xc0\x00\x02\x01"), (16, txt))])
    assert got == {"TW-2026-9": OrderRules("nxdomain", ("a.test", "d.test"), 2)}


def test_spans_open_refresh_and_close(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = StateDB(str(tmp_path / "feedsync.db"))
    a, c = OrderRules("nxdomain", ("a.test",), 1), OrderRules("nodata", ("c.test",), 1)
    assert db.record_orders("f", 1, 1, "v1", 100.0, {"A": a}) == (1, 0)
    assert db.record_orders("f", 2, 2, "v2", 200.0, {"A": a, "C": c}) == (1, 0)
    assert db.record_orders("f", 3, 3, "v3", 300.0, {"C": c}) == (0, 1)
    assert db.record_orders("f", 4, 4, "v4", 400.0, {"A": a, "C": c}) == (1, 0)
    spans = db.order_history("A")
    assert [(s["serial"], s["applied_at"], s["last_serial"], s["ended_serial"]) for s in spans] == \
        [(1, 100.0, 2, 3), (4, 400.0, 4, None)]
    assert db.order_history("C")[0]["last_serial"] == 4 and db.order_history("C", feed="other") == []


def test_a_sync_cycle_records_the_orders_it_applied(rig: Rig) -> None:  # noqa: F811
    rig.src.set([entry(1), entry(2, match="subdomains")], seq=1)
    assert rig.cycle().outcome == "applied"
    rig.clock[0] += 600
    rig.src.set([entry(2, match="subdomains"), entry(3)], seq=2)
    assert rig.cycle().outcome == "applied"
    first = rig.db.order_history("TW-2026-0001")
    assert [(s["feed"], s["serial"], s["applied_at"], s["ended_serial"]) for s in first] == [("hotline", 1, T0, 2)]
    two = rig.db.order_history("TW-2026-0002")
    assert [(s["serial"], s["last_serial"], s["ended_serial"], s["action"]) for s in two] == [(1, 2, None, "nxdomain")]
    assert two[0]["targets"] == ["site2.bad.test", "*.site2.bad.test"] and two[0]["rules"] == 2
    assert rig.db.order_history("TW-2026-0003")[0]["applied_at"] == T0 + 600
    assert os.path.exists(rig.db.path)
