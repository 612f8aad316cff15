"""Request bodies of the admin API (pydantic) and their conversion to the workflow's values.

Validation here is about shape (types, lengths, addresses that parse, times with a zone); whether
a request may go ahead is the checks' business, so an incomplete instrument is accepted and
recorded, then refused by ``INSTRUMENT_INCOMPLETE`` with the missing fields named.
"""

from __future__ import annotations

import ipaddress
from datetime import date
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from .checks import Reason
from .codec import normalise_qname
from .model import (
    Agency,
    CallOutcome,
    CallPerson,
    Category,
    Channel,
    ClaimedRequester,
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
from .sessions import SessionKind

Short = Annotated[str, Field(max_length=200)]
Code = Annotated[str, Field(min_length=2, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]
Jurisdiction = Annotated[str, Field(min_length=2, max_length=8, pattern=r"^[A-Za-z]{2}(-[A-Za-z0-9]{1,3})?$")]
Note = Annotated[str, Field(max_length=2000)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgencyIn(_In):
    code: Code
    name: Annotated[str, Field(min_length=1, max_length=200)]
    jurisdiction: Jurisdiction

    def to_model(self) -> Agency:
        return Agency(self.code.upper(), self.name, self.jurisdiction.upper())


class RequesterIn(_In):
    agency: Code
    name: Annotated[str, Field(min_length=1, max_length=200)]
    rank: Short = ""
    warrant_card: Annotated[str, Field(min_length=1, max_length=64)]
    official_phone: Annotated[str, Field(min_length=3, max_length=40, pattern=r"^\+?[0-9 ()-]+$")]
    phone_source: Annotated[str, Field(min_length=1, max_length=200,
                                       description="the independent directory the number was taken from")]
    supervisor_id: Annotated[int, Field(ge=1, le=2**62)] | None = None

    def to_model(self) -> Requester:
        return Requester(0, self.agency.upper(), self.name, self.rank, self.warrant_card, self.official_phone,
                         self.phone_source, self.supervisor_id)


class RequesterStatusIn(_In):
    status: RequesterStatus
    note: Note = ""


class InstrumentIn(_In):
    type: InstrumentType
    issuer: Short = ""
    issuer_jurisdiction: Annotated[str, Field(max_length=8)] = ""
    reference: Short = ""
    issued_on: date | None = None
    valid_from: AwareDatetime | None = None
    valid_to: AwareDatetime | None = None
    legal_provision: Short = ""
    document_sha256: Annotated[str, Field(max_length=64)] = ""
    agency: Annotated[str, Field(max_length=32)] = ""
    addresses: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=64)] = []
    order_refs: Annotated[list[Annotated[str, Field(min_length=1, max_length=100)]], Field(max_length=64)] = []
    qnames: Annotated[list[Annotated[str, Field(min_length=1, max_length=255)]], Field(max_length=64)] = []
    categories: Annotated[list[Category], Field(max_length=8)] = []
    window_start: AwareDatetime | None = None
    window_end: AwareDatetime | None = None
    danger_to_life: bool = False
    emergency_grounds: Note = ""

    @field_validator("addresses")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        out = []
        for a in value:
            try:
                out.append(str(ipaddress.ip_network(a.strip(), strict=False)))
            except ValueError:
                raise ValueError(f"{a!r} is not an IP address or prefix") from None
        return out

    def to_model(self) -> Instrument:
        return Instrument(
            type=self.type, issuer=self.issuer.strip(), issuer_jurisdiction=self.issuer_jurisdiction.strip(),
            reference=self.reference.strip(), issued_on=self.issued_on, valid_from=self.valid_from,
            valid_to=self.valid_to, legal_provision=self.legal_provision.strip(),
            document_sha256=self.document_sha256.strip().lower(), agency=self.agency.strip().upper(),
            addresses=tuple(ipaddress.ip_network(a) for a in self.addresses),
            order_refs=tuple(r.strip() for r in self.order_refs),
            qnames=tuple(normalise_qname(q) for q in self.qnames), categories=frozenset(self.categories),
            window_start=self.window_start, window_end=self.window_end, danger_to_life=self.danger_to_life,
            emergency_grounds=self.emergency_grounds)


class QueryIn(_In):
    kind: QueryKind
    start: AwareDatetime
    end: AwareDatetime
    categories: Annotated[list[Category], Field(min_length=1, max_length=8)]
    address: Annotated[str, Field(max_length=64)] | None = None
    port: Annotated[int, Field(ge=0, le=65535)] | None = None
    transport: Transport | None = None
    order_ref: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    qname: Annotated[str, Field(min_length=1, max_length=255)] | None = None

    @model_validator(mode="after")
    def _shape(self) -> QueryIn:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if self.kind is QueryKind.ADDRESS:
            if self.address is None:
                raise ValueError("an address query needs address")
            try:
                self.address = str(ipaddress.ip_address(self.address.strip()))
            except ValueError:
                raise ValueError(f"{self.address!r} is not an IP address") from None
            if self.order_ref is not None or self.qname is not None:
                raise ValueError("an address query has no order_ref or qname")
        else:
            if self.order_ref is None and self.qname is None:
                raise ValueError("a blocked_lookup query needs order_ref or qname")
            if self.address is not None or self.port is not None:
                raise ValueError("a blocked_lookup query has no address or port")
        return self

    def to_model(self) -> Query:
        return Query(kind=self.kind, start=self.start, end=self.end, categories=frozenset(self.categories),
                     address=ipaddress.ip_address(self.address) if self.address else None, port=self.port,
                     transport=self.transport, order_ref=self.order_ref.strip() if self.order_ref else None,
                     qname=normalise_qname(self.qname) if self.qname else None)


class DeliveryIn(_In):
    method: Annotated[str, Field(min_length=1, max_length=32)]
    recipient_id: Annotated[int, Field(ge=1, le=2**62)] | None = None

    def to_model(self) -> Delivery:
        return Delivery(self.method.strip().lower(), self.recipient_id)


class ClaimedIn(_In):
    name: Short = ""
    agency: Annotated[str, Field(max_length=32)] = ""
    warrant_card: Annotated[str, Field(max_length=64)] = ""
    phone: Annotated[str, Field(max_length=40)] = ""
    email: Short = ""

    def to_model(self) -> ClaimedRequester:
        return ClaimedRequester(self.name, self.agency.upper(), self.warrant_card, self.phone, self.email)


class ScopeIn(_In):
    instrument: InstrumentIn | None = None
    queries: Annotated[list[QueryIn], Field(min_length=1, max_length=50)]
    delivery: DeliveryIn | None = None
    gag_until: date | None = Field(None, description="end date of a non-disclosure (gag) order, if any")

    def to_scope(self) -> Scope:
        return Scope(self.instrument.to_model() if self.instrument else None,
                     tuple(q.to_model() for q in self.queries),
                     self.delivery.to_model() if self.delivery else None, self.gag_until)


class CaseIn(ScopeIn):
    channel: Channel
    agency_request_number: Annotated[str, Field(max_length=100)] = ""
    requester_id: Annotated[int, Field(ge=1, le=2**62)] | None = Field(
        None, description="the registered requester the request comes from; null if not in the registry")
    claimed: ClaimedIn = ClaimedIn()


class AmendIn(ScopeIn):
    note: Note = ""


class CallbackIn(_In):
    person: CallPerson
    outcome: CallOutcome
    note: Note = ""


class RejectIn(_In):
    reasons: Annotated[list[Reason], Field(max_length=20)] = []
    note: Note = ""


class NoteIn(_In):
    note: Note = ""


class DeliverIn(_In):
    receipt: Annotated[str, Field(max_length=200)] = ""


class NoticeIn(_In):
    method: Annotated[str, Field(min_length=1, max_length=64)]


class HoldIn(_In):
    until: AwareDatetime = Field(description="when the hold ends (the preservation request's end)")
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class FollowupIn(_In):
    instrument: InstrumentIn


class SessionsIn(_In):
    kind: SessionKind
    records: Annotated[list[dict[str, Any]], Field(max_length=10000)]
