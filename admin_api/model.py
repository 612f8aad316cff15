"""Values of the disclosure workflow: registry records, instruments, queries, callbacks, cases.

Frozen slotted dataclasses; every instant is timezone-aware UTC. The model follows the research
note (shared/research/feeds-and-disclosure.md B.2): a request is an authorisation instrument + one or
more queries + a delivery, and the ISP's own case id is distinct from the agency's request number.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from rpz.hashchain import canonical

from .workflow import State

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class InstrumentType(StrEnum):
    COURT_ORDER = "court_order"
    SEARCH_WARRANT = "search_warrant"
    PRODUCTION_ORDER = "production_order"
    STATUTORY_NOTICE = "statutory_notice"
    EMERGENCY_DECLARATION = "emergency_declaration"


class Channel(StrEnum):
    """How the request reached the ISP. Only the first three authenticate the sender."""

    PORTAL = "portal"            # registered requester account with MFA on the intake portal
    SECURE_MAIL = "secure_mail"  # signed and encrypted mail from a registered requester's key
    IN_PERSON = "in_person"      # served by hand, warrant card inspected
    EMAIL = "email"              # ordinary e-mail: a hijacked police mailbox looks exactly like this
    FAX = "fax"
    PHONE = "phone"


AUTHENTICATED_CHANNELS = frozenset({Channel.PORTAL, Channel.SECURE_MAIL, Channel.IN_PERSON})


class Category(StrEnum):
    """Data categories an instrument can authorise; the package holds exactly these fields."""

    SUBSCRIBER_ACCOUNT = "subscriber_account"  # account id
    SUBSCRIBER_CONTACT = "subscriber_contact"  # name, postal address, phone, e-mail
    SESSION_RECORDS = "session_records"        # session start/end, address, inside address, ports
    BLOCKED_LOOKUPS = "blocked_lookups"        # time, qname, qtype, order_ref of blocked lookups


CATEGORY_FIELDS: dict[Category, tuple[str, ...]] = {
    Category.SUBSCRIBER_ACCOUNT: ("account",),
    Category.SUBSCRIBER_CONTACT: ("name", "postal_address", "phone", "email"),
    Category.SESSION_RECORDS: ("sessions",),
    Category.BLOCKED_LOOKUPS: ("lookups",),
}

# Emergency releases are limited to the minimum needed to reach the person in danger.
EMERGENCY_CATEGORIES = frozenset({Category.SUBSCRIBER_ACCOUNT, Category.SUBSCRIBER_CONTACT})


class QueryKind(StrEnum):
    ADDRESS = "address"                # who used this address (+port) in this window
    BLOCKED_LOOKUP = "blocked_lookup"  # who looked up this blocked order/name in this window


class Transport(StrEnum):
    TCP = "tcp"
    UDP = "udp"


class RequesterStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"  # e.g. a mailbox known to be compromised


class CallPerson(StrEnum):
    REQUESTER = "requester"
    SUPERVISOR = "supervisor"


class CallOutcome(StrEnum):
    CONFIRMED = "confirmed"      # the person confirmed they made (or back) this request
    DENIED = "denied"            # the person says they did not: a forgery
    NO_ANSWER = "no_answer"


@dataclass(frozen=True, slots=True)
class Agency:
    code: str
    name: str
    jurisdiction: str


@dataclass(frozen=True, slots=True)
class Requester:
    """A registered law-enforcement officer; the phone comes from an independent directory."""

    id: int
    agency: str
    name: str
    rank: str
    warrant_card: str
    official_phone: str
    phone_source: str
    supervisor_id: int | None
    status: RequesterStatus = RequesterStatus.ACTIVE


@dataclass(frozen=True, slots=True)
class Instrument:
    type: InstrumentType
    issuer: str                 # issuing court, magistrate or authority
    issuer_jurisdiction: str
    reference: str
    issued_on: date | None
    valid_from: datetime | None  # when it may be executed
    valid_to: datetime | None
    legal_provision: str
    document_sha256: str
    agency: str                 # the agency named on the instrument
    addresses: tuple[IPNetwork, ...] = ()
    order_refs: tuple[str, ...] = ()
    qnames: tuple[str, ...] = ()
    categories: frozenset[Category] = frozenset()
    window_start: datetime | None = None  # the period of data it covers
    window_end: datetime | None = None
    danger_to_life: bool = False          # emergency declarations only
    emergency_grounds: str = ""

    @property
    def key(self) -> str:
        """Identity of the instrument for replay detection: issuer + reference, normalised."""
        return f"{self.issuer_jurisdiction.strip().upper()}|{self.issuer.strip().lower()}|" \
               f"{self.reference.strip().upper()}"


@dataclass(frozen=True, slots=True)
class Query:
    kind: QueryKind
    start: datetime
    end: datetime
    categories: frozenset[Category]
    address: IPAddress | None = None
    port: int | None = None
    transport: Transport | None = None
    order_ref: str | None = None
    qname: str | None = None

    def describe(self) -> str:
        if self.kind is QueryKind.ADDRESS:
            port = f" port {self.port}/{self.transport}" if self.port is not None else ""
            return f"address {self.address}{port}"
        return f"blocked lookups of {self.order_ref or self.qname}"


@dataclass(frozen=True, slots=True)
class Delivery:
    method: str                # e.g. "portal", "secure_mail"
    recipient_id: int | None   # a registered requester


ENCRYPTED_DELIVERY = frozenset({"portal", "secure_mail"})


@dataclass(frozen=True, slots=True)
class Callback:
    person: CallPerson
    requester_id: int          # whom the number belongs to in the registry
    number: str
    number_source: str
    outcome: CallOutcome
    called_by: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ClaimedRequester:
    """Who the request says it is from, as written on it (may be forged)."""

    name: str = ""
    agency: str = ""
    warrant_card: str = ""
    phone: str = ""            # recorded for the file, never dialled
    email: str = ""


@dataclass(frozen=True, slots=True)
class Scope:
    """What is frozen at SCOPED: changing any of it sends the case back to LEGAL_REVIEW."""

    instrument: Instrument | None
    queries: tuple[Query, ...]
    delivery: Delivery | None
    gag_until: date | None = None

    def digest(self) -> str:
        from .codec import scope_to_json
        return hashlib.sha256(canonical(scope_to_json(self))).hexdigest()


@dataclass(frozen=True, slots=True)
class CaseRecord:
    """One disclosure case as stored. ``reasons`` are the reason codes that stopped it (if any)."""

    id: str
    state: State
    channel: Channel
    agency_request_number: str
    requester_id: int | None
    claimed: ClaimedRequester
    scope: Scope
    received_at: datetime
    updated_at: datetime
    created_by: str
    frozen_digest: str | None = None
    preparer: str | None = None
    approver: str | None = None
    reasons: tuple[str, ...] = ()
    outcome: str | None = None
    followup: Instrument | None = None
    followup_due: datetime | None = None
    executed_at: datetime | None = None
    delivered_at: datetime | None = None
    version: int = 0
