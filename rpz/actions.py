"""Policy actions: what an RPZ rule's RRsets mean (draft-vixie-dnsop-dns-rpz-00 section 3).

    CNAME .                 NXDOMAIN (3.1)
    CNAME *.                NODATA (3.2)
    CNAME rpz-passthru.     PASSTHRU (3.3); also the legacy CNAME to the trigger's own name
    CNAME rpz-drop.         DROP (3.4)
    CNAME rpz-tcp-only.     TCP-Only (3.5)
    CNAME *.garden.         Local Data with the QNAME prepended to the target (3.6)
    anything else           Local Data (3.6): all RRsets at the owner; a CNAME must stand alone

SOA, NS, DNAME and DNSSEC types never encode an action (3.6) and are refused. A TXT record whose
first string starts with ``order=`` is not local data but the rule's order reference (the legal
order that put the rule there); it feeds the blocked-lookup log and the EDE extra text.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from . import names
from .errors import RecordError

T_A, T_NS, T_CNAME, T_SOA, T_TXT, T_AAAA, T_DNAME, T_ANY = 1, 2, 5, 6, 16, 28, 39, 255
# DS, SIG, KEY, NXT, RRSIG, NSEC, DNSKEY, NSEC3, NSEC3PARAM, CDS, CDNSKEY, TSIG, ZONEMD, ANY, AXFR, IXFR
FORBIDDEN_TYPES = frozenset({T_SOA, T_NS, T_DNAME, 43, 24, 25, 30, 46, 47, 48, 50, 51, 59, 60, 250, 63,
                             T_ANY, 252, 251})
ORDER_PREFIX = b"order="


class ActionKind(IntEnum):
    """Actions in the words of section 3; DISABLED is only ever a result (section 6.1 override)."""

    NXDOMAIN = 1
    NODATA = 2
    PASSTHRU = 3
    DROP = 4
    TCP_ONLY = 5
    LOCAL_DATA = 6
    CNAME_WILDCARD = 7
    DISABLED = 8

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


@dataclass(frozen=True, slots=True, order=True)
class RR:
    """One resource record of local data: type, TTL and uncompressed wire RDATA."""

    rdtype: int
    ttl: int
    rdata: bytes


@dataclass(frozen=True, slots=True)
class Action:
    """A rule's action. ``records`` for LOCAL_DATA; ``garden`` (wire) and ``ttl`` for CNAME_WILDCARD."""

    kind: ActionKind
    records: tuple[RR, ...] = ()
    garden: bytes = b""
    ttl: int = 0

    def select(self, qtype: int) -> tuple[RR, ...]:
        """Local data for QTYPE (section 3.6): the RRset of that type, else a CNAME, else nothing
        (NODATA); ANY gets every RRset."""
        if qtype == T_ANY:
            return self.records
        hit = tuple(r for r in self.records if r.rdtype == qtype)
        if hit:
            return hit
        return tuple(r for r in self.records if r.rdtype == T_CNAME)

    def describe(self) -> str:
        if self.kind is ActionKind.CNAME_WILDCARD:
            return f"cname *.{names.to_text(self.garden)}"
        if self.kind is ActionKind.LOCAL_DATA:
            return f"local-data ({len(self.records)} records)"
        return self.kind.label


NXDOMAIN = Action(ActionKind.NXDOMAIN)
NODATA = Action(ActionKind.NODATA)
PASSTHRU = Action(ActionKind.PASSTHRU)
DROP = Action(ActionKind.DROP)
TCP_ONLY = Action(ActionKind.TCP_ONLY)

_SPECIAL_TARGETS = {
    names.ROOT: NXDOMAIN,
    b"\x01*\x00": NODATA,
    b"\x0crpz-passthru\x00": PASSTHRU,
    b"\x08rpz-drop\x00": DROP,
    b"\x0crpz-tcp-only\x00": TCP_ONLY,
}


def cname_action(target: bytes, ttl: int, self_name: bytes | None) -> Action:
    """The action of a lone CNAME with (canonical) ``target``. ``self_name`` is the trigger's own
    policy owner name, for the legacy PASSTHRU encoding."""
    special = _SPECIAL_TARGETS.get(target)
    if special is not None:
        return special
    labs = names.labels(target)
    if labs[-1].startswith(b"rpz-"):
        raise RecordError(f"unknown RPZ action 'CNAME {names.to_text(target)}' (known: rpz-passthru., "
                          "rpz-drop., rpz-tcp-only.)")
    if self_name is not None and target == self_name:
        return PASSTHRU
    if labs[0] == b"*":
        return Action(ActionKind.CNAME_WILDCARD, garden=target[2:], ttl=ttl)
    return Action(ActionKind.LOCAL_DATA, records=(RR(T_CNAME, ttl, target),))


def order_ref_of(rdata: bytes) -> str | None:
    """The order reference carried by a TXT rdata (``"order=TW-2026-0042"``), else None."""
    if not rdata:
        return None
    n = rdata[0]
    first = rdata[1 : 1 + n]
    if first.startswith(ORDER_PREFIX):
        ref = first[len(ORDER_PREFIX) :].decode("utf-8", "replace").strip()
        return ref or None
    return None


ORDER_LABEL = b"rpz-order"
_ORDER_SUFFIX = b"\x09rpz-order"


def companion_base(owner: bytes, apex: bytes) -> bytes | None:
    """The rule owner an order-reference name speaks for, else None.

    A rule's order reference is a ``TXT "order=..."`` at the rule's owner. Zone servers (BIND,
    Knot) refuse a TXT beside a CNAME, and most actions are CNAMEs, so a zone served over a
    transfer carries the reference at a companion name instead, one label ``rpz-order`` below the
    rule's name relative to the apex (docs/contracts.md, "Order references"):

        csam-site.test.hotline.rpz.test.            CNAME .
        csam-site.test.rpz-order.hotline.rpz.test.  TXT "order=TW-2026-0042"

    ``owner`` and ``apex`` are lower-cased wire names. Returns the rule owner's wire name
    (``csam-site.test.hotline.rpz.test.``), or the apex itself for ``rpz-order.<apex>`` (which
    names no rule; the caller refuses it)."""
    la = len(apex)
    if len(owner) < la + len(_ORDER_SUFFIX) or not owner.endswith(apex) or _ORDER_SUFFIX not in owner:
        return None
    cut = len(owner) - la
    i, last = 0, -1
    while i < cut:             # walk the labels: the last one above the apex must be rpz-order
        last = i
        i += 1 + owner[i]
    if i != cut or owner[last : cut] != _ORDER_SUFFIX:
        return None
    return owner[:last] + apex


def classify(rrs: list[RR], self_name: bytes | None) -> tuple[Action, str | None]:
    """Turn all RRs at one owner into (action, order reference). RecordError when unusable."""
    order_ref: str | None = None
    data: list[RR] = []
    for rr in rrs:
        if rr.rdtype in FORBIDDEN_TYPES:
            raise RecordError(f"record type {type_name(rr.rdtype)} cannot express a policy (section 3.6)")
        if rr.rdtype == T_TXT:
            ref = order_ref_of(rr.rdata)
            if ref is not None:
                if order_ref is not None and ref != order_ref:
                    raise RecordError(f"two order references ({order_ref}, {ref}) at one owner")
                order_ref = ref
                continue
        data.append(rr)
    if not data:
        raise RecordError("order reference without a policy record at this owner")
    cnames = [rr for rr in data if rr.rdtype == T_CNAME]
    if cnames:
        if len(data) > 1:
            raise RecordError("CNAME and other data at one owner (section 3.6: a CNAME stands alone)")
        rr = cnames[0]
        return cname_action(rr.rdata.lower(), rr.ttl, self_name), order_ref
    return Action(ActionKind.LOCAL_DATA, records=tuple(sorted(set(data)))), order_ref


_TYPE_NAMES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA",
               33: "SRV", 39: "DNAME", 43: "DS", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 50: "NSEC3",
               51: "NSEC3PARAM", 63: "ZONEMD", 64: "SVCB", 65: "HTTPS", 255: "ANY"}


def type_name(rdtype: int) -> str:
    return _TYPE_NAMES.get(rdtype, f"TYPE{rdtype}")
