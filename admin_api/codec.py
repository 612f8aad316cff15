"""The JSON form of the case values (what the store keeps and what the scope digest covers).

One owner: every module that turns a ``Scope``/``Instrument``/``Query`` into JSON or back goes
through here, so the digest frozen at SCOPED and the stored case can never disagree.
"""

from __future__ import annotations

import ipaddress
from datetime import date, datetime
from typing import Any

from .clock import iso, parse_instant
from .model import (
    Category,
    Delivery,
    Instrument,
    InstrumentType,
    Query,
    QueryKind,
    Scope,
    Transport,
)


def _t(value: datetime | None) -> str | None:
    return iso(value) if value is not None else None


def _pt(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    return parse_instant(str(value))


def _d(value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def instrument_to_json(i: Instrument) -> dict[str, Any]:
    return {
        "type": i.type.value, "issuer": i.issuer, "issuer_jurisdiction": i.issuer_jurisdiction,
        "reference": i.reference, "issued_on": i.issued_on.isoformat() if i.issued_on else None,
        "valid_from": _t(i.valid_from), "valid_to": _t(i.valid_to),
        "legal_provision": i.legal_provision, "document_sha256": i.document_sha256, "agency": i.agency,
        "addresses": [str(n) for n in i.addresses], "order_refs": list(i.order_refs),
        "qnames": list(i.qnames), "categories": sorted(c.value for c in i.categories),
        "window_start": _t(i.window_start), "window_end": _t(i.window_end),
        "danger_to_life": i.danger_to_life, "emergency_grounds": i.emergency_grounds,
    }


def instrument_from_json(d: dict[str, Any]) -> Instrument:
    return Instrument(
        type=InstrumentType(d["type"]), issuer=d.get("issuer") or "",
        issuer_jurisdiction=d.get("issuer_jurisdiction") or "", reference=d.get("reference") or "",
        issued_on=_d(d.get("issued_on")), valid_from=_pt(d.get("valid_from")), valid_to=_pt(d.get("valid_to")),
        legal_provision=d.get("legal_provision") or "", document_sha256=d.get("document_sha256") or "",
        agency=d.get("agency") or "",
        addresses=tuple(ipaddress.ip_network(a, strict=False) for a in d.get("addresses") or ()),
        order_refs=tuple(d.get("order_refs") or ()),
        qnames=tuple(normalise_qname(q) for q in d.get("qnames") or ()),
        categories=frozenset(Category(c) for c in d.get("categories") or ()),
        window_start=_pt(d.get("window_start")), window_end=_pt(d.get("window_end")),
        danger_to_life=bool(d.get("danger_to_life", False)), emergency_grounds=d.get("emergency_grounds") or "",
    )


def query_to_json(q: Query) -> dict[str, Any]:
    return {
        "kind": q.kind.value, "start": iso(q.start), "end": iso(q.end),
        "categories": sorted(c.value for c in q.categories),
        "address": str(q.address) if q.address is not None else None, "port": q.port,
        "transport": q.transport.value if q.transport else None,
        "order_ref": q.order_ref, "qname": q.qname,
    }


def query_from_json(d: dict[str, Any]) -> Query:
    start, end = _pt(d["start"]), _pt(d["end"])
    assert start is not None and end is not None
    return Query(
        kind=QueryKind(d["kind"]), start=start, end=end,
        categories=frozenset(Category(c) for c in d.get("categories") or ()),
        address=ipaddress.ip_address(d["address"]) if d.get("address") else None,
        port=d.get("port"), transport=Transport(d["transport"]) if d.get("transport") else None,
        order_ref=d.get("order_ref") or None,
        qname=normalise_qname(d["qname"]) if d.get("qname") else None,
    )


def delivery_to_json(dv: Delivery) -> dict[str, Any]:
    return {"method": dv.method, "recipient_id": dv.recipient_id}


def delivery_from_json(d: dict[str, Any]) -> Delivery:
    return Delivery(method=d.get("method") or "", recipient_id=d.get("recipient_id"))


def scope_to_json(s: Scope) -> dict[str, Any]:
    return {
        "instrument": instrument_to_json(s.instrument) if s.instrument else None,
        "queries": [query_to_json(q) for q in s.queries],
        "delivery": delivery_to_json(s.delivery) if s.delivery else None,
        "gag_until": s.gag_until.isoformat() if s.gag_until else None,
    }


def scope_from_json(d: dict[str, Any]) -> Scope:
    return Scope(
        instrument=instrument_from_json(d["instrument"]) if d.get("instrument") else None,
        queries=tuple(query_from_json(q) for q in d.get("queries") or ()),
        delivery=delivery_from_json(d["delivery"]) if d.get("delivery") else None,
        gag_until=_d(d.get("gag_until")),
    )


def normalise_qname(name: str) -> str:
    """Lower case, no trailing dot: how qnames are compared everywhere in the workflow."""
    return name.strip().rstrip(".").lower()
