"""The disclosure case lifecycle, as a table (issue 6, "Lifecycle as a table").

    RECEIVED -> VERIFYING -> LEGAL_REVIEW -> (NEEDS_INFO | REJECTED) -> SCOPED -> PENDING_APPROVAL
    -> APPROVED -> EXECUTED -> DELIVERED -> NOTICE_PENDING | NOTICE_DEFERRED -> CLOSED;
    side paths EMERGENCY_PROVISIONAL -> FOLLOWUP_DUE -> FOLLOWUP_OVERDUE, WITHDRAWN, EXPIRED.

Research note C.2: "SCOPED (queries frozen)"; issue 6: "Scope is frozen at SCOPED; any change sends
the case back to LEGAL_REVIEW". Pure: no I/O, no clock. The checks that guard some of these events
live in ``checks.py``; which checks guard which event is ``GATES`` there.
"""

from __future__ import annotations

from enum import StrEnum

from .errors import IllegalTransition


class State(StrEnum):
    RECEIVED = "RECEIVED"
    VERIFYING = "VERIFYING"
    LEGAL_REVIEW = "LEGAL_REVIEW"
    NEEDS_INFO = "NEEDS_INFO"
    REJECTED = "REJECTED"
    SCOPED = "SCOPED"
    PENDING_APPROVAL = "PENDING_APPROVAL"
    APPROVED = "APPROVED"
    EXECUTED = "EXECUTED"
    DELIVERED = "DELIVERED"
    NOTICE_PENDING = "NOTICE_PENDING"
    NOTICE_DEFERRED = "NOTICE_DEFERRED"
    CLOSED = "CLOSED"
    EMERGENCY_PROVISIONAL = "EMERGENCY_PROVISIONAL"
    FOLLOWUP_DUE = "FOLLOWUP_DUE"
    FOLLOWUP_OVERDUE = "FOLLOWUP_OVERDUE"
    WITHDRAWN = "WITHDRAWN"
    EXPIRED = "EXPIRED"


class Event(StrEnum):
    START_VERIFICATION = "START_VERIFICATION"  # officer begins identity/instrument verification
    VERIFIED = "VERIFIED"                      # identity gate passed: on to legal review
    REQUEST_INFO = "REQUEST_INFO"              # the requester must supply something
    INFO_RECEIVED = "INFO_RECEIVED"            # the case was amended; verify again
    AMEND = "AMEND"                            # case data changed before the scope is frozen
    FREEZE_SCOPE = "FREEZE_SCOPE"              # all checks passed; scope frozen (digest kept)
    CHANGE_SCOPE = "CHANGE_SCOPE"              # frozen scope changed: back to legal review
    SUBMIT = "SUBMIT"                          # the preparer asks for approval
    APPROVE = "APPROVE"                        # a second person (approver role) approves
    REJECT = "REJECT"                          # refused, with reason codes
    EXECUTE = "EXECUTE"                        # queries run, package sealed and signed
    DELIVER = "DELIVER"                        # package handed to the verified requester
    AWAIT_FOLLOWUP = "AWAIT_FOLLOWUP"          # emergency release: follow-up instrument is due
    FOLLOWUP_DEADLINE_NEAR = "FOLLOWUP_DEADLINE_NEAR"
    FOLLOWUP_DEADLINE_PASSED = "FOLLOWUP_DEADLINE_PASSED"
    SCHEDULE_NOTICE = "SCHEDULE_NOTICE"        # no gag order: customer notice is scheduled
    DEFER_NOTICE = "DEFER_NOTICE"              # gag order with an end date: notice deferred
    GAG_ENDED = "GAG_ENDED"
    NOTICE_SENT = "NOTICE_SENT"
    WITHDRAW = "WITHDRAW"                      # the agency withdrew the request
    EXPIRE = "EXPIRE"                          # the instrument expired before execution


S, E = State, Event

# Cases that have not released anything yet: the only ones that can be withdrawn or expire.
PRE_EXECUTION = (S.RECEIVED, S.VERIFYING, S.LEGAL_REVIEW, S.NEEDS_INFO, S.SCOPED,
                 S.PENDING_APPROVAL, S.APPROVED)
# After delivery of an emergency release, until the follow-up instrument is on file.
AWAITING_FOLLOWUP = (S.EMERGENCY_PROVISIONAL, S.FOLLOWUP_DUE, S.FOLLOWUP_OVERDUE)

# (state, event) -> next state. Anything missing is an IllegalTransition.
TRANSITIONS: dict[tuple[State, Event], State] = {
    (S.RECEIVED, E.START_VERIFICATION): S.VERIFYING,
    (S.RECEIVED, E.AMEND): S.RECEIVED,
    (S.RECEIVED, E.REJECT): S.REJECTED,
    (S.VERIFYING, E.VERIFIED): S.LEGAL_REVIEW,
    (S.VERIFYING, E.AMEND): S.VERIFYING,
    (S.VERIFYING, E.REQUEST_INFO): S.NEEDS_INFO,
    (S.VERIFYING, E.REJECT): S.REJECTED,
    (S.LEGAL_REVIEW, E.AMEND): S.LEGAL_REVIEW,
    (S.LEGAL_REVIEW, E.REQUEST_INFO): S.NEEDS_INFO,
    (S.LEGAL_REVIEW, E.REJECT): S.REJECTED,
    (S.LEGAL_REVIEW, E.FREEZE_SCOPE): S.SCOPED,
    (S.NEEDS_INFO, E.INFO_RECEIVED): S.VERIFYING,
    (S.NEEDS_INFO, E.REJECT): S.REJECTED,
    (S.SCOPED, E.CHANGE_SCOPE): S.LEGAL_REVIEW,
    (S.SCOPED, E.SUBMIT): S.PENDING_APPROVAL,
    (S.SCOPED, E.REJECT): S.REJECTED,
    (S.PENDING_APPROVAL, E.CHANGE_SCOPE): S.LEGAL_REVIEW,
    (S.PENDING_APPROVAL, E.APPROVE): S.APPROVED,
    (S.PENDING_APPROVAL, E.REJECT): S.REJECTED,
    (S.APPROVED, E.CHANGE_SCOPE): S.LEGAL_REVIEW,
    (S.APPROVED, E.EXECUTE): S.EXECUTED,
    (S.APPROVED, E.REJECT): S.REJECTED,
    (S.EXECUTED, E.DELIVER): S.DELIVERED,
    (S.DELIVERED, E.AWAIT_FOLLOWUP): S.EMERGENCY_PROVISIONAL,
    (S.DELIVERED, E.SCHEDULE_NOTICE): S.NOTICE_PENDING,
    (S.DELIVERED, E.DEFER_NOTICE): S.NOTICE_DEFERRED,
    (S.EMERGENCY_PROVISIONAL, E.FOLLOWUP_DEADLINE_NEAR): S.FOLLOWUP_DUE,
    (S.EMERGENCY_PROVISIONAL, E.FOLLOWUP_DEADLINE_PASSED): S.FOLLOWUP_OVERDUE,
    (S.FOLLOWUP_DUE, E.FOLLOWUP_DEADLINE_PASSED): S.FOLLOWUP_OVERDUE,
    **{(s, E.SCHEDULE_NOTICE): S.NOTICE_PENDING for s in AWAITING_FOLLOWUP},
    **{(s, E.DEFER_NOTICE): S.NOTICE_DEFERRED for s in AWAITING_FOLLOWUP},
    (S.NOTICE_DEFERRED, E.GAG_ENDED): S.NOTICE_PENDING,
    (S.NOTICE_PENDING, E.NOTICE_SENT): S.CLOSED,
    **{(s, E.WITHDRAW): S.WITHDRAWN for s in PRE_EXECUTION},
    **{(s, E.EXPIRE): S.EXPIRED for s in PRE_EXECUTION},
}

TERMINAL = frozenset({S.CLOSED, S.REJECTED, S.WITHDRAWN, S.EXPIRED})

# States whose scope is frozen: an amendment there is CHANGE_SCOPE (back to LEGAL_REVIEW).
FROZEN = frozenset({S.SCOPED, S.PENDING_APPROVAL, S.APPROVED})
# States where the case may still be amended at all.
AMENDABLE = frozenset({S.RECEIVED, S.VERIFYING, S.LEGAL_REVIEW, S.NEEDS_INFO}) | FROZEN

# Results may only be produced (queries executed, sealed addresses opened) on this transition.
RELEASING_EVENT = E.EXECUTE
RELEASE_REQUIRES = S.APPROVED


def next_state(state: State, event: Event, case_id: str = "") -> State:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(state.value, event.value, case_id) from None


def allowed_events(state: State) -> tuple[Event, ...]:
    return tuple(e for (s, e) in TRANSITIONS if s is state)


def amendment_event(state: State) -> Event:
    """What changing the case data means in this state (INFO_RECEIVED, AMEND or CHANGE_SCOPE)."""
    if state is S.NEEDS_INFO:
        return E.INFO_RECEIVED
    if state in FROZEN:
        return E.CHANGE_SCOPE
    return E.AMEND
