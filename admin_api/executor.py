"""Running an approved case's queries and assembling the package body.

Only ``DisclosureService.execute`` calls this, inside the transaction that moves the case from
APPROVED to EXECUTED. Each query yields an ``Executed``: what was run (as executed, with its window
in UTC and the retention cutoff), how many rows each source returned, and the outcome:

    RELEASED   exactly one subscriber matched: the authorised fields of that subscriber
    NO_DATA    nothing inside the retention period matched (nothing is kept longer for a request)
    AMBIGUOUS  more than one subscriber matched: nothing is released for this query

For a shared (CGNAT) address the port-block log maps (public ip, port, protocol, time) to inside
addresses first; RFC 6302 is why the port is required.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .blocklog import BlocklogOpener, BlocklogSource, hit_in_query
from .checks import Reason
from .clock import from_ms, iso
from .codec import query_to_json
from .errors import Conflict
from .model import CATEGORY_FIELDS, CaseRecord, Category, Query, QueryKind
from .store import Retention, SessionHit, Tx

RELEASED = "RELEASED"


@dataclass(frozen=True, slots=True)
class Executed:
    index: int
    as_executed: dict[str, Any]
    rows: dict[str, int]
    outcome: str                      # RELEASED | NO_DATA | AMBIGUOUS
    results: tuple[dict[str, Any], ...] = ()
    opened_addresses: int = 0         # sealed blocked-lookup addresses opened for this query
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Sources:
    tx: Tx
    retention: timedelta              # the session retention period
    is_shared: Any                    # Callable[[Tx, IPAddress], bool]
    blocklog: BlocklogSource | None
    opener: BlocklogOpener | None


def authorised_fields(categories: frozenset[Category]) -> list[str]:
    return sorted(f for c in categories for f in CATEGORY_FIELDS[c])


def _subscriber_fields(src: Sources, account: str, categories: frozenset[Category]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if Category.SUBSCRIBER_ACCOUNT in categories:
        out["account"] = account
    if Category.SUBSCRIBER_CONTACT in categories:
        sub = src.tx.subscriber(account)
        out.update({"name": sub.name if sub else None, "postal_address": sub.postal_address if sub else None,
                    "phone": sub.phone if sub else None, "email": sub.email if sub else None})
    return out


def _session_json(s: SessionHit) -> dict[str, Any]:
    return {"source": s.source, "address": s.address, "start": iso(s.start) if s.start else None,
            "end": iso(s.end) if s.end else None}


def _kept(src: Sources, case: CaseRecord, now: datetime) -> Retention:
    return Retention(now - src.retention, src.retention, now, case.id)


def run_address(src: Sources, case: CaseRecord, n: int, q: Query, now: datetime) -> Executed:
    assert q.address is not None
    kept = _kept(src, case, now)
    cutoff = kept.cutoff
    as_executed = {**query_to_json(q), "retention_cutoff": iso(cutoff)}
    rows: dict[str, int] = {}
    sessions: list[SessionHit] = []
    mapping: list[dict[str, Any]] = []
    if src.is_shared(src.tx, q.address):
        assert q.port is not None and q.transport is not None  # guarded by INSUFFICIENT_IDENTIFIER
        blocks = src.tx.port_blocks_for(str(q.address), q.port, q.transport.value, start=q.start, end=q.end,
                                        retention=kept)
        rows["port_blocks"] = len(blocks)
        for b in blocks:
            lo, hi = max(q.start, b.start), min(q.end, b.end) if b.end else q.end
            found = src.tx.sessions_for(b.inside, lo, hi, kept)
            sessions.extend(found)
            mapping.append({"public_ip": b.public_ip, "ports": f"{b.port_lo}-{b.port_hi}", "inside": b.inside,
                            "start": iso(b.start), "end": iso(b.end) if b.end else None})
    else:
        sessions = src.tx.sessions_for(str(q.address), q.start, q.end, kept)
    rows["sessions"] = len(sessions)
    accounts = sorted({s.account for s in sessions})
    if not accounts:
        return Executed(n, as_executed, rows, Reason.NO_DATA.value)
    if len(accounts) > 1:
        return Executed(n, as_executed, rows, Reason.AMBIGUOUS.value,
                        notes=(f"{len(accounts)} subscribers matched; nothing released",))
    result = _subscriber_fields(src, accounts[0], q.categories)
    if Category.SESSION_RECORDS in q.categories:
        result["sessions"] = [_session_json(s) for s in sessions]
        if mapping:
            result["port_blocks"] = mapping
    return Executed(n, as_executed, rows, RELEASED, (result,))


def run_blocked_lookup(src: Sources, case: CaseRecord, n: int, q: Query, now: datetime) -> Executed:
    if src.blocklog is None:
        raise Conflict("the blocked-lookup log is not available on this node; the case stays APPROVED")
    kept = _kept(src, case, now)
    as_executed = {**query_to_json(q), "retention_cutoff": iso(kept.cutoff)}
    returned = list(src.blocklog.sealed_hits(order_ref=q.order_ref, qname=q.qname, start=q.start, end=q.end))
    hits = [h for h in returned if hit_in_query(h, q)]  # never trust the source's filter alone
    rows = {"blocklog_returned": len(returned), "blocklog_in_scope": len(hits)}
    if not hits:
        return Executed(n, as_executed, rows, Reason.NO_DATA.value)
    wants_subscriber = bool(q.categories & {Category.SUBSCRIBER_ACCOUNT, Category.SUBSCRIBER_CONTACT})
    if wants_subscriber and src.opener is None:
        raise Conflict("compliance_private_key is not configured; sealed addresses cannot be opened")
    results, opened, session_rows = [], 0, 0
    for h in hits:
        item: dict[str, Any] = {}
        if Category.BLOCKED_LOOKUPS in q.categories:
            item.update({"time": iso(from_ms(h.time_ms)), "qname": h.qname, "qtype": h.qtype,
                         "order_ref": h.order_ref})
        if wants_subscriber:
            assert src.opener is not None
            client = src.opener.open_for(case, q, h)
            opened += 1
            t = from_ms(h.time_ms)
            found = src.tx.sessions_for(client.ip, t, t, kept)
            session_rows += len(found)
            accounts = sorted({s.account for s in found})
            if len(accounts) == 1:
                item["subscriber"] = _subscriber_fields(src, accounts[0], q.categories)
            else:
                item["subscriber"] = Reason.AMBIGUOUS.value if accounts else Reason.NO_DATA.value
        results.append(item)
    rows["sessions"] = session_rows
    return Executed(n, as_executed, rows, RELEASED, tuple(results), opened)


def run_queries(src: Sources, case: CaseRecord, now: datetime) -> list[Executed]:
    out = []
    for n, q in enumerate(case.scope.queries):
        if q.kind is QueryKind.ADDRESS:
            out.append(run_address(src, case, n, q, now))
        else:
            out.append(run_blocked_lookup(src, case, n, q, now))
    return out


def case_outcome(executed: Sequence[Executed]) -> str:
    released = sum(e.outcome == RELEASED for e in executed)
    if released == len(executed):
        return "released"
    return "partial" if released else "nothing_released"


def package_body(case: CaseRecord, executed: Sequence[Executed], now: datetime, isp_name: str,
                 retention_days: int) -> dict[str, Any]:
    from .package import FORMAT
    i = case.scope.instrument
    assert i is not None
    return {
        "format": FORMAT,
        "isp": isp_name,
        "isp_case_id": case.id,
        "agency": i.agency,
        "agency_request_number": case.agency_request_number,
        "instrument": {"type": i.type.value, "issuer": i.issuer, "reference": i.reference,
                       "legal_provision": i.legal_provision, "document_sha256": i.document_sha256},
        "executed_at": iso(now),
        "queries": [{"index": e.index, "as_executed": e.as_executed,
                     "authorised_fields": authorised_fields(case.scope.queries[e.index].categories),
                     "outcome": e.outcome, "results": list(e.results)} for e in executed],
        "retention_note": f"Subscriber session records are kept {retention_days} days and then deleted; "
                          "nothing was kept longer for this request. Times are UTC.",
    }
