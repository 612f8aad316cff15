"""Each check, against a request that it alone should stop; then the same request with that check
taken out of its gate, which must go through: proof that the test depends on the check."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from admin_api.checks import (
    ALL_CHECKS,
    GATES,
    REASON_HELP,
    CaseFacts,
    Check,
    Reason,
    check_followup,
    failures,
    run_checks,
)
from admin_api.model import (
    Callback,
    CallOutcome,
    CallPerson,
    Category,
    Channel,
    Delivery,
    Instrument,
    InstrumentType,
    Query,
    QueryKind,
    Requester,
    RequesterStatus,
    Scope,
    Transport,
)
from admin_api.workflow import Event

NOW = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
RECEIVED = NOW - timedelta(hours=2)
SUP = Requester(1, "HKPF", "Supt Wong", "SSP", "HKPF-10001", "+852 2860 0001", "directory", None)
REQ = Requester(2, "HKPF", "Insp Lee", "IP", "HKPF-77123", "+852 2860 0002", "directory", 1)
ACCOUNT = frozenset({Category.SUBSCRIBER_ACCOUNT})

INSTRUMENT = Instrument(
    type=InstrumentType.COURT_ORDER, issuer="Eastern Magistrates' Court", issuer_jurisdiction="HK",
    reference="EMC-CO-2026-0113", issued_on=date(2026, 3, 9), valid_from=datetime(2026, 3, 9, tzinfo=UTC),
    valid_to=datetime(2026, 3, 23, tzinfo=UTC), legal_provision="Cap. 232 s.50(7)", document_sha256="a" * 64,
    agency="HKPF", addresses=(ipaddress.ip_network("198.51.100.0/24"), ipaddress.ip_network("203.0.113.10/32")),
    order_refs=("HKH-2026-0042",), categories=ACCOUNT | {Category.SUBSCRIBER_CONTACT},
    window_start=datetime(2026, 3, 1, tzinfo=UTC), window_end=datetime(2026, 3, 2, tzinfo=UTC))
QUERY = Query(QueryKind.ADDRESS, datetime(2026, 3, 1, 10, tzinfo=UTC), datetime(2026, 3, 1, 11, tzinfo=UTC), ACCOUNT,
              address=ipaddress.ip_address("198.51.100.7"))
SCOPE = Scope(INSTRUMENT, (QUERY,), Delivery("portal", 2))
CALLS = (Callback(CallPerson.REQUESTER, 2, "+852 2860 0002", "directory", CallOutcome.CONFIRMED, "alice",
                  NOW - timedelta(hours=1)),
         Callback(CallPerson.SUPERVISOR, 1, "+852 2860 0001", "directory", CallOutcome.CONFIRMED, "alice",
                  NOW - timedelta(hours=1)))
GOOD = CaseFacts(now=NOW, received_at=RECEIVED, channel=Channel.PORTAL, requester=REQ, supervisor=SUP, scope=SCOPE,
                 jurisdiction="HK", callbacks=CALLS, preparer="alice", approver="bob",
                 frozen_digest=SCOPE.digest())


def with_instrument(**kw) -> CaseFacts:
    s = replace(SCOPE, instrument=replace(INSTRUMENT, **kw))
    return replace(GOOD, scope=s, frozen_digest=s.digest())


def with_query(**kw) -> CaseFacts:
    s = replace(SCOPE, queries=(replace(QUERY, **kw),))
    return replace(GOOD, scope=s, frozen_digest=s.digest())


EMERGENCY = dict(type=InstrumentType.EMERGENCY_DECLARATION, issuer="HKPF Regional Command", danger_to_life=True,
                 emergency_grounds="threat to life")

# check name -> (the request it alone must stop, the reason, fatal?)
DEFECTS: dict[str, tuple[Callable[[], CaseFacts], Reason, bool]] = {
    "channel": (lambda: replace(GOOD, channel=Channel.EMAIL), Reason.NOT_VIA_AUTHENTICATED_CHANNEL, True),
    "requester_registered": (lambda: replace(GOOD, requester=replace(REQ, status=RequesterStatus.SUSPENDED)),
                             Reason.REQUESTER_NOT_REGISTERED, True),
    "instrument_present": (lambda: replace(GOOD, scope=replace(SCOPE, instrument=None)),
                           Reason.MISSING_INSTRUMENT, False),
    "instrument_complete": (lambda: with_instrument(legal_provision=""), Reason.INSTRUMENT_INCOMPLETE, False),
    "instrument_current": (lambda: with_instrument(valid_to=NOW - timedelta(seconds=1)),
                           Reason.INSTRUMENT_EXPIRED, True),
    "not_already_executed": (lambda: replace(GOOD, executed_instruments=frozenset({INSTRUMENT.key})),
                             Reason.INSTRUMENT_ALREADY_EXECUTED, True),
    "jurisdiction": (lambda: with_instrument(issuer_jurisdiction="SG"), Reason.WRONG_JURISDICTION, True),
    "agency_matches": (lambda: with_instrument(agency="C-ED"), Reason.AGENCY_MISMATCH, True),
    "officer_verified": (lambda: replace(GOOD, callbacks=CALLS[1:]), Reason.OFFICER_NOT_VERIFIED, False),
    "supervisor_confirmed": (lambda: replace(GOOD, callbacks=CALLS[:1]), Reason.SUPERVISOR_NOT_CONFIRMED, False),
    "scope": (lambda: with_query(end=datetime(2026, 3, 2, 1, tzinfo=UTC)), Reason.SCOPE_EXCEEDS_INSTRUMENT, False),
    "identifier_precision": (lambda: replace(with_query(address=ipaddress.ip_address("203.0.113.10")),
                                             shared_addresses=frozenset({ipaddress.ip_address("203.0.113.10")})),
                             Reason.INSUFFICIENT_IDENTIFIER, False),
    "emergency": (lambda: with_instrument(**{**EMERGENCY, "danger_to_life": False}),
                  Reason.EMERGENCY_CRITERIA_NOT_MET, True),
    "delivery": (lambda: replace(GOOD, scope=replace(SCOPE, delivery=Delivery("email", 2))),
                 Reason.UNVERIFIED_RECIPIENT, False),
    "four_eyes": (lambda: replace(GOOD, approver="Alice", preparer="alice"), Reason.SELF_APPROVAL_FORBIDDEN, False),
    "approved_scope": (lambda: replace(GOOD, frozen_digest=replace(SCOPE, gag_until=date(2027, 1, 1)).digest()),
                       Reason.SCOPE_CHANGED_AFTER_APPROVAL, True),
}


def gate_of(name: str) -> tuple[Event, tuple[Check, ...]]:
    for event in (Event.FREEZE_SCOPE, Event.APPROVE, Event.EXECUTE, Event.VERIFIED):
        if any(c.name == name for c in GATES[event]):
            return event, GATES[event]
    raise AssertionError(f"check {name} guards no event")


def test_every_check_has_a_defect_that_only_it_catches():
    assert {c.name for c in ALL_CHECKS} == set(DEFECTS)


def test_a_clean_request_passes_every_gate():
    for event, checks in GATES.items():
        assert failures(run_checks(checks, GOOD)) == (), event


@pytest.mark.parametrize("name", sorted(DEFECTS))
def test_the_check_stops_its_defect(name):
    make, reason, fatal = DEFECTS[name]
    _, checks = gate_of(name)
    failed = failures(run_checks(checks, make()))
    assert [r.reason for r in failed] == [reason], failed
    assert failed[0].fatal is fatal
    assert failed[0].detail


@pytest.mark.parametrize("name", sorted(DEFECTS))
def test_without_the_check_the_defect_goes_through(name):
    make, _, _ = DEFECTS[name]
    _, checks = gate_of(name)
    without = tuple(c for c in checks if c.name != name)
    assert failures(run_checks(without, make())) == ()


def test_every_reason_is_explained():
    assert set(REASON_HELP) == set(Reason)
    assert all(len(text) > 20 for text in REASON_HELP.values())


def test_a_callback_to_a_number_not_from_the_registry_proves_nothing():
    dialled_from_request = replace(CALLS[0], number="+852 9999 0000")
    f = replace(GOOD, callbacks=(dialled_from_request, CALLS[1]))
    assert [r.reason for r in failures(run_checks(GATES[Event.VERIFIED], f))] == [Reason.OFFICER_NOT_VERIFIED]


def test_a_callback_made_before_the_request_arrived_proves_nothing():
    old = replace(CALLS[0], at=RECEIVED - timedelta(minutes=1))
    f = replace(GOOD, callbacks=(old, CALLS[1]))
    assert [r.reason for r in failures(run_checks(GATES[Event.VERIFIED], f))] == [Reason.OFFICER_NOT_VERIFIED]


def test_a_denial_on_callback_is_fatal():
    denied = replace(CALLS[1], outcome=CallOutcome.DENIED)
    [r] = failures(run_checks(GATES[Event.VERIFIED], replace(GOOD, callbacks=(CALLS[0], denied))))
    assert r.reason is Reason.SUPERVISOR_NOT_CONFIRMED and r.fatal


def test_not_yet_valid_waits_instead_of_rejecting():
    [r] = failures(run_checks(GATES[Event.VERIFIED], with_instrument(valid_from=NOW + timedelta(hours=1))))
    assert r.reason is Reason.INSTRUMENT_NOT_YET_VALID and not r.fatal


def test_scope_problems_are_named():
    cases = {
        "not named on the instrument": with_query(address=ipaddress.ip_address("192.0.2.1")),
        "categories not authorised": with_query(categories=frozenset({Category.SESSION_RECORDS})),
        "not a category of an address query": with_query(categories=frozenset({Category.BLOCKED_LOOKUPS})),
    }
    for words, facts in cases.items():
        [r] = failures(run_checks(GATES[Event.FREEZE_SCOPE], facts))
        assert r.reason is Reason.SCOPE_EXCEEDS_INSTRUMENT and words in r.detail


def test_shared_address_with_port_and_protocol_passes():
    f = replace(with_query(address=ipaddress.ip_address("203.0.113.10"), port=2100, transport=Transport.TCP),
                shared_addresses=frozenset({ipaddress.ip_address("203.0.113.10")}))
    assert failures(run_checks(GATES[Event.FREEZE_SCOPE], f)) == ()


def test_emergency_is_limited_to_minimum_fields_and_one_query():
    ok = with_instrument(**EMERGENCY)
    assert failures(run_checks(GATES[Event.FREEZE_SCOPE], ok)) == ()
    wide = with_instrument(**EMERGENCY, categories=ACCOUNT | {Category.SESSION_RECORDS})
    [r] = failures(run_checks(GATES[Event.FREEZE_SCOPE], wide))
    assert r.reason is Reason.EMERGENCY_CRITERIA_NOT_MET and not r.fatal
    two = replace(ok, scope=replace(ok.scope, queries=(QUERY, QUERY)))
    assert [x.reason for x in failures(run_checks(GATES[Event.FREEZE_SCOPE], two))] == \
        [Reason.EMERGENCY_CRITERIA_NOT_MET]


def test_followup_must_be_judicial_and_cover_what_was_released():
    emergency = with_instrument(**EMERGENCY)
    court = replace(INSTRUMENT, reference="EMC-CO-2026-0200")
    assert failures(check_followup(emergency, court)) == ()
    [r] = failures(check_followup(emergency, replace(INSTRUMENT, **EMERGENCY)))
    assert r.reason is Reason.MISSING_INSTRUMENT
    narrow = replace(court, window_end=datetime(2026, 3, 1, 10, 30, tzinfo=UTC))
    assert [x.reason for x in failures(check_followup(emergency, narrow))] == [Reason.SCOPE_EXCEEDS_INSTRUMENT]
