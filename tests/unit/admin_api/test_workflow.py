import pytest

from admin_api.errors import IllegalTransition
from admin_api.workflow import (
    AMENDABLE,
    FROZEN,
    PRE_EXECUTION,
    TERMINAL,
    TRANSITIONS,
    Event,
    State,
    allowed_events,
    amendment_event,
    next_state,
)


def reachable(start: State) -> set[State]:
    seen, todo = {start}, [start]
    while todo:
        s = todo.pop()
        for (frm, _), to in TRANSITIONS.items():
            if frm is s and to not in seen:
                seen.add(to)
                todo.append(to)
    return seen


def test_every_state_is_reachable_from_received():
    assert reachable(State.RECEIVED) == set(State)


def test_terminal_states_have_no_way_out():
    for s in TERMINAL:
        assert allowed_events(s) == ()


def test_every_non_terminal_state_can_still_end():
    for s in set(State) - TERMINAL:
        assert reachable(s) & TERMINAL, s


def test_the_main_path_of_the_issue():
    path = [Event.START_VERIFICATION, Event.VERIFIED, Event.FREEZE_SCOPE, Event.SUBMIT, Event.APPROVE,
            Event.EXECUTE, Event.DELIVER, Event.SCHEDULE_NOTICE, Event.NOTICE_SENT]
    s = State.RECEIVED
    seen = [s]
    for e in path:
        s = next_state(s, e)
        seen.append(s)
    assert seen == [State.RECEIVED, State.VERIFYING, State.LEGAL_REVIEW, State.SCOPED, State.PENDING_APPROVAL,
                    State.APPROVED, State.EXECUTED, State.DELIVERED, State.NOTICE_PENDING, State.CLOSED]


def test_emergency_side_path():
    s = next_state(State.DELIVERED, Event.AWAIT_FOLLOWUP)
    assert s is State.EMERGENCY_PROVISIONAL
    s = next_state(s, Event.FOLLOWUP_DEADLINE_NEAR)
    assert s is State.FOLLOWUP_DUE
    assert next_state(s, Event.FOLLOWUP_DEADLINE_PASSED) is State.FOLLOWUP_OVERDUE
    assert next_state(State.FOLLOWUP_OVERDUE, Event.DEFER_NOTICE) is State.NOTICE_DEFERRED


def test_illegal_transition_is_typed_and_names_state_and_event():
    with pytest.raises(IllegalTransition) as ei:
        next_state(State.PENDING_APPROVAL, Event.EXECUTE, "HE-2026-000007")
    assert ei.value.state == "PENDING_APPROVAL" and ei.value.event == "EXECUTE"
    assert "HE-2026-000007" in str(ei.value) and "EXECUTE" in str(ei.value) and "PENDING_APPROVAL" in str(ei.value)


def test_only_approved_cases_execute():
    assert {s for (s, e) in TRANSITIONS if e is Event.EXECUTE} == {State.APPROVED}


def test_nothing_after_execution_can_be_withdrawn_expired_or_rescoped():
    for e in (Event.WITHDRAW, Event.EXPIRE, Event.CHANGE_SCOPE, Event.AMEND):
        assert {s for (s, ev) in TRANSITIONS if ev is e} <= set(PRE_EXECUTION)


def test_changing_a_frozen_scope_goes_back_to_legal_review():
    for s in FROZEN:
        assert amendment_event(s) is Event.CHANGE_SCOPE
        assert next_state(s, Event.CHANGE_SCOPE) is State.LEGAL_REVIEW
    assert amendment_event(State.NEEDS_INFO) is Event.INFO_RECEIVED
    assert next_state(State.NEEDS_INFO, Event.INFO_RECEIVED) is State.VERIFYING
    for s in AMENDABLE - FROZEN - {State.NEEDS_INFO}:
        assert next_state(s, amendment_event(s)) is s
