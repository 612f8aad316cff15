"""The checks that stand between a law-enforcement request and any release of subscriber data.

Each check is a pure function of values (``CaseFacts``, which carries ``now``) returning a
``CheckResult``: passed, or failed with a stable reason code. Research note C.2 lists them:

    1 authenticated intake channel           7 identifier precision (CGNAT needs port)
    2 instrument attached and complete       8 data within retention (NO_DATA, at execution)
    3 instrument current, not replayed       9 emergency only for danger to life, minimum data
    4 issuer competent in our jurisdiction  10 gag order recorded, else notice scheduled
    5 officer + supervisor verified by a    11 four eyes: approver != preparer
      callback to the registry number       12 output minimised, delivered to the verified
    6 scope inside the instrument              recipient over an encrypted channel

A failed check is *fatal* when waiting cannot fix it (a forged request, an expired or replayed
warrant, the wrong court): the case is then rejected. Otherwise the step is refused and the case
stays where it is until the officer fixes it (a callback not made yet, a query to narrow).

``GATES`` says which checks guard which lifecycle event; tests remove each check from its gate
and show that a request it alone should stop then goes through.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from .model import (
    AUTHENTICATED_CHANNELS,
    EMERGENCY_CATEGORIES,
    ENCRYPTED_DELIVERY,
    Callback,
    CallOutcome,
    CallPerson,
    Category,
    Channel,
    Instrument,
    InstrumentType,
    IPAddress,
    Query,
    QueryKind,
    Requester,
    RequesterStatus,
    Scope,
)
from .workflow import Event


class Reason(StrEnum):
    NOT_VIA_AUTHENTICATED_CHANNEL = "NOT_VIA_AUTHENTICATED_CHANNEL"
    REQUESTER_NOT_REGISTERED = "REQUESTER_NOT_REGISTERED"
    MISSING_INSTRUMENT = "MISSING_INSTRUMENT"
    INSTRUMENT_INCOMPLETE = "INSTRUMENT_INCOMPLETE"
    INSTRUMENT_NOT_YET_VALID = "INSTRUMENT_NOT_YET_VALID"
    INSTRUMENT_EXPIRED = "INSTRUMENT_EXPIRED"
    INSTRUMENT_ALREADY_EXECUTED = "INSTRUMENT_ALREADY_EXECUTED"
    WRONG_JURISDICTION = "WRONG_JURISDICTION"
    OFFICER_NOT_VERIFIED = "OFFICER_NOT_VERIFIED"
    SUPERVISOR_NOT_CONFIRMED = "SUPERVISOR_NOT_CONFIRMED"
    AGENCY_MISMATCH = "AGENCY_MISMATCH"
    SCOPE_EXCEEDS_INSTRUMENT = "SCOPE_EXCEEDS_INSTRUMENT"
    INSUFFICIENT_IDENTIFIER = "INSUFFICIENT_IDENTIFIER"
    EMERGENCY_CRITERIA_NOT_MET = "EMERGENCY_CRITERIA_NOT_MET"
    UNVERIFIED_RECIPIENT = "UNVERIFIED_RECIPIENT"
    SELF_APPROVAL_FORBIDDEN = "SELF_APPROVAL_FORBIDDEN"
    SCOPE_CHANGED_AFTER_APPROVAL = "SCOPE_CHANGED_AFTER_APPROVAL"
    # Outcomes of one executed query (the case still completes; nothing is released for it).
    NO_DATA = "NO_DATA"
    AMBIGUOUS = "AMBIGUOUS"
    # Recorded when an officer or approver refuses a case for reasons no check can see.
    REFUSED_BY_REVIEWER = "REFUSED_BY_REVIEWER"


# What each reason means and what the officer can do: the API returns it, docs/disclosure.md lists it.
REASON_HELP: dict[Reason, str] = {
    Reason.NOT_VIA_AUTHENTICATED_CHANNEL: "the request did not arrive through the portal, secure mail or "
        "in person; ordinary e-mail, fax or phone prove nothing about the sender. Ask the agency to "
        "submit through the portal.",
    Reason.REQUESTER_NOT_REGISTERED: "the requester is not in the registry, or is suspended (e.g. a "
        "compromised mailbox). Register the officer from the agency's directory before going on.",
    Reason.MISSING_INSTRUMENT: "no legal instrument is attached. Ask for the court order, warrant, "
        "production order, statutory notice or emergency declaration.",
    Reason.INSTRUMENT_INCOMPLETE: "the instrument lacks fields named in the detail. Ask for a complete copy.",
    Reason.INSTRUMENT_NOT_YET_VALID: "the instrument's validity starts later; wait until valid_from.",
    Reason.INSTRUMENT_EXPIRED: "the instrument's validity ended; a fresh instrument is needed.",
    Reason.INSTRUMENT_ALREADY_EXECUTED: "this instrument (issuer + reference) was already executed in "
        "another case: a replay. A fresh instrument is needed.",
    Reason.WRONG_JURISDICTION: "the issuer is not competent for this ISP's jurisdiction; foreign requests "
        "go through mutual legal assistance.",
    Reason.OFFICER_NOT_VERIFIED: "no confirmed callback to the requester's registry number (or the "
        "requester denied the request). Call the number from the registry, never one from the request.",
    Reason.SUPERVISOR_NOT_CONFIRMED: "the requester's supervisor has not confirmed the request by a "
        "callback to the supervisor's registry number (or the requester has no registered supervisor).",
    Reason.AGENCY_MISMATCH: "the agency named on the instrument is not the requester's agency.",
    Reason.SCOPE_EXCEEDS_INSTRUMENT: "a query asks for an identifier, data category or time outside what "
        "the instrument authorises. Narrow the query to the instrument.",
    Reason.INSUFFICIENT_IDENTIFIER: "a shared (CGNAT) public IPv4 address needs the source port and "
        "protocol; without them the answer would name every subscriber behind the address.",
    Reason.EMERGENCY_CRITERIA_NOT_MET: "an emergency declaration must state a danger to life or of "
        "serious injury, with grounds, and ask only for the subscriber account and contact.",
    Reason.UNVERIFIED_RECIPIENT: "delivery must go to the verified requester over the portal or secure mail.",
    Reason.SELF_APPROVAL_FORBIDDEN: "the approver prepared this case; a second person must approve.",
    Reason.SCOPE_CHANGED_AFTER_APPROVAL: "the scope differs from the one approved; it needs review and "
        "approval again.",
    Reason.NO_DATA: "no record inside the retention period matched the query.",
    Reason.AMBIGUOUS: "the query matched more than one subscriber; nothing is released for it.",
    Reason.REFUSED_BY_REVIEWER: "an officer or approver refused the case (see the note).",
}


@dataclass(frozen=True, slots=True)
class CheckResult:
    check: str
    reason: Reason | None = None
    detail: str = ""
    fatal: bool = False

    @property
    def passed(self) -> bool:
        return self.reason is None


@dataclass(frozen=True, slots=True)
class CaseFacts:
    """Everything the checks look at, gathered by the service; pure values."""

    now: datetime
    received_at: datetime
    channel: Channel
    requester: Requester | None          # the registered requester (None: not in the registry)
    supervisor: Requester | None
    scope: Scope
    jurisdiction: str
    callbacks: tuple[Callback, ...] = ()
    executed_instruments: frozenset[str] = frozenset()  # keys executed by *other* cases
    shared_addresses: frozenset[IPAddress] = frozenset()  # query addresses that are CGNAT-shared
    preparer: str | None = None
    approver: str | None = None
    frozen_digest: str | None = None


def _ok(name: str) -> CheckResult:
    return CheckResult(name)


def _fail(name: str, reason: Reason, detail: str, fatal: bool = False) -> CheckResult:
    return CheckResult(name, reason, detail, fatal)


# -- 1. intake channel and registered requester ---------------------------------------------------

def check_channel(f: CaseFacts) -> CheckResult:
    if f.channel in AUTHENTICATED_CHANNELS:
        return _ok("channel")
    return _fail("channel", Reason.NOT_VIA_AUTHENTICATED_CHANNEL,
                 f"received by {f.channel.value}, which does not authenticate the sender", fatal=True)


def check_requester_registered(f: CaseFacts) -> CheckResult:
    if f.requester is None:
        return _fail("requester_registered", Reason.REQUESTER_NOT_REGISTERED,
                     "the requester is not a registered officer", fatal=True)
    if f.requester.status is not RequesterStatus.ACTIVE:
        return _fail("requester_registered", Reason.REQUESTER_NOT_REGISTERED,
                     f"requester {f.requester.id} is {f.requester.status.value}", fatal=True)
    return _ok("requester_registered")


# -- 2. instrument present and complete ----------------------------------------------------------

def check_instrument_present(f: CaseFacts) -> CheckResult:
    if f.scope.instrument is None:
        return _fail("instrument_present", Reason.MISSING_INSTRUMENT, "no instrument attached")
    return _ok("instrument_present")


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def missing_instrument_fields(i: Instrument) -> list[str]:
    missing = [name for name in ("issuer", "issuer_jurisdiction", "reference", "legal_provision", "agency")
               if not str(getattr(i, name)).strip()]
    for name in ("issued_on", "valid_from", "valid_to", "window_start", "window_end"):
        if getattr(i, name) is None:
            missing.append(name)
    if not _SHA256.match(i.document_sha256):
        missing.append("document_sha256 (64 lower-case hex digits)")
    if not i.categories:
        missing.append("categories")
    if not (i.addresses or i.order_refs or i.qnames):
        missing.append("identifiers (addresses, order_refs or qnames)")
    if i.valid_from and i.valid_to and i.valid_to <= i.valid_from:
        missing.append("valid_to after valid_from")
    if i.window_start and i.window_end and i.window_end <= i.window_start:
        missing.append("window_end after window_start")
    if i.type is InstrumentType.EMERGENCY_DECLARATION and not i.emergency_grounds.strip():
        missing.append("emergency_grounds")
    return missing


def check_instrument_complete(f: CaseFacts) -> CheckResult:
    i = f.scope.instrument
    if i is None:
        return _ok("instrument_complete")  # reported by instrument_present
    missing = missing_instrument_fields(i)
    if missing:
        return _fail("instrument_complete", Reason.INSTRUMENT_INCOMPLETE, "missing: " + ", ".join(missing))
    return _ok("instrument_complete")


# -- 3. instrument current and not replayed -------------------------------------------------------

def check_instrument_current(f: CaseFacts) -> CheckResult:
    i = f.scope.instrument
    if i is None:
        return _ok("instrument_current")  # reported by instrument_present
    if i.valid_from is None or i.valid_to is None:
        return _fail("instrument_current", Reason.INSTRUMENT_INCOMPLETE, "validity period missing")
    if f.now < i.valid_from:
        return _fail("instrument_current", Reason.INSTRUMENT_NOT_YET_VALID,
                     f"valid from {i.valid_from.isoformat()}, now {f.now.isoformat()}")
    if f.now >= i.valid_to:
        return _fail("instrument_current", Reason.INSTRUMENT_EXPIRED,
                     f"expired at {i.valid_to.isoformat()}, now {f.now.isoformat()}", fatal=True)
    return _ok("instrument_current")


def check_not_already_executed(f: CaseFacts) -> CheckResult:
    i = f.scope.instrument
    if i is not None and i.key in f.executed_instruments:
        return _fail("not_already_executed", Reason.INSTRUMENT_ALREADY_EXECUTED,
                     f"{i.reference} from {i.issuer} was executed in another case", fatal=True)
    return _ok("not_already_executed")


# -- 4. jurisdiction -----------------------------------------------------------------------------

def check_jurisdiction(f: CaseFacts) -> CheckResult:
    i = f.scope.instrument
    if i is not None and i.issuer_jurisdiction.strip().upper() != f.jurisdiction.strip().upper():
        return _fail("jurisdiction", Reason.WRONG_JURISDICTION,
                     f"issued in {i.issuer_jurisdiction or '(none)'}, this ISP answers to {f.jurisdiction}",
                     fatal=True)
    return _ok("jurisdiction")


# -- 5. out-of-band verification of officer and supervisor ---------------------------------------

def _callback_state(f: CaseFacts, person: CallPerson, target: Requester) -> tuple[bool, bool]:
    """(confirmed, denied) from callbacks made after the request arrived to the registry number."""
    confirmed = denied = False
    for cb in f.callbacks:
        if cb.person is not person or cb.requester_id != target.id or cb.at < f.received_at:
            continue
        if cb.number != target.official_phone:
            continue  # a number that is not the registry's proves nothing
        confirmed |= cb.outcome is CallOutcome.CONFIRMED
        denied |= cb.outcome is CallOutcome.DENIED
    return confirmed, denied


def check_officer_verified(f: CaseFacts) -> CheckResult:
    if f.requester is None:
        return _fail("officer_verified", Reason.OFFICER_NOT_VERIFIED, "no registered requester to call back")
    confirmed, denied = _callback_state(f, CallPerson.REQUESTER, f.requester)
    if denied:
        return _fail("officer_verified", Reason.OFFICER_NOT_VERIFIED,
                     f"requester {f.requester.id} denied the request on callback", fatal=True)
    if not confirmed:
        return _fail("officer_verified", Reason.OFFICER_NOT_VERIFIED,
                     f"no confirmed callback to {f.requester.official_phone} (registry) since intake")
    return _ok("officer_verified")


def check_supervisor_confirmed(f: CaseFacts) -> CheckResult:
    r, sup = f.requester, f.supervisor
    if r is None or sup is None or r.supervisor_id != sup.id:
        return _fail("supervisor_confirmed", Reason.SUPERVISOR_NOT_CONFIRMED, "no registered supervisor")
    if sup.status is not RequesterStatus.ACTIVE or sup.agency != r.agency:
        return _fail("supervisor_confirmed", Reason.SUPERVISOR_NOT_CONFIRMED,
                     f"supervisor {sup.id} is {sup.status.value} or of another agency")
    confirmed, denied = _callback_state(f, CallPerson.SUPERVISOR, sup)
    if denied:
        return _fail("supervisor_confirmed", Reason.SUPERVISOR_NOT_CONFIRMED,
                     f"supervisor {sup.id} denied the request on callback", fatal=True)
    if not confirmed:
        return _fail("supervisor_confirmed", Reason.SUPERVISOR_NOT_CONFIRMED,
                     f"no confirmed callback to the supervisor's registry number {sup.official_phone}")
    return _ok("supervisor_confirmed")


def check_agency_matches(f: CaseFacts) -> CheckResult:
    i = f.scope.instrument
    if i is None or f.requester is None:
        return _ok("agency_matches")  # reported by instrument_present / requester_registered
    if i.agency.strip().upper() != f.requester.agency.strip().upper():
        return _fail("agency_matches", Reason.AGENCY_MISMATCH,
                     f"instrument names {i.agency}, requester is with {f.requester.agency}", fatal=True)
    return _ok("agency_matches")


# -- 6. scope inside the instrument ---------------------------------------------------------------

def query_scope_problems(i: Instrument, q: Query) -> list[str]:
    problems = []
    if q.kind is QueryKind.ADDRESS:
        if q.address is None or not any(q.address in net for net in i.addresses
                                         if net.version == q.address.version):
            problems.append(f"address {q.address} is not named on the instrument")
        if Category.BLOCKED_LOOKUPS in q.categories:
            problems.append("blocked_lookups is not a category of an address query")
    else:
        named = (q.order_ref is not None and q.order_ref in i.order_refs) or \
                (q.qname is not None and q.qname in i.qnames)
        if not named or (q.order_ref is None and q.qname is None):
            problems.append(f"{q.order_ref or q.qname} is not named on the instrument")
        if Category.SESSION_RECORDS in q.categories:
            problems.append("session_records is not a category of a blocked-lookup query")
    extra = q.categories - i.categories
    if extra:
        problems.append("categories not authorised: " + ", ".join(sorted(c.value for c in extra)))
    if not q.categories:
        problems.append("no data category asked")
    if i.window_start is None or i.window_end is None or q.start < i.window_start or q.end > i.window_end:
        problems.append(f"window {q.start.isoformat()}..{q.end.isoformat()} is outside the instrument's")
    if q.end <= q.start:
        problems.append("window end is not after its start")
    return problems


def check_scope(f: CaseFacts) -> CheckResult:
    i = f.scope.instrument
    if i is None:
        return _ok("scope")  # reported by instrument_present
    if not f.scope.queries:
        return _fail("scope", Reason.SCOPE_EXCEEDS_INSTRUMENT, "the case has no query")
    out = [f"query {n}: {p}" for n, q in enumerate(f.scope.queries) for p in query_scope_problems(i, q)]
    if out:
        return _fail("scope", Reason.SCOPE_EXCEEDS_INSTRUMENT, "; ".join(out))
    return _ok("scope")


# -- 7. identifier precision ---------------------------------------------------------------------

def check_identifier_precision(f: CaseFacts) -> CheckResult:
    out = []
    for n, q in enumerate(f.scope.queries):
        if q.kind is QueryKind.ADDRESS and q.address in f.shared_addresses and \
                (q.port is None or q.transport is None):
            out.append(f"query {n}: {q.address} is a shared (CGNAT) address; give the source port and protocol")
    if out:
        return _fail("identifier_precision", Reason.INSUFFICIENT_IDENTIFIER, "; ".join(out))
    return _ok("identifier_precision")


# -- 9. emergency path ---------------------------------------------------------------------------

def check_emergency(f: CaseFacts) -> CheckResult:
    i = f.scope.instrument
    if i is None or i.type is not InstrumentType.EMERGENCY_DECLARATION:
        return _ok("emergency")
    if not i.danger_to_life or not i.emergency_grounds.strip():
        return _fail("emergency", Reason.EMERGENCY_CRITERIA_NOT_MET,
                     "no declared danger to life or of serious injury", fatal=True)
    wide = (i.categories | frozenset(c for q in f.scope.queries for c in q.categories)) - EMERGENCY_CATEGORIES
    if wide:
        return _fail("emergency", Reason.EMERGENCY_CRITERIA_NOT_MET,
                     "an emergency release is limited to subscriber_account and subscriber_contact, not "
                     + ", ".join(sorted(c.value for c in wide)))
    if len(f.scope.queries) > 1:
        return _fail("emergency", Reason.EMERGENCY_CRITERIA_NOT_MET, "an emergency release covers one query")
    return _ok("emergency")


# -- 12. delivery --------------------------------------------------------------------------------

def check_delivery(f: CaseFacts) -> CheckResult:
    d = f.scope.delivery
    if d is None:
        return _fail("delivery", Reason.UNVERIFIED_RECIPIENT, "no delivery given")
    if d.method not in ENCRYPTED_DELIVERY:
        return _fail("delivery", Reason.UNVERIFIED_RECIPIENT, f"{d.method} is not an encrypted channel")
    if f.requester is None or d.recipient_id != f.requester.id:
        return _fail("delivery", Reason.UNVERIFIED_RECIPIENT,
                     f"recipient {d.recipient_id} is not the verified requester")
    return _ok("delivery")


# -- 11. four eyes; and the approved scope is what runs ------------------------------------------

def check_four_eyes(f: CaseFacts) -> CheckResult:
    if f.approver is None or f.preparer is None:
        return _fail("four_eyes", Reason.SELF_APPROVAL_FORBIDDEN, "preparer or approver unknown")
    if f.approver.strip().lower() == f.preparer.strip().lower():
        return _fail("four_eyes", Reason.SELF_APPROVAL_FORBIDDEN, f"{f.approver} prepared this case")
    return _ok("four_eyes")


def check_approved_scope(f: CaseFacts) -> CheckResult:
    if f.frozen_digest is None or f.frozen_digest != f.scope.digest():
        return _fail("approved_scope", Reason.SCOPE_CHANGED_AFTER_APPROVAL,
                     "the scope differs from the one frozen at SCOPED and approved", fatal=True)
    return _ok("approved_scope")


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    reasons: tuple[Reason, ...]
    run: Callable[[CaseFacts], CheckResult]


CHANNEL = Check("channel", (Reason.NOT_VIA_AUTHENTICATED_CHANNEL,), check_channel)
REQUESTER = Check("requester_registered", (Reason.REQUESTER_NOT_REGISTERED,), check_requester_registered)
PRESENT = Check("instrument_present", (Reason.MISSING_INSTRUMENT,), check_instrument_present)
COMPLETE = Check("instrument_complete", (Reason.INSTRUMENT_INCOMPLETE,), check_instrument_complete)
CURRENT = Check("instrument_current", (Reason.INSTRUMENT_NOT_YET_VALID, Reason.INSTRUMENT_EXPIRED),
                check_instrument_current)
NOT_EXECUTED = Check("not_already_executed", (Reason.INSTRUMENT_ALREADY_EXECUTED,), check_not_already_executed)
JURISDICTION = Check("jurisdiction", (Reason.WRONG_JURISDICTION,), check_jurisdiction)
OFFICER = Check("officer_verified", (Reason.OFFICER_NOT_VERIFIED,), check_officer_verified)
SUPERVISOR = Check("supervisor_confirmed", (Reason.SUPERVISOR_NOT_CONFIRMED,), check_supervisor_confirmed)
AGENCY = Check("agency_matches", (Reason.AGENCY_MISMATCH,), check_agency_matches)
SCOPE = Check("scope", (Reason.SCOPE_EXCEEDS_INSTRUMENT,), check_scope)
PRECISION = Check("identifier_precision", (Reason.INSUFFICIENT_IDENTIFIER,), check_identifier_precision)
EMERGENCY = Check("emergency", (Reason.EMERGENCY_CRITERIA_NOT_MET,), check_emergency)
DELIVERY = Check("delivery", (Reason.UNVERIFIED_RECIPIENT,), check_delivery)
FOUR_EYES = Check("four_eyes", (Reason.SELF_APPROVAL_FORBIDDEN,), check_four_eyes)
APPROVED_SCOPE = Check("approved_scope", (Reason.SCOPE_CHANGED_AFTER_APPROVAL,), check_approved_scope)

# Identity and instrument: before legal review starts. A forged or replayed request stops here.
VERIFICATION_CHECKS = (CHANNEL, REQUESTER, PRESENT, COMPLETE, CURRENT, NOT_EXECUTED, JURISDICTION,
                       AGENCY, OFFICER, SUPERVISOR)
# Everything, again, when the scope is frozen (the case may have been amended since).
SCOPING_CHECKS = (*VERIFICATION_CHECKS, SCOPE, PRECISION, EMERGENCY, DELIVERY)

# Which checks guard which lifecycle event. Events not listed have no checks of their own.
GATES: dict[Event, tuple[Check, ...]] = {
    Event.VERIFIED: VERIFICATION_CHECKS,
    Event.FREEZE_SCOPE: SCOPING_CHECKS,
    Event.APPROVE: (FOUR_EYES, PRESENT, CURRENT, NOT_EXECUTED, APPROVED_SCOPE),
    Event.EXECUTE: (PRESENT, CURRENT, NOT_EXECUTED, APPROVED_SCOPE, SCOPE, PRECISION),
}

ALL_CHECKS: tuple[Check, ...] = (*SCOPING_CHECKS, FOUR_EYES, APPROVED_SCOPE)


def run_checks(checks: tuple[Check, ...], facts: CaseFacts) -> tuple[CheckResult, ...]:
    return tuple(c.run(facts) for c in checks)


def failures(results: tuple[CheckResult, ...]) -> tuple[CheckResult, ...]:
    return tuple(r for r in results if not r.passed)


def followup_facts(facts: CaseFacts, followup: Instrument) -> CaseFacts:
    """The facts to check an emergency case's follow-up instrument: the same queries, the new
    instrument (which must cover what was already released)."""
    return replace(facts, scope=replace(facts.scope, instrument=followup))


def check_followup(facts: CaseFacts, followup: Instrument) -> tuple[CheckResult, ...]:
    if followup.type is InstrumentType.EMERGENCY_DECLARATION:
        return (_fail("followup", Reason.MISSING_INSTRUMENT,
                      "the follow-up must be a court order, warrant, production order or statutory notice"),)
    f = followup_facts(facts, followup)
    results = run_checks((COMPLETE, JURISDICTION, AGENCY, SCOPE), f)
    started = followup.valid_from is not None and followup.valid_from <= facts.now
    if not started:
        results += (_fail("followup", Reason.INSTRUMENT_NOT_YET_VALID, "the follow-up is not in force yet"),)
    return results
