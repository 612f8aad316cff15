"""Policy triggers: what an RPZ owner name means (draft-vixie-dnsop-dns-rpz-00 section 4).

The owner name of a policy RRset, relativized to the zone apex, encodes the trigger:

    <name>                          QNAME trigger (section 4.2), ``*.<name>`` a wildcard one
    <ip>.rpz-client-ip              Client IP Address (4.1)
    <ip>.rpz-ip                     Response IP Address (4.3)
    <name>.rpz-nsdname              NSDNAME (4.4), ``*.<name>.rpz-nsdname`` a wildcard one
    <ip>.rpz-nsip                   NSIP (4.5)

``<ip>`` is ``prefix.B4.B3.B2.B1`` (IPv4) or ``prefix.W8...W1`` with one optional ``zz`` for the
longest run of zero hextets (IPv6), section 4.1.1. Leading zeros are refused, as are bits set
after the prefix.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import IntEnum

from . import names
from .errors import RecordError


class TriggerKind(IntEnum):
    """Trigger types, valued in the order of section 5.4 (lower value = higher precedence)."""

    CLIENT_IP = 0
    QNAME = 1
    IP = 2
    NSDNAME = 3
    NSIP = 4

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    TriggerKind.CLIENT_IP: "CLIENT-IP",
    TriggerKind.QNAME: "QNAME",
    TriggerKind.IP: "IP",
    TriggerKind.NSDNAME: "NSDNAME",
    TriggerKind.NSIP: "NSIP",
}

_SUFFIX = {
    b"rpz-client-ip": TriggerKind.CLIENT_IP,
    b"rpz-ip": TriggerKind.IP,
    b"rpz-nsdname": TriggerKind.NSDNAME,
    b"rpz-nsip": TriggerKind.NSIP,
}
SUFFIX_OF = {v: k for k, v in _SUFFIX.items()}


@dataclass(frozen=True, slots=True, order=True)
class Prefix:
    """An address block of an IP trigger. ``value`` is the network address in its own family."""

    v6: bool
    length: int
    value: int

    @property
    def internal_length(self) -> int:
        """Section 5.6: IPv6 prefix length, or the IPv4 one plus 96."""
        return self.length if self.v6 else self.length + 96

    @property
    def value128(self) -> int:
        """Section 5.7: the address as a 128-bit number, IPv4 zero-filled."""
        return self.value

    def contains(self, v6: bool, addr: int) -> bool:
        if v6 != self.v6:
            return False
        bits = 128 if v6 else 32
        return (addr >> (bits - self.length)) == (self.value >> (bits - self.length))

    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        if self.v6:
            return ipaddress.IPv6Network((self.value, self.length))
        return ipaddress.IPv4Network((self.value, self.length))

    def __str__(self) -> str:
        return str(self.network())

    def owner_labels(self) -> str:
        """The trigger encoding of this block (without the rpz-* suffix)."""
        if not self.v6:
            octets = self.value.to_bytes(4, "big")
            return f"{self.length}." + ".".join(str(o) for o in reversed(octets))
        groups = [(self.value >> (16 * (7 - i))) & 0xFFFF for i in range(8)]
        rev = list(reversed(groups))
        # the longest run of zeros; among equal runs the last one in reversed order (section 4.1.1)
        best_start, best_len, i = -1, 0, 0
        while i < 8:
            if rev[i] == 0:
                j = i
                while j < 8 and rev[j] == 0:
                    j += 1
                if j - i >= best_len and j - i >= 2:
                    best_start, best_len = i, j - i
                i = j
            else:
                i += 1
        parts = [f"{g:x}" for g in rev]
        if best_start >= 0:
            parts = [*parts[:best_start], "zz", *parts[best_start + best_len :]]
        return f"{self.length}." + ".".join(parts)


@dataclass(frozen=True, slots=True)
class Trigger:
    """A decoded trigger. For name triggers ``name`` is canonical wire; for a wildcard it is the
    name the ``*`` stands under (``*.bad.test`` -> ``bad.test``)."""

    kind: TriggerKind
    name: bytes = b""
    wildcard: bool = False
    prefix: Prefix | None = None

    def owner_text(self, origin: bytes) -> str:
        """The policy zone owner name of this trigger, for logs and reports."""
        if self.kind in (TriggerKind.QNAME, TriggerKind.NSDNAME):
            rel = self.name
            if self.kind is TriggerKind.NSDNAME:
                rel = rel[:-1] + b"\x0brpz-nsdname\x00"
            if self.wildcard:
                rel = b"\x01*" + rel
            full = names.concat(rel, origin)
            return names.to_text(full if full is not None else rel)
        assert self.prefix is not None
        return f"{self.prefix.owner_labels()}.{SUFFIX_OF[self.kind].decode()}.{names.to_text(origin)}"


def parse_owner(rel: bytes) -> Trigger:
    """Decode a relativized, lower-cased owner name into a trigger; RecordError when unusable."""
    labs = names.labels(rel)
    if not labs:
        raise RecordError("a policy record at the zone apex is not a trigger (only SOA and NS belong there)")
    kind = _SUFFIX.get(labs[-1])
    if kind is None:
        if labs[-1] == b"rpz-order":
            raise RecordError("an rpz-order name carries the order reference of a rule, it is not a trigger: "
                              "fold it into the rule's owner before deciding (rpz.actions.companion_base)")
        if labs[-1].startswith(b"rpz-"):
            raise RecordError(f"unknown trigger type '{labs[-1].decode(errors='replace')}' "
                              "(known: rpz-client-ip, rpz-ip, rpz-nsdname, rpz-nsip)")
        return _name_trigger(TriggerKind.QNAME, rel, labs)
    if kind is TriggerKind.NSDNAME:
        inner = rel[: len(rel) - len(labs[-1]) - 2] + names.ROOT
        if inner == names.ROOT:
            raise RecordError("rpz-nsdname trigger without a name server name")
        return _name_trigger(kind, inner, labs[:-1])
    return Trigger(kind, prefix=parse_prefix(labs[:-1]))


def _name_trigger(kind: TriggerKind, rel: bytes, labs: list[bytes]) -> Trigger:
    if b"*" in labs[1:]:
        raise RecordError("a '*' label is only allowed as the leftmost label of a trigger")
    if labs[0] == b"*":
        return Trigger(kind, name=rel[2:], wildcard=True)
    return Trigger(kind, name=rel)


def _decimal(label: bytes, what: str, lo: int, hi: int) -> int:
    if not label.isdigit():
        raise RecordError(f"{what} '{label.decode(errors='replace')}' is not a decimal number")
    if len(label) > 1 and label.startswith(b"0"):
        raise RecordError(f"{what} '{label.decode()}' has a leading zero (section 4.1.1 forbids it)")
    val = int(label)
    if not lo <= val <= hi:
        raise RecordError(f"{what} {val} out of range {lo}-{hi}")
    return val


def parse_prefix(labs: list[bytes]) -> Prefix:
    """``[prefix, B4, B3, B2, B1]`` or ``[prefix, W8 ... W1]`` (section 4.1.1) -> Prefix."""
    if len(labs) < 2:
        raise RecordError("IP trigger without an address (expected prefix.address-labels)")
    addr_labels = labs[1:]
    all_decimal = all(lab.isdigit() for lab in addr_labels)
    is_v4 = len(addr_labels) == 4 and all_decimal
    if all_decimal and len(addr_labels) < 4:
        raise RecordError(f"IPv4 trigger has {len(addr_labels)} octets; all 4 must be present (section 4.1.1)")
    if is_v4:
        length = _decimal(labs[0], "IPv4 prefix length", 1, 32)
        octets = [_decimal(lab, "IPv4 octet", 0, 255) for lab in reversed(addr_labels)]
        value = int.from_bytes(bytes(octets), "big")
        bits = 32
    else:
        length = _decimal(labs[0], "IPv6 prefix length", 1, 128)
        value = _ipv6_value(addr_labels)
        bits = 128
    if value & ((1 << (bits - length)) - 1):
        raise RecordError(f"address has bits set after the /{length} prefix (section 4.1.1)")
    return Prefix(v6=not is_v4, length=length, value=value)


def _ipv6_value(addr_labels: list[bytes]) -> int:
    groups_rev: list[int | None] = []
    for lab in addr_labels:
        if lab == b"zz":
            if None in groups_rev:
                raise RecordError("more than one 'zz' in an IPv6 trigger")
            groups_rev.append(None)
            continue
        if not 1 <= len(lab) <= 4 or any(c not in b"0123456789abcdef" for c in lab):
            raise RecordError(f"'{lab.decode(errors='replace')}' is not an IPv6 hextet (1-4 hex digits)")
        if len(lab) > 1 and lab.startswith(b"0"):
            raise RecordError(f"hextet '{lab.decode()}' has a leading zero (section 4.1.1 forbids it)")
        groups_rev.append(int(lab, 16))
    if None in groups_rev:
        fill = 9 - len(groups_rev)
        if fill < 1:
            raise RecordError("'zz' used with all 8 hextets present")
        i = groups_rev.index(None)
        groups_rev = [*groups_rev[:i], *([0] * fill), *groups_rev[i + 1 :]]
    if len(groups_rev) != 8:
        raise RecordError(f"IPv6 trigger has {len(groups_rev)} hextets (8, or fewer with 'zz')")
    value = 0
    for g in reversed(groups_rev):
        value = (value << 16) | (g or 0)
    return value


def address_value(addr: str | bytes) -> tuple[bool, int]:
    """(is_v6, integer) of an address given as text or as 4/16 packed octets."""
    if isinstance(addr, bytes):
        return len(addr) == 16, int.from_bytes(addr, "big")
    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return False, int(ip.ipv4_mapped)
    return ip.version == 6, int(ip)
