"""The disclosure workflow reads the node's real blocked-lookup log (SqliteBlocklog) and opens the
sealed addresses of in-scope records only, exactly as it does with the in-memory source: the same
blocked-lookup case as tests/integration/admin_api/test_scenarios.py, over HTTP."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nacl.public import PrivateKey

from admin_api.blocklog import SqliteBlocklog
from admin_api.clock import to_ms
from resolver.blocklog import BlocklogStore

from ..admin_api.harness import BLOCKED, ORDER, start_world
from ..admin_api.test_scenarios import warrant

pytestmark = pytest.mark.integration


def tpl(order: str, qname: str) -> tuple[str, int, str, int, str, str, str, str]:
    return (qname + ".", 1, "hotline.rpz.test.", 7, "QNAME", qname + ".hotline.rpz.test.", "nxdomain", order)


def test_a_blocked_lookup_case_over_the_sqlite_log(tmp_path: Path) -> None:
    key = PrivateKey.generate()
    path = str(tmp_path / "blocklog.sqlite")
    store = BlocklogStore(path, node="edge-01")
    at = lambda *a: to_ms(datetime(2026, 3, *a, tzinfo=UTC))  # noqa: E731
    store.write_batch([
        (at(1, 10, 15), "100.64.0.5", 40001, (tpl(ORDER, BLOCKED),), "udp"),
        (at(1, 11, 30), "198.51.100.7", 53000, (tpl(ORDER, BLOCKED),), "udp"),
        (at(5, 9, 0), "198.51.100.20", 53001, (tpl(ORDER, BLOCKED),), "udp"),           # outside the window
        (at(1, 10, 20), "100.64.0.6", 40002, (tpl("OTHER-1", "other.example.test"),), "tcp"),
    ], now_ms=at(5, 9, 1), public_key=bytes(key.public_key))
    store.close()
    source = SqliteBlocklog(path)
    hits = list(source.sealed_hits(order_ref=ORDER, qname=None, start=datetime(2026, 3, 1, tzinfo=UTC),
                                   end=datetime(2026, 3, 2, tzinfo=UTC)))
    assert [(h.qname, h.qtype, h.order_ref, h.node) for h in hits] == [(BLOCKED + ".", "A", ORDER, "edge-01")] * 2
    world = start_world(tmp_path, compliance_key=key, blocklog=source)
    try:
        q = {"kind": "blocked_lookup", "order_ref": ORDER, "start": "2026-03-01T00:00:00Z",
             "end": "2026-03-01T23:59:00Z", "categories": ["subscriber_account"]}
        cid = world.approved(instrument=warrant(categories=["subscriber_account"]), queries=[q])
        world.ok("alice", "POST", f"/disclosures/{cid}/execute")
        [result] = json.loads(world.package(cid).json()["body"])["queries"]
        assert result["outcome"] == "RELEASED"
        assert [r["subscriber"] for r in result["results"]] == [{"account": "acct-2001"}, {"account": "acct-1001"}]
        executed = next(e for e in world.audit(cid) if e["kind"] == "case.query_executed")
        assert executed["data"]["sealed_addresses_opened"] == 2
        assert executed["data"]["rows"]["blocklog_in_scope"] == 2
    finally:
        world.server.stop()


def test_a_missing_log_has_no_records(tmp_path: Path) -> None:
    source = SqliteBlocklog(str(tmp_path / "none.sqlite"))
    assert list(source.sealed_hits(order_ref=ORDER, qname=BLOCKED, start=datetime(2026, 1, 1, tzinfo=UTC),
                                   end=datetime(2026, 12, 1, tzinfo=UTC))) == []
