"""The eight scenarios of issue 6, end to end over HTTP against uvicorn with a real SQLite file.

Each asserts what was released (nothing, except for the valid case) and the audit trail."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from admin_api.checks import GATES
from admin_api.errors import NotFound
from admin_api.package import SignedPackage, verify

from .harness import ORDER, World, address_query, markers, start_world, warrant

pytestmark = pytest.mark.integration


def kinds(trail: list[dict]) -> list[str]:
    return [e["kind"] if e["kind"] != "case.transition" else f"->{e['data']['to']}" for e in trail]


def refused_checks(trail: list[dict]) -> set[str]:
    return {r["reason"] for e in trail if e["kind"] == "case.checks" for r in e["data"]["results"] if r["reason"]}


def assert_nothing_released(world: World, cid: str) -> None:
    assert world.package(cid).status_code in (403, 404)
    with world.app.state.store.read() as tx, pytest.raises(NotFound):
        tx.get_package(cid)                             # no package was ever sealed for it
    assert world.released_markers() == set()
    trail = world.audit(cid)
    assert not [e for e in trail if e["kind"] == "case.query_executed"]
    assert world.ok("carol", "GET", "/audit/verify")["ok"] is True


def test_complete_valid_warrant_case_releases_exactly_the_authorised_fields(world: World) -> None:
    cid = world.approved()
    case = world.ok("alice", "POST", f"/disclosures/{cid}/execute")
    assert case["state"] == "EXECUTED" and case["outcome"] == "released"

    r = world.package(cid)
    assert r.status_code == 200
    doc = r.json()
    signed = SignedPackage(doc["body"], doc["sha256"], doc["signature"], doc["key_id"])
    assert verify(signed, world.signing_key.public_key())
    tampered = SignedPackage(doc["body"].replace("Chan Tai Man", "Someone Else"), doc["sha256"], doc["signature"],
                             doc["key_id"])
    assert not verify(tampered, world.signing_key.public_key())
    pkg = json.loads(doc["body"])
    assert pkg["isp_case_id"] == cid and pkg["agency_request_number"] == "HKPF-RQ-2026-5531"
    assert pkg["instrument"]["reference"] == "EMC-CO-2026-0113"
    [q] = pkg["queries"]
    assert q["outcome"] == "RELEASED"
    assert q["as_executed"]["address"] == "198.51.100.7"
    assert q["as_executed"]["start"] == "2026-03-01T10:00:00Z"   # the +08:00 window, in UTC
    assert q["results"] == [{"account": "acct-1001", "name": "Chan Tai Man",
                             "postal_address": "Flat 1, 1 Example Road, Hong Kong",
                             "phone": "+852 5550 1001", "email": "chan.tm@example.net"}]
    assert "sessions" not in q["results"][0]            # session_records were not authorised
    assert "retention" in pkg["retention_note"].lower() or "kept" in pkg["retention_note"]
    assert world.released_markers() == set(markers("acct-1001"))

    # another officer and the auditor may not read results
    assert world.package(cid, who="oscar").status_code == 403
    assert world.package(cid, who="carol").status_code == 403
    assert world.package(cid, who="bob").status_code == 200

    case = world.ok("alice", "POST", f"/disclosures/{cid}/deliver", {"receipt": "portal msg 88231"})
    assert case["state"] == "NOTICE_PENDING"
    case = world.ok("alice", "POST", f"/disclosures/{cid}/notice", {"method": "letter"})
    assert case["state"] == "CLOSED"

    trail = world.audit(cid)
    assert kinds(trail) == [
        "case.received", "->VERIFYING", "case.callback", "case.callback", "case.checks", "->LEGAL_REVIEW",
        "case.checks", "->SCOPED", "->PENDING_APPROVAL", "case.checks", "->APPROVED", "case.checks",
        "case.query_executed", "->EXECUTED", "case.package_read", "case.package_read", "->DELIVERED",
        "->NOTICE_PENDING", "->CLOSED"]
    callbacks = [e["data"] for e in trail if e["kind"] == "case.callback"]
    assert [c["number"] for c in callbacks] == ["+852 2860 0002", "+852 2860 0001"]   # from the registry
    assert all(c["called_by"] == "alice" and c["number_source"].startswith("HKPF staff directory")
               for c in callbacks)
    executed = next(e for e in trail if e["kind"] == "case.query_executed")
    assert executed["data"]["rows"] == {"sessions": 1} and executed["data"]["outcome"] == "RELEASED"
    approval = next(e for e in trail if e["kind"] == "case.transition" and e["data"]["event"] == "APPROVE")
    assert approval["actor"] == "bob" and approval["role"] == "approver"
    assert world.ok("carol", "GET", "/audit/verify")["ok"] is True


def test_forged_emergency_request_from_unregistered_requester_is_rejected(world: World) -> None:
    emergency = warrant(type="emergency_declaration", issuer="HKPF Regional Command", reference="EMERG-0001",
                        danger_to_life=True, emergency_grounds="a person threatened to harm themselves")
    cid = world.open(channel="email", requester_id=None, instrument=emergency,
                     claimed={"name": "Insp Lee Siu Fan", "agency": "HKPF", "warrant_card": "HKPF-77123",
                              "phone": "+852 9999 0000", "email": "lee.sf@police-hk.example.com"})
    world.ok("alice", "POST", f"/disclosures/{cid}/verification")
    # no registry entry: no number to call (and the number in the e-mail is never dialled)
    r = world.call("alice", "POST", f"/disclosures/{cid}/callbacks", {"person": "requester", "outcome": "confirmed"})
    assert r.status_code == 409
    case = world.ok("alice", "POST", f"/disclosures/{cid}/legal-review")
    assert case["state"] == "REJECTED" and case["outcome"] == "refused"
    codes = {r["code"] for r in case["reasons"]}
    assert {"NOT_VIA_AUTHENTICATED_CHANNEL", "REQUESTER_NOT_REGISTERED", "OFFICER_NOT_VERIFIED"} <= codes
    assert world.call("alice", "POST", f"/disclosures/{cid}/execute").status_code == 409
    assert world.call("bob", "POST", f"/disclosures/{cid}/approve", {}).status_code == 409
    assert_nothing_released(world, cid)
    trail = world.audit(cid)
    assert kinds(trail) == ["case.received", "->VERIFYING", "case.checks", "->REJECTED"]
    assert trail[0]["data"]["claimed_email"] == "lee.sf@police-hk.example.com"
    assert trail[-1]["data"]["automatic"] is True


def test_expired_warrant_replayed_is_rejected_and_an_executed_one_cannot_be_reused(world: World) -> None:
    stale = warrant(reference="EMC-CO-2025-0999", issued_on="2025-11-01", valid_from="2025-11-01T00:00:00Z",
                    valid_to="2025-11-15T00:00:00Z")
    cid = world.open(instrument=stale)
    case = world.verify(cid).json()
    assert case["state"] == "REJECTED"
    assert [r["code"] for r in case["reasons"]] == ["INSTRUMENT_EXPIRED"]
    assert_nothing_released(world, cid)

    # a genuine warrant, executed once ...
    first = world.approved()
    world.ok("alice", "POST", f"/disclosures/{first}/execute")
    world.seen.clear()
    # ... then replayed in a new case (same issuer and reference, reference spelled in lower case)
    replay = world.open(instrument=warrant(reference="emc-co-2026-0113"), agency_request_number="HKPF-RQ-2026-9999")
    case = world.verify(replay).json()
    assert case["state"] == "REJECTED"
    assert [r["code"] for r in case["reasons"]] == ["INSTRUMENT_ALREADY_EXECUTED"]
    assert_nothing_released(world, replay)


def test_cgnat_address_without_port_is_refused_until_the_port_is_given(world: World) -> None:
    cid = world.open(queries=[address_query("203.0.113.10")])
    assert world.verify(cid).status_code == 200
    r = world.call("alice", "POST", f"/disclosures/{cid}/freeze")
    assert r.status_code == 422
    assert [x["code"] for x in r.json()["reasons"]] == ["INSUFFICIENT_IDENTIFIER"]
    assert world.case(cid)["state"] == "LEGAL_REVIEW"
    assert world.call("alice", "POST", f"/disclosures/{cid}/submit").status_code == 409
    assert world.call("alice", "POST", f"/disclosures/{cid}/execute").status_code == 409
    assert_nothing_released(world, cid)
    trail = world.audit(cid)
    assert "INSUFFICIENT_IDENTIFIER" in refused_checks(trail)
    assert kinds(trail)[-1] == "case.checks"


def test_cgnat_address_with_port_resolves_one_subscriber_through_the_port_block(world: World) -> None:
    q = address_query("203.0.113.10", port=2100, transport="tcp",
                      categories=["subscriber_account", "subscriber_contact"])
    cid = world.approved(queries=[q])
    world.ok("alice", "POST", f"/disclosures/{cid}/execute")
    [result] = json.loads(world.package(cid).json()["body"])["queries"]
    assert result["outcome"] == "RELEASED"
    assert result["results"][0]["account"] == "acct-2002"   # ports 2048-3071 -> 100.64.0.6 -> acct-2002
    assert world.released_markers() == set(markers("acct-2002"))
    executed = next(e for e in world.audit(cid) if e["kind"] == "case.query_executed")
    assert executed["data"]["rows"] == {"port_blocks": 1, "sessions": 1}


def test_query_outside_the_warrant_window_is_refused(world: World) -> None:
    late = address_query(start="2026-03-03T10:00:00+08:00", end="2026-03-03T11:00:00+08:00")
    cid = world.open(queries=[late])
    assert world.verify(cid).status_code == 200
    r = world.call("alice", "POST", f"/disclosures/{cid}/freeze")
    assert r.status_code == 422
    [reason] = r.json()["reasons"]
    assert reason["code"] == "SCOPE_EXCEEDS_INSTRUMENT" and "window" in reason["detail"]
    assert world.case(cid)["state"] == "LEGAL_REVIEW"
    assert_nothing_released(world, cid)


def test_self_approval_is_refused(world: World) -> None:
    cid = world.open()
    world.verify(cid)
    world.ok("alice", "POST", f"/disclosures/{cid}/freeze")
    world.ok("alice", "POST", f"/disclosures/{cid}/submit")
    r = world.call("alice-as-approver", "POST", f"/disclosures/{cid}/approve", {"note": "looks fine"})
    assert r.status_code == 422
    assert [x["code"] for x in r.json()["reasons"]] == ["SELF_APPROVAL_FORBIDDEN"]
    assert world.case(cid)["state"] == "PENDING_APPROVAL"
    assert world.call("alice", "POST", f"/disclosures/{cid}/execute").status_code == 409
    # an officer token cannot approve at all
    assert world.call("oscar", "POST", f"/disclosures/{cid}/approve", {}).status_code == 403
    assert_nothing_released(world, cid)
    checks = [e for e in world.audit(cid) if e["kind"] == "case.checks"][-1]
    assert checks["actor"] == "alice" and checks["role"] == "approver"
    assert checks["data"]["event"] == "APPROVE"


def test_scope_changed_after_approval_goes_back_to_legal_review(world: World) -> None:
    cid = world.approved()
    wider = address_query(start="2026-03-01T08:00:00+08:00", end="2026-03-01T23:00:00+08:00")
    case = world.ok("alice", "PUT", f"/disclosures/{cid}/scope",
                    {"instrument": warrant(), "queries": [wider],
                     "delivery": {"method": "portal", "recipient_id": world.ids["inspector"]},
                     "note": "agency asked for a longer window"})
    assert case["state"] == "LEGAL_REVIEW"
    assert case["approver"] is None and case["scope_digest"] is None
    assert world.call("alice", "POST", f"/disclosures/{cid}/execute").status_code == 409
    assert_nothing_released(world, cid)
    change = [e for e in world.audit(cid) if e["kind"] == "case.transition"][-1]
    assert change["data"]["event"] == "CHANGE_SCOPE" and change["data"]["from"] == "APPROVED"
    assert change["data"]["after"]["queries"][0]["start"] == "2026-03-01T00:00:00Z"


def test_two_subscribers_matching_is_ambiguous_and_releases_nothing(world: World) -> None:
    q = address_query("198.51.100.20", start="2026-03-01T18:30:00+08:00", end="2026-03-01T19:30:00+08:00")
    cid = world.approved(queries=[q])
    case = world.ok("alice", "POST", f"/disclosures/{cid}/execute")
    assert case["outcome"] == "nothing_released"
    assert [r["code"] for r in case["reasons"]] == ["AMBIGUOUS"]
    [result] = json.loads(world.package(cid).json()["body"])["queries"]
    assert result["outcome"] == "AMBIGUOUS" and result["results"] == []
    assert world.released_markers() == set()
    executed = next(e for e in world.audit(cid) if e["kind"] == "case.query_executed")
    assert executed["data"]["rows"] == {"sessions": 2} and executed["data"]["outcome"] == "AMBIGUOUS"


def test_blocked_lookup_case_opens_only_in_scope_records(world: World) -> None:
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
    assert world.released_markers() == {"acct-2001", "acct-1001"}


def test_emergency_release_needs_followup_and_goes_overdue_with_time(world: World) -> None:
    emergency = warrant(type="emergency_declaration", issuer="HKPF Regional Command", reference="EMERG-0002",
                        danger_to_life=True, emergency_grounds="missing child, threat of serious harm")
    cid = world.approved(instrument=emergency)
    world.ok("alice", "POST", f"/disclosures/{cid}/execute")
    case = world.ok("alice", "POST", f"/disclosures/{cid}/deliver", {"receipt": "phone+portal"})
    assert case["state"] == "EMERGENCY_PROVISIONAL"
    world.clock.advance(timedelta(hours=40))
    assert world.case(cid)["state"] == "FOLLOWUP_DUE"
    world.clock.advance(timedelta(hours=9))
    assert world.case(cid)["state"] == "FOLLOWUP_OVERDUE"
    overdue = world.ok("carol", "GET", "/disclosures")
    assert [c["id"] for c in overdue if c["state"] == "FOLLOWUP_OVERDUE"] == [cid]
    stats = world.ok("carol", "GET", "/stats/transparency?year=2026")
    assert stats["emergency_followups_overdue"] == 1
    # a court order arriving late still closes the gap; no gag -> notice scheduled
    followup = warrant(reference="EMC-CO-2026-0200", valid_from="2026-03-11T00:00:00Z",
                       valid_to="2026-03-25T00:00:00Z")
    case = world.ok("alice", "POST", f"/disclosures/{cid}/followup", {"instrument": followup})
    assert case["state"] == "NOTICE_PENDING"


def test_emergency_without_danger_to_life_is_rejected(world: World) -> None:
    emergency = warrant(type="emergency_declaration", issuer="HKPF Regional Command", reference="EMERG-0003",
                        danger_to_life=False, emergency_grounds="urgent fraud investigation")
    cid = world.open(instrument=emergency)
    world.verify(cid)
    case = world.ok("alice", "POST", f"/disclosures/{cid}/freeze")
    assert case["state"] == "REJECTED"
    assert [r["code"] for r in case["reasons"]] == ["EMERGENCY_CRITERIA_NOT_MET"]
    assert_nothing_released(world, cid)


def test_gag_order_defers_notice_until_its_end_date(world: World) -> None:
    cid = world.approved(gag_until="2026-04-02")
    world.ok("alice", "POST", f"/disclosures/{cid}/execute")
    case = world.ok("alice", "POST", f"/disclosures/{cid}/deliver", {"receipt": "r1"})
    assert case["state"] == "NOTICE_DEFERRED"
    assert world.call("alice", "POST", f"/disclosures/{cid}/notice", {"method": "letter"}).status_code == 409
    world.clock.advance(timedelta(days=22))    # 2026-04-01: still gagged
    assert world.case(cid)["state"] == "NOTICE_DEFERRED"
    world.clock.advance(timedelta(days=1))     # 2026-04-02: the gag ends
    assert world.case(cid)["state"] == "NOTICE_PENDING"
    gag_end = [e for e in world.audit(cid) if e["kind"] == "case.transition"][-1]
    assert gag_end["data"]["event"] == "GAG_ENDED" and gag_end["actor"] == "system"


def test_instrument_expiring_before_execution_expires_the_case(world: World) -> None:
    cid = world.approved()
    world.clock.advance(timedelta(days=14))    # valid_to 2026-03-23T00:00Z passes
    assert world.case(cid)["state"] == "EXPIRED"
    assert world.call("alice", "POST", f"/disclosures/{cid}/execute").status_code == 409
    assert_nothing_released(world, cid)


def test_officer_denying_the_request_on_callback_rejects_it(world: World) -> None:
    cid = world.open()
    world.ok("alice", "POST", f"/disclosures/{cid}/verification")
    world.ok("alice", "POST", f"/disclosures/{cid}/callbacks", {"person": "requester", "outcome": "denied",
                                                               "note": "officer says he sent nothing"}, 201)
    case = world.ok("alice", "POST", f"/disclosures/{cid}/legal-review")
    assert case["state"] == "REJECTED"
    assert "OFFICER_NOT_VERIFIED" in {r["code"] for r in case["reasons"]}
    assert_nothing_released(world, cid)


def test_missing_supervisor_callback_holds_the_case_until_made(world: World) -> None:
    cid = world.open()
    r = world.verify(cid, supervisor=False)
    assert r.status_code == 422 and [x["code"] for x in r.json()["reasons"]] == ["SUPERVISOR_NOT_CONFIRMED"]
    assert world.case(cid)["state"] == "VERIFYING"
    world.ok("alice", "POST", f"/disclosures/{cid}/callbacks", {"person": "supervisor", "outcome": "confirmed"}, 201)
    assert world.ok("alice", "POST", f"/disclosures/{cid}/legal-review")["state"] == "LEGAL_REVIEW"


def test_transparency_counts_have_no_personal_data(world: World) -> None:
    good = world.approved()
    world.ok("alice", "POST", f"/disclosures/{good}/execute")
    bad = world.open(channel="email", requester_id=None, claimed={"agency": "HKPF", "email": "x@example.com"})
    world.verify(bad)
    world.seen.clear()
    stats = world.ok("carol", "GET", "/stats/transparency?year=2026")
    assert stats["requests"] == 2
    assert stats["by_outcome"] == {"refused": 1, "released": 1}
    assert stats["by_agency"] == {"HKPF": 2}
    assert stats["by_instrument_type"] == {"court_order": 2}
    assert stats["by_reason"]["NOT_VIA_AUTHENTICATED_CHANNEL"] == 1
    assert world.released_markers() == set()
    text = json.dumps(stats)
    assert "198.51.100" not in text and "x@example.com" not in text


def test_audit_chain_tampering_is_detected(world: World) -> None:
    import sqlite3
    cid = world.approved()
    assert world.ok("carol", "GET", "/audit/verify")["ok"] is True
    db = world.app.state.store.path
    with sqlite3.connect(db) as conn:
        payload = conn.execute("SELECT payload FROM audit WHERE case_id = ? AND kind = 'case.callback' "
                               "ORDER BY seq LIMIT 1", (cid,)).fetchone()[0]
        forged = payload.replace("+852 2860 0002", "+852 9999 0000")
        conn.execute("UPDATE audit SET payload = ? WHERE payload = ?", (forged, payload))
    result = world.ok("carol", "GET", "/audit/verify")
    assert result["ok"] is False and result["first_bad"] is not None


@pytest.mark.parametrize("removed", ["four_eyes", "channel"])
def test_the_scenarios_depend_on_their_checks(tmp_path, removed: str) -> None:
    """The same scenario against an app whose gates lack one check: the refusal disappears."""
    gates = {event: tuple(c for c in checks if c.name != removed) for event, checks in GATES.items()}
    w = start_world(tmp_path, gates=gates)
    try:
        if removed == "four_eyes":
            cid = w.open()
            w.verify(cid)
            w.ok("alice", "POST", f"/disclosures/{cid}/freeze")
            w.ok("alice", "POST", f"/disclosures/{cid}/submit")
            assert w.call("alice-as-approver", "POST", f"/disclosures/{cid}/approve", {}).status_code == 200
        else:
            cid = w.open(channel="email")
            assert w.verify(cid).json()["state"] == "LEGAL_REVIEW"
    finally:
        w.client.close()
        w.server.stop()


def test_metrics_count_requests_and_refusals(world: World) -> None:
    cid = world.open(queries=[address_query("203.0.113.10")])
    world.verify(cid)
    assert world.call("alice", "POST", f"/disclosures/{cid}/freeze").status_code == 422
    text = world.call("olga", "GET", "/metrics").text
    assert 'hotline_edge_disclosure_checks_refused_total{reason="INSUFFICIENT_IDENTIFIER"} 1.0' in text
    assert 'hotline_edge_api_requests_total{method="POST",route="/disclosures/{case_id}/freeze",status="422"} 1.0' \
        in text


def test_preservation_hold_keeps_data_past_retention_for_its_case_only(tmp_path) -> None:
    w = start_world(tmp_path, session_retention_days=10)   # the 2026-03-01 session leaves retention on 03-11
    try:
        held = w.open()
        r = w.ok("alice", "POST", f"/disclosures/{held}/preservation",
                 {"until": "2026-04-30T00:00:00Z", "reason": "preservation request PR-2026-0007"}, 201)
        assert r["held_addresses"] == 1
        unheld = w.open(instrument=warrant(reference="EMC-CO-2026-0114"), agency_request_number="HKPF-RQ-2026-5532")
        w.clock.advance(timedelta(days=10))                # 2026-03-20: both cases' data is past retention
        for cid in (held, unheld):
            w.verify(cid)
            w.ok("alice", "POST", f"/disclosures/{cid}/freeze")
            w.ok("alice", "POST", f"/disclosures/{cid}/submit")
            w.ok("bob", "POST", f"/disclosures/{cid}/approve", {})
        assert w.ok("alice", "POST", f"/disclosures/{unheld}/execute")["reasons"][0]["code"] == "NO_DATA"
        assert w.released_markers() == set()
        assert w.ok("alice", "POST", f"/disclosures/{held}/execute")["outcome"] == "released"
        assert w.package(held).status_code == 200
        assert w.released_markers() == set(markers("acct-1001"))
        # the purge keeps the held record and deletes the rest of what is past retention
        operator = w.app.state.tokens.authenticate(w.tokens["olga"])
        counts = w.app.state.service.purge_sessions(operator)
        assert counts["sessions"] == 4 and counts["port_blocks"] == 2
        hold = next(e for e in w.audit(held) if e["kind"] == "case.preservation_hold")
        assert hold["data"]["addresses"] == ["198.51.100.7"] and hold["actor"] == "alice"
    finally:
        w.client.close()
        w.server.stop()
