"""Did an order take effect? Expected answer (from the policy the node loads) vs the answer the node's
resolver actually gives, and a verdict. Pure: decisions and observed answers in, a verdict out.

What the policy promises, per action (draft-vixie-dnsop-dns-rpz-00 section 3, as resolver/synth.py
builds it; "EDE" = the zone's Extended DNS Error, RFC 8914, sent only to clients with EDNS):

| action         | rcode    | answer                                   | EDE  | other                |
|----------------|----------|------------------------------------------|------|----------------------|
| nxdomain       | NXDOMAIN | empty                                    | zone | -                    |
| nodata         | NOERROR  | empty                                    | zone | -                    |
| local-data     | NOERROR  | the rule's records of the type asked     | zone | -                    |
|  (a CNAME)     | (target) | first record: that CNAME (then followed) | zone | -                    |
| cname-wildcard | (target) | first record: CNAME to the garden name   | zone | -                    |
| tcp-only       | NOERROR  | empty                                    | -    | TC=1 over UDP        |
| drop           | -        | no response at all                       | -    | -                    |
| passthru       | (truth)  | not rewritten                            | none | -                    |

Verdicts, in the order they are decided:

| verdict        | when                                                                               |
|----------------|------------------------------------------------------------------------------------|
| NOT_ACTIVE     | the node's policy has no rule for the order's target (nothing to enforce)          |
| ENFORCED       | the answer is what the policy promises (for drop: no answer)                        |
| NO_ANSWER      | an answer was expected and none came within the timeout                             |
| NOT_SERVING    | the resolver answered REFUSED or SERVFAIL (not ready, or this client not allowed)   |
| NOT_ENFORCED   | the resolver answered, differently from what the policy promises                    |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


class Verdict(StrEnum):
    NOT_ACTIVE = "NOT_ACTIVE"
    ENFORCED = "ENFORCED"
    NO_ANSWER = "NO_ANSWER"
    NOT_SERVING = "NOT_SERVING"
    NOT_ENFORCED = "NOT_ENFORCED"


@dataclass(frozen=True, slots=True)
class Expected:
    action: str | None               # rpz action label; None: no rule applies (the truth is expected)
    rcode: str | None = None         # None: whatever the truth is
    ede: int | None = None
    ede_text: str | None = None
    answer: tuple[str, ...] | None = None   # exact answer records (text); None: not checked
    first_cname: str | None = None   # the answer must start with a CNAME to this name (walled garden)
    truncated: bool = False
    no_response: bool = False
    order_ref: str | None = None     # the order of the rule that decides (another order may win)


@dataclass(frozen=True, slots=True)
class Observed:
    answered: bool
    rcode: str | None = None
    ede: tuple[tuple[int, str], ...] = ()
    answer: tuple[str, ...] = ()
    truncated: bool = False
    error: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    differences: tuple[str, ...] = field(default=())


def expected_for(action: str | None, *, ede: int | None = None, ede_text: str = "",
                 records: tuple[str, ...] = (), cname_target: str | None = None,
                 order_ref: str | None = None) -> Expected:
    """What the policy promises for one decision (the table above)."""
    if action is None or action == "passthru":
        return Expected(action, order_ref=order_ref)
    if action == "drop":
        return Expected(action, no_response=True, order_ref=order_ref)
    if action == "tcp-only":
        return Expected(action, rcode="NOERROR", answer=(), truncated=True, order_ref=order_ref)
    text = ede_text if ede is not None else None
    if action == "nxdomain":
        return Expected(action, "NXDOMAIN", ede, text, answer=(), order_ref=order_ref)
    if action == "nodata":
        return Expected(action, "NOERROR", ede, text, answer=(), order_ref=order_ref)
    if action == "cname-wildcard":
        return Expected(action, None, ede, text, first_cname=cname_target, order_ref=order_ref)
    cname = next((r.split()[-1] for r in records if r.split()[1:2] == ["CNAME"]), None)
    if cname is not None:    # local data that is a CNAME: the resolver follows it upstream
        return Expected(action, None, ede, text, first_cname=cname, order_ref=order_ref)
    return Expected(action, "NOERROR", ede, text, answer=tuple(sorted(records)), order_ref=order_ref)


def judge(rule_exists: bool, exp: Expected, obs: Observed) -> Outcome:
    """The verdict table above."""
    if not rule_exists:
        return Outcome(Verdict.NOT_ACTIVE, ("the node's policy has no rule for this order's target",))
    if exp.no_response:
        if not obs.answered:
            return Outcome(Verdict.ENFORCED)
        return Outcome(Verdict.NOT_ENFORCED, (f"expected no response (drop), got {obs.rcode}",))
    if not obs.answered:
        return Outcome(Verdict.NO_ANSWER, (obs.error or "no response within the timeout",))
    if obs.rcode in ("REFUSED", "SERVFAIL") and exp.rcode != obs.rcode:
        return Outcome(Verdict.NOT_SERVING, (f"the resolver answered {obs.rcode}",))
    diffs = _differences(exp, obs)
    return Outcome(Verdict.NOT_ENFORCED if diffs else Verdict.ENFORCED, tuple(diffs))


def _differences(exp: Expected, obs: Observed) -> list[str]:
    out = []
    if exp.rcode is not None and obs.rcode != exp.rcode:
        out.append(f"rcode: expected {exp.rcode}, got {obs.rcode}")
    codes = [c for c, _ in obs.ede]
    if exp.action in (None, "passthru"):
        if codes:
            out.append(f"EDE: expected none (not rewritten), got {codes}")
    elif exp.ede is not None:
        if exp.ede not in codes:
            out.append(f"EDE: expected {exp.ede}, got {codes or 'none'}")
        elif exp.ede_text is not None and (exp.ede, exp.ede_text) not in obs.ede:
            got = [t for c, t in obs.ede if c == exp.ede]
            out.append(f"EDE text: expected {exp.ede_text!r}, got {got}")
    if exp.answer is not None and tuple(sorted(obs.answer)) != exp.answer:
        out.append(f"answer: expected {list(exp.answer) or 'empty'}, got {list(obs.answer) or 'empty'}")
    if exp.first_cname is not None:
        first = obs.answer[0].split() if obs.answer else []
        if len(first) < 2 or first[-2] != "CNAME" or first[-1].lower() != exp.first_cname.lower():
            out.append(f"answer: expected a CNAME to {exp.first_cname} first, got {list(obs.answer) or 'empty'}")
    if exp.truncated and not obs.truncated:
        out.append("expected TC=1 (tcp-only) over UDP")
    return out
