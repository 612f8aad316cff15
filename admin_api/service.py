"""The disclosure workflow as operations: the routes and the CLI call these, nothing else.

Each operation runs in one store transaction: read the case, consult the lifecycle table
(``workflow``) and the gate's checks (``checks``), write the new state and every audit record
(transition, check results, callback, executed queries with row counts, approval, delivery,
notice) together. Time comes from the injected clock; timers (instrument expiry, follow-up
deadlines, gag end) are applied by ``sweep`` at the start of every case operation.
"""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .blocklog import BlocklogOpener, BlocklogSource
from .checks import (
    GATES,
    REASON_HELP,
    CaseFacts,
    Check,
    CheckResult,
    Reason,
    check_followup,
    failures,
    run_checks,
)
from .clock import Clock, iso
from .codec import instrument_to_json, query_to_json, scope_to_json
from .config import ApiConfig
from .errors import AccessDenied, ChecksFailed, Conflict
from .executor import Sources, case_outcome, package_body, run_queries
from .model import (
    Agency,
    Callback,
    CallOutcome,
    CallPerson,
    CaseRecord,
    Channel,
    ClaimedRequester,
    Instrument,
    InstrumentType,
    IPAddress,
    Requester,
    RequesterStatus,
    Scope,
)
from .package import SignedPackage, sign
from .sessions import ParseResult
from .store import AuditEntry, ImportCounts, Retention, Store, Tx
from .tokens import Principal
from .workflow import (
    AMENDABLE,
    AWAITING_FOLLOWUP,
    PRE_EXECUTION,
    Event,
    State,
    amendment_event,
    next_state,
)

SYSTEM = Principal("-", "system", None, datetime.max.replace(tzinfo=UTC))  # the timers' own actor


def _role(who: Principal) -> str:
    return who.role.value if who.role is not None else "system"


def _results_json(results: Sequence[CheckResult]) -> list[dict[str, Any]]:
    return [{"check": r.check, "passed": r.passed, "reason": r.reason.value if r.reason else None,
             "detail": r.detail, "fatal": r.fatal} for r in results]


@dataclass(frozen=True, slots=True)
class Intake:
    channel: Channel
    agency_request_number: str
    requester_id: int | None
    claimed: ClaimedRequester
    scope: Scope


class DisclosureService:
    def __init__(self, store: Store, config: ApiConfig, clock: Clock, signing_key: Ed25519PrivateKey | None, *,
                 opener: BlocklogOpener | None = None, blocklog: BlocklogSource | None = None,
                 gates: dict[Event, tuple[Check, ...]] | None = None) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.signing_key = signing_key
        self.opener = opener
        self.blocklog = blocklog
        self.gates = dict(GATES if gates is None else gates)

    # -- registry --------------------------------------------------------------------------------

    def add_agency(self, who: Principal, agency: Agency) -> Agency:
        now = self.clock.now()
        with self.store.transaction() as tx:
            tx.add_agency(agency, now)
            tx.audit(now, who.subject, _role(who), "registry.agency_added",
                     {"code": agency.code, "name": agency.name, "jurisdiction": agency.jurisdiction})
        return agency

    def add_requester(self, who: Principal, r: Requester) -> Requester:
        now = self.clock.now()
        with self.store.transaction() as tx:
            tx.get_agency(r.agency)
            if r.supervisor_id is not None:
                sup = tx.get_requester(r.supervisor_id)
                if sup.agency != r.agency:
                    raise Conflict(f"supervisor {sup.id} is with {sup.agency}, not {r.agency}")
            added = tx.add_requester(r, now)
            tx.audit(now, who.subject, _role(who), "registry.requester_added",
                     {"id": added.id, "agency": r.agency, "warrant_card": r.warrant_card,
                      "official_phone": r.official_phone, "phone_source": r.phone_source,
                      "supervisor_id": r.supervisor_id})
        return added

    def set_requester_status(self, who: Principal, rid: int, status: RequesterStatus, note: str) -> Requester:
        now = self.clock.now()
        with self.store.transaction() as tx:
            r = tx.set_requester_status(rid, status)
            tx.audit(now, who.subject, _role(who), "registry.requester_status",
                     {"id": rid, "status": status.value, "note": note})
        return r

    def list_agencies(self) -> list[Agency]:
        with self.store.read() as tx:
            return tx.list_agencies()

    def list_requesters(self) -> list[Requester]:
        with self.store.read() as tx:
            return tx.list_requesters()

    # -- intake and reading ----------------------------------------------------------------------

    def intake(self, who: Principal, data: Intake) -> CaseRecord:
        now = self.clock.now()
        self.sweep()
        with self.store.transaction() as tx:
            if data.requester_id is not None:
                tx.get_requester(data.requester_id)
            case = CaseRecord(
                id=tx.next_case_id(self.config.case_prefix, now.year), state=State.RECEIVED, channel=data.channel,
                agency_request_number=data.agency_request_number, requester_id=data.requester_id,
                claimed=data.claimed, scope=data.scope, received_at=now, updated_at=now, created_by=who.subject)
            tx.insert_case(case)
            i = data.scope.instrument
            tx.audit(now, who.subject, _role(who), "case.received", {
                "state": State.RECEIVED.value, "channel": data.channel.value,
                "agency_request_number": data.agency_request_number, "requester_id": data.requester_id,
                "claimed_agency": data.claimed.agency, "claimed_email": data.claimed.email,
                "instrument_document_sha256": i.document_sha256 if i else None,
                "scope": scope_to_json(data.scope)}, case_id=case.id)
        return case

    def get_case(self, case_id: str) -> CaseRecord:
        self.sweep()
        with self.store.read() as tx:
            return tx.get_case(case_id)

    def list_cases(self, state: str | None, limit: int, offset: int) -> list[CaseRecord]:
        self.sweep()
        with self.store.read() as tx:
            return tx.list_cases(state, limit, offset)

    def callbacks(self, case_id: str) -> tuple[Callback, ...]:
        with self.store.read() as tx:
            tx.get_case(case_id)
            return tx.callbacks(case_id)

    # -- the lifecycle ---------------------------------------------------------------------------

    def _transition(self, tx: Tx, case: CaseRecord, event: Event, who: Principal, now: datetime, *,
                    data: dict[str, Any] | None = None, **changes: Any) -> CaseRecord:
        state = next_state(case.state, event, case.id)
        updated = replace(case, state=state, updated_at=now, version=case.version + 1, **changes)
        tx.update_case(updated, case.version)
        tx.audit(now, who.subject, _role(who), "case.transition",
                 {"event": event.value, "from": case.state.value, "to": state.value, **(data or {})}, case_id=case.id)
        return updated

    def _facts(self, tx: Tx, case: CaseRecord, now: datetime, approver: str | None = None) -> CaseFacts:
        requester = tx.find_requester(case.requester_id)
        supervisor = tx.find_requester(requester.supervisor_id) if requester else None
        shared = frozenset(q.address for q in case.scope.queries
                           if q.address is not None and self.is_shared(tx, q.address))
        return CaseFacts(now=now, received_at=case.received_at, channel=case.channel, requester=requester,
                         supervisor=supervisor, scope=case.scope, jurisdiction=self.config.jurisdiction,
                         callbacks=tx.callbacks(case.id), executed_instruments=tx.executed_instrument_keys(case.id),
                         shared_addresses=shared, preparer=case.preparer, approver=approver,
                         frozen_digest=case.frozen_digest)

    def is_shared(self, tx: Tx, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv4Address) and any(address in p for p in self.config.cgnat_pools):
            return True
        return tx.has_port_blocks(str(address))

    def _gate(self, tx: Tx, case: CaseRecord, event: Event, who: Principal, now: datetime, *,
              approver: str | None = None) -> tuple[CaseRecord, tuple[CheckResult, ...]]:
        """Run the event's checks and record them. Fatal failure: the case is rejected. Other
        failures: the case stays; the caller raises ChecksFailed after the commit."""
        results = run_checks(self.gates.get(event, ()), self._facts(tx, case, now, approver))
        tx.audit(now, who.subject, _role(who), "case.checks", {"event": event.value, "results": _results_json(results)},
                 case_id=case.id)
        failed = failures(results)
        if any(r.fatal for r in failed):
            codes = tuple(sorted({r.reason.value for r in failed if r.reason}))
            case = self._transition(tx, case, Event.REJECT, who, now, data={"reasons": list(codes), "automatic": True},
                                    reasons=codes, outcome="refused")
        return case, failed

    def _step(self, who: Principal, case_id: str, event: Event,
              apply: Callable[[Tx, CaseRecord, datetime], CaseRecord] | None = None,
              approver: str | None = None) -> CaseRecord:
        """A gated transition: checks, then either the transition (and ``apply``) or a refusal."""
        self.sweep()
        now = self.clock.now()
        with self.store.transaction() as tx:
            case = tx.get_case(case_id)
            next_state(case.state, event, case.id)  # an illegal event fails before any check runs
            case, failed = self._gate(tx, case, event, who, now, approver=approver)
            if not failed:
                case = apply(tx, case, now) if apply else self._transition(tx, case, event, who, now)
        if failed and case.state is not State.REJECTED:
            raise ChecksFailed(case_id, event.value, failed)
        return case

    def start_verification(self, who: Principal, case_id: str) -> CaseRecord:
        return self._simple(who, case_id, Event.START_VERIFICATION)

    def _simple(self, who: Principal, case_id: str, event: Event, *, data: dict[str, Any] | None = None,
                **changes: Any) -> CaseRecord:
        self.sweep()
        now = self.clock.now()
        with self.store.transaction() as tx:
            case = tx.get_case(case_id)
            return self._transition(tx, case, event, who, now, data=data, **changes)

    def record_callback(self, who: Principal, case_id: str, person: CallPerson, outcome: CallOutcome,
                        note: str = "") -> Callback:
        """The number is taken from the registry, never from the request."""
        self.sweep()
        now = self.clock.now()
        with self.store.transaction() as tx:
            case = tx.get_case(case_id)
            if case.state not in (State.VERIFYING, State.LEGAL_REVIEW, State.NEEDS_INFO):
                raise Conflict(f"case {case_id} is {case.state.value}; callbacks are recorded while verifying")
            requester = tx.find_requester(case.requester_id)
            if requester is None:
                raise Conflict(f"case {case_id} has no registered requester: there is no registry number to call")
            target = requester
            if person is CallPerson.SUPERVISOR:
                if requester.supervisor_id is None:
                    raise Conflict(f"requester {requester.id} has no registered supervisor")
                target = tx.get_requester(requester.supervisor_id)
            cb = Callback(person, target.id, target.official_phone, target.phone_source, outcome, who.subject, now)
            tx.add_callback(case_id, cb, note)
            tx.audit(now, who.subject, _role(who), "case.callback", {
                "person": person.value, "requester_id": target.id, "number": target.official_phone,
                "number_source": target.phone_source, "outcome": outcome.value, "called_by": who.subject,
                "at": iso(now), "note": note}, case_id=case_id)
        return cb

    def complete_verification(self, who: Principal, case_id: str) -> CaseRecord:
        return self._step(who, case_id, Event.VERIFIED)

    def amend(self, who: Principal, case_id: str, scope: Scope, note: str = "") -> CaseRecord:
        self.sweep()
        now = self.clock.now()
        with self.store.transaction() as tx:
            case = tx.get_case(case_id)
            if case.state not in AMENDABLE:
                next_state(case.state, Event.CHANGE_SCOPE, case.id)  # raises IllegalTransition
            event = amendment_event(case.state)
            data = {"note": note, "before": scope_to_json(case.scope), "after": scope_to_json(scope)}
            changes: dict[str, Any] = {"scope": scope}
            if event is Event.CHANGE_SCOPE:
                changes.update(frozen_digest=None, preparer=None, approver=None)
            return self._transition(tx, case, event, who, now, data=data, **changes)

    def request_info(self, who: Principal, case_id: str, note: str) -> CaseRecord:
        return self._simple(who, case_id, Event.REQUEST_INFO, data={"note": note})

    def preserve(self, who: Principal, case_id: str, until: datetime, reason: str) -> int:
        """A preservation hold: the records the case's address queries cover are kept past retention
        (and found by this case's lookups) until ``until``. Nothing is released by it."""
        self.sweep()
        now = self.clock.now()
        with self.store.transaction() as tx:
            case = tx.get_case(case_id)
            if case.state not in PRE_EXECUTION:
                raise Conflict(f"case {case_id} is {case.state.value}; holds are placed before execution")
            if until <= now:
                raise Conflict("a hold must end in the future")
            held = []
            for q in case.scope.queries:
                if q.address is None:
                    continue  # blocked-lookup records are held in the blocked-lookup log (issue 5)
                addresses = [str(q.address)]
                if self.is_shared(tx, q.address):
                    addresses += tx.inside_addresses(str(q.address), q.start, q.end)
                for a in addresses:
                    tx.add_hold(case_id, a, q.start, q.end, until=until, reason=reason, by=who.subject, now=now)
                    held.append(a)
            tx.audit(now, who.subject, _role(who), "case.preservation_hold",
                     {"addresses": held, "until": iso(until), "reason": reason}, case_id=case_id)
        return len(held)

    def purge_sessions(self, who: Principal) -> dict[str, int]:
        """Delete session records past retention that no active preservation hold covers."""
        now = self.clock.now()
        period = timedelta(days=self.config.session_retention_days)
        with self.store.transaction() as tx:
            counts = tx.purge_sessions(Retention(now - period, period, now))
            tx.audit(now, who.subject, _role(who), "sessions.purged",
                     {**counts, "cutoff": iso(now - period)})
        return counts

    def freeze_scope(self, who: Principal, case_id: str) -> CaseRecord:
        def apply(tx: Tx, case: CaseRecord, now: datetime) -> CaseRecord:
            digest = case.scope.digest()
            return self._transition(tx, case, Event.FREEZE_SCOPE, who, now, data={"scope_digest": digest},
                                    frozen_digest=digest)
        return self._step(who, case_id, Event.FREEZE_SCOPE, apply)

    def submit(self, who: Principal, case_id: str) -> CaseRecord:
        return self._simple(who, case_id, Event.SUBMIT, data={"preparer": who.subject}, preparer=who.subject)

    def approve(self, who: Principal, case_id: str, note: str = "") -> CaseRecord:
        def apply(tx: Tx, case: CaseRecord, now: datetime) -> CaseRecord:
            return self._transition(tx, case, Event.APPROVE, who, now,
                                    data={"approver": who.subject, "scope_digest": case.frozen_digest, "note": note},
                                    approver=who.subject)
        return self._step(who, case_id, Event.APPROVE, apply, approver=who.subject)

    def reject(self, who: Principal, case_id: str, reasons: Sequence[Reason], note: str) -> CaseRecord:
        codes = tuple(sorted({r.value for r in reasons} or {Reason.REFUSED_BY_REVIEWER.value}))
        return self._simple(who, case_id, Event.REJECT, data={"reasons": list(codes), "note": note},
                            reasons=codes, outcome="refused")

    def withdraw(self, who: Principal, case_id: str, note: str) -> CaseRecord:
        return self._simple(who, case_id, Event.WITHDRAW, data={"note": note}, outcome="withdrawn")

    def execute(self, who: Principal, case_id: str) -> CaseRecord:
        if self.signing_key is None:
            raise Conflict("no package signing key is configured ([api] signing_key); nothing was executed")
        key = self.signing_key

        def apply(tx: Tx, case: CaseRecord, now: datetime) -> CaseRecord:
            src = Sources(tx, timedelta(days=self.config.session_retention_days), self.is_shared,
                          self.blocklog, self.opener)
            executed = run_queries(src, case, now)
            for e in executed:
                tx.audit(now, who.subject, _role(who), "case.query_executed",
                         {"query": e.index, "as_executed": e.as_executed, "rows": e.rows, "outcome": e.outcome,
                          "results": len(e.results), "sealed_addresses_opened": e.opened_addresses}, case_id=case.id)
            assert case.scope.instrument is not None
            tx.mark_instrument_executed(case.scope.instrument.key, case.id, now)
            signed = sign(package_body(case, executed, now, self.config.isp_name,
                                       self.config.session_retention_days), key)
            tx.put_package(case.id, body=signed.body, sha256=signed.sha256, signature=signed.signature,
                           key_id=signed.key_id, now=now)
            codes = tuple(sorted({e.outcome for e in executed if e.outcome in (Reason.NO_DATA, Reason.AMBIGUOUS)}))
            return self._transition(tx, case, Event.EXECUTE, who, now,
                                    data={"package_sha256": signed.sha256, "key_id": signed.key_id,
                                     "outcomes": [e.outcome for e in executed]},
                                    executed_at=now, outcome=case_outcome(executed), reasons=codes)
        return self._step(who, case_id, Event.EXECUTE, apply)

    def package(self, who: Principal, case_id: str) -> SignedPackage:
        with self.store.transaction() as tx:
            case = tx.get_case(case_id)
            if who.subject not in (case.preparer, case.approver):
                raise AccessDenied(f"only the preparer or the approver of case {case_id} may read its results", 403)
            body, sha, sig, kid = tx.get_package(case_id)
            tx.audit(self.clock.now(), who.subject, _role(who), "case.package_read", {"sha256": sha}, case_id=case_id)
        return SignedPackage(body, sha, sig, kid)

    def deliver(self, who: Principal, case_id: str, receipt: str) -> CaseRecord:
        self.sweep()
        now = self.clock.now()
        with self.store.transaction() as tx:
            case = tx.get_case(case_id)
            _, sha, _, _ = tx.get_package(case_id)
            d = case.scope.delivery
            case = self._transition(tx, case, Event.DELIVER, who, now,
                                    data={"package_sha256": sha, "method": d.method if d else None,
                                     "recipient_id": d.recipient_id if d else None, "receipt": receipt},
                                    delivered_at=now)
            i = case.scope.instrument
            if i is not None and i.type is InstrumentType.EMERGENCY_DECLARATION:
                due = now + timedelta(hours=self.config.emergency_followup_hours)
                return self._transition(tx, case, Event.AWAIT_FOLLOWUP, who, now, data={"followup_due": iso(due)},
                                        followup_due=due)
            return self._notice_decision(tx, case, who, now)

    def _notice_decision(self, tx: Tx, case: CaseRecord, who: Principal, now: datetime) -> CaseRecord:
        gag = case.scope.gag_until
        if gag is not None and gag > now.date():
            return self._transition(tx, case, Event.DEFER_NOTICE, who, now, data={"gag_until": gag.isoformat()})
        return self._transition(tx, case, Event.SCHEDULE_NOTICE, who, now, data={"notice": "scheduled"})

    def record_followup(self, who: Principal, case_id: str, followup: Instrument) -> CaseRecord:
        self.sweep()
        now = self.clock.now()
        with self.store.transaction() as tx:
            case = tx.get_case(case_id)
            if case.state not in AWAITING_FOLLOWUP:
                raise Conflict(f"case {case_id} is {case.state.value}; a follow-up instrument is recorded only "
                               "after an emergency release")
            results = check_followup(self._facts(tx, case, now), followup)
            tx.audit(now, who.subject, _role(who), "case.followup_checks",
                     {"instrument": instrument_to_json(followup), "results": _results_json(results)}, case_id=case_id)
            failed = failures(results)
            if not failed:
                case = replace(case, followup=followup)
                case = self._notice_decision(tx, case, who, now)
        if failed:
            raise ChecksFailed(case_id, "FOLLOWUP", failed)
        return case

    def notice_sent(self, who: Principal, case_id: str, method: str) -> CaseRecord:
        return self._simple(who, case_id, Event.NOTICE_SENT, data={"method": method})

    # -- timers ----------------------------------------------------------------------------------

    def sweep(self) -> int:
        """Apply what time has made due: expiry, follow-up deadlines, gag ends. Returns how many."""
        now = self.clock.now()
        reminder = timedelta(hours=self.config.followup_reminder_hours)
        done = 0
        watched = [*PRE_EXECUTION, State.EMERGENCY_PROVISIONAL, State.FOLLOWUP_DUE, State.NOTICE_DEFERRED]
        with self.store.transaction() as tx:
            for case in tx.cases_in_states([s.value for s in watched]):
                event = self._due_event(case, now, reminder)
                if event is not None:
                    self._transition(tx, case, event, SYSTEM, now, data={"timer": True},
                                     **({"outcome": "expired"} if event is Event.EXPIRE else {}))
                    done += 1
        return done

    @staticmethod
    def _due_event(case: CaseRecord, now: datetime, reminder: timedelta) -> Event | None:
        i = case.scope.instrument
        if case.state in PRE_EXECUTION:
            # Only instruments that were valid when received expire here; a stale one replayed at
            # intake is refused by the checks (INSTRUMENT_EXPIRED) instead.
            if i and i.valid_to and case.received_at < i.valid_to <= now:
                return Event.EXPIRE
            return None
        if case.state is State.NOTICE_DEFERRED:
            gag = case.scope.gag_until
            return Event.GAG_ENDED if gag is None or gag <= now.date() else None
        due = case.followup_due
        if due is None:
            return None
        if now >= due:
            return Event.FOLLOWUP_DEADLINE_PASSED
        if case.state is State.EMERGENCY_PROVISIONAL and now >= due - reminder:
            return Event.FOLLOWUP_DEADLINE_NEAR
        return None

    # -- audit, statistics, sessions -------------------------------------------------------------

    def audit_entries(self, who: Principal, case_id: str | None, after: int, limit: int) -> list[AuditEntry]:
        with self.store.transaction() as tx:
            if case_id is not None:
                tx.get_case(case_id)
            entries = tx.audit_entries(case_id, after, limit)
            tx.audit(self.clock.now(), who.subject, _role(who), "audit.read",
                     {"case": case_id, "after": after, "returned": len(entries)})
        return entries

    def verify_audit(self, who: Principal) -> dict[str, Any]:
        with self.store.transaction() as tx:
            check = tx.verify_audit()
            tx.audit(self.clock.now(), who.subject, _role(who), "audit.verified",
                     {"ok": check.ok, "checked": check.checked, "first_bad": check.first_bad})
        return {"ok": check.ok, "checked": check.checked, "first_bad": check.first_bad, "reason": check.reason,
                "head": check.head.hex(), "message": str(check)}

    def transparency(self, year: int) -> dict[str, Any]:
        start = datetime(year, 1, 1, tzinfo=UTC)
        with self.store.read() as tx:
            cases = tx.cases_received_between(start, start.replace(year=year + 1))
        by_agency: Counter[str] = Counter()
        by_type: Counter[str] = Counter()
        by_outcome: Counter[str] = Counter()
        by_reason: Counter[str] = Counter()
        for c in cases:
            i = c.scope.instrument
            by_agency[(i.agency if i and i.agency else c.claimed.agency) or "unknown"] += 1
            by_type[i.type.value if i else "none"] += 1
            by_outcome[c.outcome or "in_progress"] += 1
            by_reason.update(c.reasons)
        overdue = sum(c.state is State.FOLLOWUP_OVERDUE for c in cases)
        return {"year": year, "requests": len(cases), "by_agency": dict(sorted(by_agency.items())),
                "by_instrument_type": dict(sorted(by_type.items())), "by_outcome": dict(sorted(by_outcome.items())),
                "by_reason": dict(sorted(by_reason.items())), "emergency_followups_overdue": overdue}

    def import_sessions(self, who: Principal, parsed: ParseResult, source: str, sha256: str) -> ImportCounts:
        now = self.clock.now()
        with self.store.transaction() as tx:
            counts = tx.import_rows(parsed.rows, now)
            tx.audit(now, who.subject, _role(who), "sessions.imported", {
                "source": source, "sha256": sha256, "kind": parsed.kind.value, "inserted": counts.inserted,
                "updated": counts.updated, "unchanged": counts.unchanged, "rejected": len(parsed.rejected)})
        return counts


def reason_help(code: str) -> str:
    try:
        return REASON_HELP[Reason(code)]
    except ValueError:
        return ""


def case_json(case: CaseRecord) -> dict[str, Any]:
    """A case as the API shows it: state, scope and reason codes -- never results."""
    return {
        "id": case.id, "state": case.state.value, "channel": case.channel.value,
        "agency_request_number": case.agency_request_number, "requester_id": case.requester_id,
        "claimed": {"name": case.claimed.name, "agency": case.claimed.agency,
                    "warrant_card": case.claimed.warrant_card, "phone": case.claimed.phone,
                    "email": case.claimed.email},
        "instrument": instrument_to_json(case.scope.instrument) if case.scope.instrument else None,
        "queries": [query_to_json(q) for q in case.scope.queries],
        "delivery": scope_to_json(case.scope)["delivery"],
        "gag_until": case.scope.gag_until.isoformat() if case.scope.gag_until else None,
        "received_at": iso(case.received_at), "updated_at": iso(case.updated_at),
        "created_by": case.created_by, "scope_digest": case.frozen_digest, "preparer": case.preparer,
        "approver": case.approver, "outcome": case.outcome,
        "reasons": [{"code": r, "help": reason_help(r)} for r in case.reasons],
        "followup_due": iso(case.followup_due) if case.followup_due else None,
        "followup": instrument_to_json(case.followup) if case.followup else None,
        "executed_at": iso(case.executed_at) if case.executed_at else None,
        "delivered_at": iso(case.delivered_at) if case.delivered_at else None,
    }


def package_json(signed: SignedPackage) -> dict[str, Any]:
    return {"package": json.loads(signed.body), "body": signed.body, "sha256": signed.sha256,
            "signature": signed.signature, "key_id": signed.key_id}
