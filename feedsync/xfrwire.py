"""Zone-transfer messages read from the wire, and the zone they build, without dnspython objects.

An AXFR of a million-rule RPZ is about two thousand messages and a million records. dnspython turns
every record into Name, Rdata and Rdataset objects and puts each through a zone transaction; that
took minutes here. This module reads the messages itself (RFC 1035 section 4.1): records as
``(owner wire, type, class, ttl, rdata wire)`` with compressed names expanded (only where RFC 3597
section 4 allows compression), and keeps the zone as records per owner (``ZoneRecords``). The TSIG
of each message is still verified by dnspython's ``dns.tsig`` over the raw wire (``xfr._TsigCheck``).

The zone it builds is the zone dnspython's ``dns.xfr.Inbound`` would build from the same messages,
record for record (tests/unit/feedsync/test_xfr_fast.py holds them equal). The rules it follows,
from dnspython 2.x (``dns.message``, ``dns.rdataset``, ``dns.transaction``, ``dns.node``):

    | step                                   | rule                                                     |
    |----------------------------------------|----------------------------------------------------------|
    | records of one message                 | grouped per (owner, type, covered type) in order of first |
    |                                        | appearance, an origin SOA always on its own (RFC 5936)    |
    | a record joins its group               | TTL becomes the lowest seen; an equal rdata is not added; |
    |                                        | a singleton type (CNAME, SOA, DNAME, NSEC, NXT) keeps     |
    |                                        | only the last record                                      |
    | a group joins the zone                 | union with the owner's set of that type (lowest TTL, no   |
    |                                        | duplicates), which moves to the end of the owner's sets;  |
    |                                        | a new CNAME set drops the owner's other data, new other   |
    |                                        | data drops its CNAME (RRSIG, NSEC, NSEC3, KEY are neutral) |
    | the first record                       | must be the zone's SOA; it is not added                   |
    | the origin SOA again                   | equal to the first: the end, and it replaces the apex SOA |
    |                                        | (RFC 5936 section 2.2); different: "unexpected origin SOA" |
    | records after the end                  | "answers after final SOA"                                 |

Equal rdata means dnspython's equality: bytes equal, names inside CNAME, NS, PTR, DNAME, MX and
the like compared without case. Errors are ``dns.exception.FormError`` with dnspython's wording
where dnspython has one, so ``xfr.refused_from`` maps them to the same refusal codes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import dns.exception

HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")
_HH = struct.Struct("!HH")

T_NS, T_CNAME, T_SOA, T_MX, T_OPT, T_RRSIG, T_TSIG, T_DNAME = 2, 5, 6, 15, 41, 46, 250, 39
C_IN = 1
MAX_NAME = 255
# RDATA layouts that hold compressible names (RFC 3597 section 4): type -> (octets before, names)
_NAME_RDATA = {T_NS: (0, 1), T_CNAME: (0, 1), 12: (0, 1), T_DNAME: (0, 1), T_MX: (2, 1), T_SOA: (0, 2),
               3: (0, 1), 4: (0, 1), 7: (0, 1), 8: (0, 1), 9: (0, 1), 14: (0, 2)}
# types whose whole RDATA is one name (compared without case), and those with a 16-bit prefix
_NAME_ONLY = frozenset({T_NS, T_CNAME, 12, T_DNAME, 3, 4, 7, 8, 9})
_PREF_NAME = frozenset({T_MX, 18, 21, 36})    # MX, AFSDB, RT, KX
SINGLETONS = frozenset({T_SOA, 30, T_DNAME, 47, T_CNAME})   # dns.rdatatype.is_singleton
_NEUTRAL = frozenset({47, 50, 25})           # NSEC, NSEC3, KEY (dns.node.NodeKind.NEUTRAL)

RR = tuple[int, int, bytes]          # (type, ttl, rdata wire): one record of an owner


def form_error(text: str) -> dns.exception.FormError:
    return dns.exception.FormError(text)  # type: ignore[no-untyped-call]


# --- names -------------------------------------------------------------------------------------

def read_name(data: bytes, pos: int, cache: dict[int, bytes]) -> tuple[bytes, int]:
    """A possibly compressed name at ``pos``: (uncompressed wire, position after it). Pointers must
    point backwards (no loops). ``cache`` maps message offsets to the names found there, so the
    suffixes a message shares are expanded once."""
    parts: list[bytes] = []
    starts: list[int] = []
    end = -1
    suffix = b"\x00"
    try:
        while True:
            ln = data[pos]
            if ln == 0:
                if end < 0:
                    end = pos + 1
                break
            if ln >= 0xC0:
                target = ((ln & 0x3F) << 8) | data[pos + 1]
                if target >= pos:
                    raise form_error("compression pointer does not point backwards")
                if end < 0:
                    end = pos + 2
                hit = cache.get(target)
                if hit is not None:
                    suffix = hit
                    break
                pos = target
                continue
            if ln > 63:
                raise form_error(f"label type 0x{ln & 0xC0:02x} is not supported")
            if end < 0:
                starts.append(pos)
            parts.append(data[pos:pos + 1 + ln])
            pos += ln + 1
    except IndexError:
        raise form_error("a name runs past the end of the message") from None
    name = b"".join(parts) + suffix if parts else suffix
    if len(name) > MAX_NAME:
        raise form_error("a name longer than 255 octets")
    if starts:
        tail = name
        for p, part in zip(starts, parts, strict=False):
            cache[p] = tail
            tail = tail[len(part):]
    return name, end


def _expand(data: bytes, start: int, end: int, layout: tuple[int, int], cache: dict[int, bytes]) -> bytes:
    prefix, count = layout
    out = [data[start:start + prefix]]
    pos = start + prefix
    for _ in range(count):
        name, pos = read_name(data, pos, cache)
        out.append(name)
    if pos > end:
        raise form_error("names run past the record data")
    out.append(data[pos:end])
    return b"".join(out)


# --- messages ----------------------------------------------------------------------------------

@dataclass(slots=True)
class Message:
    """One transfer message: what the transfer logic and the TSIG check need."""

    rcode: int
    question: tuple[bytes, int, int] | None        # (name, type, class) when present
    answer: list[tuple[bytes, int, int, int, bytes]]   # (owner, type, class, ttl, rdata) in wire order
    tsig: tuple[bytes, int, int, int] | None         # (owner, record start, rdata start, rdata end)


def read_message(data: bytes) -> Message:
    """Parse a transfer message. FormError when it is malformed, or when a TSIG is not its last record."""
    if len(data) < 12:
        raise form_error("message shorter than a DNS header")
    _id, flags, qd, an, ns, ar = HEADER.unpack_from(data)
    cache: dict[int, bytes] = {}
    pos = 12
    question = None
    n = len(data)
    for _ in range(qd):
        qname, pos = read_name(data, pos, cache)
        if pos + 4 > n:
            raise form_error("question truncated")
        qt, qc = _HH.unpack_from(data, pos)
        pos += 4
        if question is None:
            question = (qname, qt, qc)
    answer: list[tuple[bytes, int, int, int, bytes]] = []
    append = answer.append
    unpack = _RR_FIXED.unpack_from
    layouts = _NAME_RDATA
    for _ in range(an):
        owner, pos = read_name(data, pos, cache)
        if pos + 10 > n:
            raise form_error("record header truncated")
        t, c, ttl, rdlen = unpack(data, pos)
        start = pos + 10
        pos = start + rdlen
        if pos > n:
            raise form_error("record data truncated")
        layout = layouts.get(t)
        append((owner, t, c, ttl, data[start:pos] if layout is None else _expand(data, start, pos, layout, cache)))
    for _ in range(ns):
        _owner, pos = read_name(data, pos, cache)
        if pos + 10 > n:
            raise form_error("record header truncated")
        pos += 10 + _RR_FIXED.unpack_from(data, pos)[3]
    tsig = None
    rcode = flags & 0xF
    for i in range(ar):
        rstart = pos
        owner, pos = read_name(data, pos, cache)
        if pos + 10 > n:
            raise form_error("record header truncated")
        t, _c, ttl, rdlen = unpack(data, pos)
        start = pos + 10
        pos = start + rdlen
        if t == T_TSIG:
            if i != ar - 1:
                raise form_error("the TSIG record is not the last record")
            tsig = (owner, rstart, start, pos)
        elif t == T_OPT:
            rcode |= ((ttl >> 24) & 0xFF) << 4
    if pos > n:
        raise form_error("record data truncated")
    if pos != n:
        raise form_error(f"{n - pos} octets after the last record")
    return Message(rcode, question, answer, tsig)


# --- the zone, per owner -----------------------------------------------------------------------

def covers(t: int, rdata: bytes) -> int:
    return int.from_bytes(rdata[:2], "big") if t == T_RRSIG and len(rdata) >= 2 else 0


def rdata_key(t: int, rdata: bytes) -> bytes:
    """What dnspython's rdata equality compares, for the types a policy zone uses."""
    if t in _NAME_ONLY:
        return rdata.lower()
    if t in _PREF_NAME:
        return rdata[:2] + rdata[2:].lower()
    return rdata


def _kind(t: int, cov: int) -> int:
    """dns.node.NodeKind: 0 regular, 1 neutral, 2 CNAME."""
    if t == T_CNAME or (t == T_RRSIG and cov == T_CNAME):
        return 2
    if t in _NEUTRAL or (t == T_RRSIG and cov in _NEUTRAL):
        return 1
    return 0


@dataclass(slots=True)
class _Set:
    t: int
    cov: int
    ttl: int
    rds: list[bytes]

    def add(self, ttl: int, rd: bytes, singleton_rule: bool) -> None:
        self.ttl = min(self.ttl, ttl)
        if singleton_rule and self.t in SINGLETONS:
            self.rds = [rd]
            return
        k = rdata_key(self.t, rd)
        if all(rdata_key(self.t, x) != k for x in self.rds):
            self.rds.append(rd)


def _sets(rrs: tuple[RR, ...]) -> list[_Set]:
    out: list[_Set] = []
    for t, ttl, rd in rrs:
        c = covers(t, rd)
        if out and out[-1].t == t and out[-1].cov == c:
            out[-1].rds.append(rd)
        else:
            out.append(_Set(t, c, ttl, [rd]))
    return out


def merge(rrs: tuple[RR, ...], t: int, cov: int, ttl: int, rds: list[bytes]) -> tuple[RR, ...]:
    """An owner's records after one group joins them (``txn.add``): union with the set of that type,
    which moves to the end; a new set drops the data of the other node kind."""
    sets = _sets(rrs)
    old = next((s for s in sets if s.t == t and s.cov == cov), None)
    if old is not None:
        sets.remove(old)
        for rd in rds:
            old.add(ttl, rd, True)
        new = old
    else:
        new = _Set(t, cov, ttl, list(rds))
    kind = _kind(t, cov)
    if kind == 2:
        sets = [s for s in sets if _kind(s.t, s.cov) != 0]
    elif kind == 0:
        sets = [s for s in sets if _kind(s.t, s.cov) != 2]
    sets.append(new)
    return tuple((s.t, s.ttl, rd) for s in sets for rd in s.rds)


@dataclass(slots=True)
class ZoneRecords:
    """A zone as records per owner: ``owners[lower-case owner wire] = (owner wire as first seen,
    records grouped per set in the zone's order)``; the apex is one of the owners."""

    origin: bytes                                   # lower-case wire
    owners: dict[bytes, tuple[bytes, tuple[RR, ...]]] = field(default_factory=dict)
    rels: dict[bytes, str] = field(default_factory=dict)   # owners' text relative to the zone, when known

    def add_group(self, owner: bytes, t: int, cov: int, ttl: int, rds: list[bytes]) -> None:
        key = owner.lower()
        cur = self.owners.get(key)
        if cur is None:
            self.owners[key] = (owner, tuple((t, ttl, rd) for rd in rds))
        else:
            self.owners[key] = (cur[0], merge(cur[1], t, cov, ttl, rds))

    def replace(self, owner: bytes, t: int, ttl: int, rds: list[bytes]) -> None:
        """``txn.replace``: the set of that type replaced (it moves to the end)."""
        key = owner.lower()
        cur = self.owners.get(key)
        rest = tuple(r for r in cur[1] if r[0] != t) if cur is not None else ()
        if cur is None:
            self.owners[key] = (owner, tuple((t, ttl, rd) for rd in rds))
        else:
            self.owners[key] = (cur[0], merge(rest, t, 0, ttl, rds))

    def apex(self) -> tuple[RR, ...]:
        cur = self.owners.get(self.origin)
        return cur[1] if cur is not None else ()

    def soa(self) -> bytes | None:
        return next((rd for t, _ttl, rd in self.apex() if t == T_SOA), None)

    def serial(self) -> int:
        soa = self.soa()
        if soa is None:
            raise form_error("the zone has no SOA")
        return soa_serial(soa)


def soa_fields(rdata: bytes) -> tuple[bytes, bytes, bytes]:
    """(mname, rname, the 20 octets of numbers) of an uncompressed SOA RDATA."""
    pos = 0
    names = []
    for _ in range(2):
        start = pos
        while rdata[pos]:
            pos += rdata[pos] + 1
        pos += 1
        names.append(rdata[start:pos])
    return names[0], names[1], rdata[pos:pos + 20]


def soa_serial(rdata: bytes) -> int:
    return int.from_bytes(soa_fields(rdata)[2][:4], "big")


def soa_key(rdata: bytes) -> bytes:
    m, r, nums = soa_fields(rdata)
    return m.lower() + r.lower() + nums


def is_subdomain(name: bytes, origin: bytes) -> bool:
    """``name`` (lower-case wire) at or below ``origin`` (lower-case wire), on label boundaries."""
    if not name.endswith(origin):
        return False
    cut = len(name) - len(origin)
    pos = 0
    while pos < cut:
        pos += name[pos] + 1
    return pos == cut


class AxfrBuilder:
    """RFC 5936 over read messages: the SOA first and last, everything in between into a ZoneRecords.
    ``feed(message)`` returns True after the final SOA (then the message must carry a TSIG, which the
    caller's TSIG check has verified)."""

    def __init__(self, origin: bytes, qtype: int = 252) -> None:
        self.zone = ZoneRecords(origin.lower())
        self.qtype = qtype
        self.first_soa: tuple[int, bytes] | None = None   # (ttl, rdata)
        self.done = False

    def feed(self, msg: Message, skip: int = 0) -> bool:
        if msg.rcode != 0:
            import dns.xfr
            raise dns.xfr.TransferError(msg.rcode)  # type: ignore[no-untyped-call]
        origin = self.zone.origin
        if msg.question is not None:
            qn, qt, _qc = msg.question
            if qn.lower() != origin:
                raise form_error("wrong question name")
            if qt != self.qtype:
                raise form_error("wrong question rdatatype")
        answer = msg.answer
        i = skip
        if self.first_soa is None:
            if not answer or answer[0][0].lower() != origin:
                raise form_error("No answer or RRset not for zone origin")
            if answer[0][1] != T_SOA:
                raise form_error("first RRset is not an SOA")
            self.first_soa = (answer[0][3], answer[0][4])
            i = 1
        # group the records of this message as dnspython's message reader does
        groups: dict[tuple[bytes, int, int], list[object]] = {}
        order: list[list[object]] = []
        first_key = soa_key(self.first_soa[1])
        for k in range(i, len(answer)):
            owner, t, c, ttl, rd = answer[k]
            if self.done:
                raise form_error("answers after final SOA")
            if c != C_IN:
                raise form_error(f"a record of class {c} in a class IN zone")
            low = owner.lower()
            if t == T_SOA:
                if low != origin:
                    raise form_error("an SOA record not at the zone's origin")
                self._flush(order)
                groups.clear()
                order = []
                if soa_key(rd) != first_key:
                    raise form_error("unexpected origin SOA in AXFR")
                self.zone.replace(owner, T_SOA, ttl, [rd])
                self.done = True
                continue
            if not is_subdomain(low, origin):
                raise form_error(f"a record outside the zone ({low!r})")
            cov = covers(t, rd)
            key = (low, t, cov)
            g = groups.get(key)
            if g is None:
                g = groups[key] = [owner, t, cov, _Set(t, cov, ttl, [rd])]
                order.append(g)
            else:
                s = g[3]
                assert isinstance(s, _Set)
                s.add(ttl, rd, True)
        self._flush(order)
        return self.done

    def _flush(self, order: Iterable[list[object]]) -> None:
        add = self.zone.add_group
        for owner, t, cov, s in order:
            assert isinstance(s, _Set) and isinstance(owner, bytes) and isinstance(t, int) and isinstance(cov, int)
            add(owner, t, cov, s.ttl, s.rds)


def iter_records(zone: ZoneRecords) -> Iterator[tuple[bytes, int, int, bytes]]:
    """Every record as (owner wire, type, ttl, rdata), apex first."""
    for _key, (owner, rrs) in zone.owners.items():
        for t, ttl, rd in rrs:
            yield owner, t, ttl, rd
