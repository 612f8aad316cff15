"""The one module that slices DNS messages (RFC 1035 section 4, RFC 6891 EDNS, RFC 8914 EDE).

Pure functions over bytes: no sockets, no clock. Three jobs:

1. Queries from clients: ``parse_query`` reads the header and the one question by hand (no dnslib or
   dnspython on the per-query path) and the EDNS OPT record if present; anything unusable raises
   ``WireError`` with the rcode to answer (FORMERR, NOTIMP) or None to drop it.
2. Replies from upstreams: ``parse_reply`` checks ID and question, walks every record with
   compression-loop protection, expands names inside well-known RDATA, and ``walk_chain`` follows
   the CNAME/DNAME chain from the QNAME (the stages of RPZ section 5.1) with the A/AAAA addresses
   owned by each name.
3. Responses to clients: synthesized ones from precomputed ``Pieces`` (header and question are the
   only per-query parts), relayed ones from a cached upstream body (new ID, client's question, TTLs
   aged, upstream OPT replaced by ours), error responses, and truncation for UDP.

How the message is answered, by what the client sent (RFC 6891 section 7, RFC 8914 section 2):

| client sent            | our response carries                                                     |
|------------------------|---------------------------------------------------------------------------|
| no OPT                 | no OPT, no EDE; UDP answers larger than 512 octets are truncated (TC=1)  |
| OPT, version 0         | OPT (our UDP size, DO echoed), EDE option when the policy zone sets one   |
| OPT, version > 0       | BADVERS (extended rcode 16) with our OPT, version 0                       |
| two OPT records        | FORMERR (RFC 6891 section 6.1.1: "MUST be treated as FORMERR")            |
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import NamedTuple

from .errors import WireError

HEADER = struct.Struct("!HHHHHH")
_H = struct.Struct("!H")
_HH = struct.Struct("!HH")
_RR_FIXED = struct.Struct("!HHIH")
_TTL = struct.Struct("!I")

QR, AA, TC, RD, RA, AD, CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0020, 0x0010
DO_BIT = 0x8000

T_A, T_NS, T_CNAME, T_SOA, T_PTR, T_MX, T_TXT, T_AAAA = 1, 2, 5, 6, 12, 15, 16, 28
T_SRV, T_DNAME, T_OPT, T_RRSIG, T_IXFR, T_AXFR, T_ANY = 33, 39, 41, 46, 251, 252, 255
C_IN = 1
EDE_OPTION = 15
MAX_NAME = 255
MAX_CHAIN = 16


class Rcode(IntEnum):
    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5
    BADVERS = 16


RCODE_NAMES = {r.value: r.name for r in Rcode}


# -- queries ------------------------------------------------------------------------------------

class Query(NamedTuple):
    """One client query. A NamedTuple (an immutable value that costs one tuple to build)."""

    id: int
    flags: int
    qname: bytes          # wire, case as sent
    qname_lower: bytes    # canonical: ASCII letters lowered
    qtype: int
    qclass: int
    question: bytes       # the question section as sent (qname, qtype, qclass)
    edns: bool
    udp_size: int         # what the client accepts over UDP (512 without EDNS)
    do: bool
    edns_version: int


def parse_query(data: bytes) -> Query:
    """Header, question and OPT of a query. WireError (with the rcode to answer) when unusable."""
    n = len(data)
    if n < 12:
        raise WireError(f"{n} octets, shorter than a DNS header", None)
    qid, flags, qd, an, ns, ar = HEADER.unpack_from(data)
    if flags & QR:
        raise WireError("a response (QR=1) sent to the query port", None)
    opcode = (flags >> 11) & 0xF
    if opcode:
        raise WireError(f"opcode {opcode} is not QUERY", Rcode.NOTIMP)
    if qd != 1:
        raise WireError(f"{qd} questions (exactly one is allowed)", Rcode.FORMERR)
    if an or ns:
        raise WireError("answer or authority records in a query", Rcode.FORMERR)
    i = 12
    while True:
        if i >= n:
            raise WireError("question name runs past the end of the message", Rcode.FORMERR)
        ln = data[i]
        if ln == 0:
            i += 1
            break
        if ln > 63:
            raise WireError("compressed or invalid label in the question name", Rcode.FORMERR)
        i += ln + 1
    if i - 12 > MAX_NAME:
        raise WireError(f"question name of {i - 12} octets (max 255)", Rcode.FORMERR)
    qend = i + 4
    if qend > n:
        raise WireError("question truncated before QTYPE/QCLASS", Rcode.FORMERR)
    qname = data[12:i]
    qtype, qclass = _HH.unpack_from(data, i)
    edns = False
    udp_size = 512
    do = False
    version = 0
    pos = qend
    for _ in range(ar):
        start = pos
        pos, rtype, rclass, ttl = _skip_record(data, pos)
        if rtype == T_OPT:
            if edns:
                raise WireError("two OPT records", Rcode.FORMERR)
            if data[start] != 0:
                raise WireError("OPT record not owned by the root", Rcode.FORMERR)
            edns = True
            udp_size = max(512, rclass)
            version = (ttl >> 16) & 0xFF
            do = bool(ttl & DO_BIT)
    if pos != n:
        raise WireError(f"{n - pos} octets after the last record", Rcode.FORMERR)
    return Query(qid, flags, qname, qname.lower(), qtype, qclass, data[12:qend], edns, udp_size, do, version)


def _skip_record(data: bytes, pos: int) -> tuple[int, int, int, int]:
    """Skip one record (any owner, compression allowed); return (end, type, class, ttl)."""
    pos = _skip_name(data, pos)
    if pos + 10 > len(data):
        raise WireError("record header truncated", Rcode.FORMERR)
    rtype, rclass, ttl, rdlen = _RR_FIXED.unpack_from(data, pos)
    end = pos + 10 + rdlen
    if end > len(data):
        raise WireError("record data truncated", Rcode.FORMERR)
    return end, rtype, rclass, ttl


def _skip_name(data: bytes, pos: int) -> int:
    n = len(data)
    total = 0
    while True:
        if pos >= n:
            raise WireError("name runs past the end of the message", Rcode.FORMERR)
        ln = data[pos]
        if ln == 0:
            return pos + 1
        if ln & 0xC0 == 0xC0:
            if pos + 2 > n:
                raise WireError("compression pointer truncated", Rcode.FORMERR)
            return pos + 2
        if ln > 63:
            raise WireError(f"label type 0x{ln & 0xC0:02x} is not supported", Rcode.FORMERR)
        total += ln + 1
        if total > MAX_NAME:
            raise WireError("name longer than 255 octets", Rcode.FORMERR)
        pos += ln + 1


def read_name(data: bytes, pos: int) -> tuple[bytes, int]:
    """Read a possibly compressed name: (uncompressed wire name, position after it).

    Compression loops cannot hang this: every pointer must point strictly before itself, so the
    walk moves backwards on each jump and ends.
    """
    n = len(data)
    out = bytearray()
    end = -1
    while True:
        if pos >= n:
            raise WireError("name runs past the end of the message", Rcode.FORMERR)
        ln = data[pos]
        if ln == 0:
            out.append(0)
            if end < 0:
                end = pos + 1
            if len(out) > MAX_NAME:
                raise WireError("name longer than 255 octets", Rcode.FORMERR)
            return bytes(out), end
        if ln & 0xC0 == 0xC0:
            if pos + 2 > n:
                raise WireError("compression pointer truncated", Rcode.FORMERR)
            target = ((ln & 0x3F) << 8) | data[pos + 1]
            if target >= pos:
                raise WireError("compression pointer does not point backwards (loop)", Rcode.FORMERR)
            if end < 0:
                end = pos + 2
            pos = target
            continue
        if ln > 63:
            raise WireError(f"label type 0x{ln & 0xC0:02x} is not supported", Rcode.FORMERR)
        if pos + 1 + ln > n:
            raise WireError("label runs past the end of the message", Rcode.FORMERR)
        out += data[pos : pos + 1 + ln]
        if len(out) > MAX_NAME:
            raise WireError("name longer than 255 octets", Rcode.FORMERR)
        pos += ln + 1


# -- EDNS ---------------------------------------------------------------------------------------

def opt_record(udp_size: int, do: bool, ext_rcode: int = 0, options: bytes = b"") -> bytes:
    """An OPT pseudo-record (RFC 6891 section 6.1.2), version 0."""
    ttl = (ext_rcode << 24) | (DO_BIT if do else 0)
    return b"\x00" + _RR_FIXED.pack(T_OPT, udp_size, ttl, len(options)) + options


def ede_option(code: int, text: str = "") -> bytes:
    """The Extended DNS Error option (RFC 8914 section 2): INFO-CODE then UTF-8 EXTRA-TEXT."""
    raw = text.encode("utf-8")[:400]
    return _HH.pack(EDE_OPTION, 2 + len(raw)) + _H.pack(code) + raw


# -- records ------------------------------------------------------------------------------------

POINTER_TO_QNAME = b"\xc0\x0c"   # the question always starts at offset 12


def encode_rr(owner: bytes, rtype: int, ttl: int, rdata: bytes, rclass: int = C_IN) -> bytes:
    """One resource record, owner as given (uncompressed wire, or POINTER_TO_QNAME)."""
    return owner + _RR_FIXED.pack(rtype, rclass, ttl, len(rdata)) + rdata


# -- synthesized responses ----------------------------------------------------------------------

class Pieces(NamedTuple):
    """Everything of a synthesized response except ID, flags echoed from the query and question.

    Built once per (decision, qname, qtype) and reused: ``assemble`` costs one header pack and a
    few concatenations.
    """

    rcode: int
    flags: int            # extra header flags (TC for tcp-only over UDP)
    answer: bytes
    an: int
    authority: bytes
    ns: int
    additional: bytes
    ar: int
    ede: bytes            # the EDE option, or b"" (sent only when the client used EDNS)


def assemble(q: Query, p: Pieces, edns_udp_size: int, limit: int | None) -> bytes:
    """The response to ``q`` from ``p``; truncated (TC=1) when longer than ``limit`` (UDP)."""
    flags = QR | RA | (q.flags & (RD | CD)) | p.flags | p.rcode
    if q.edns:
        opt = opt_record(edns_udp_size, q.do, 0, p.ede)
        out = (HEADER.pack(q.id, flags, 1, p.an, p.ns, p.ar + 1) + q.question + p.answer
               + p.authority + p.additional + opt)
    else:
        out = (HEADER.pack(q.id, flags, 1, p.an, p.ns, p.ar) + q.question + p.answer
               + p.authority + p.additional)
    if limit is not None and len(out) > limit:
        return truncated(q, edns_udp_size, p.rcode)
    return out


def truncated(q: Query, edns_udp_size: int, rcode: int = 0) -> bytes:
    """Header and question only, TC=1 (RFC 2181 section 9): the client retries over TCP."""
    flags = QR | RA | TC | (q.flags & (RD | CD)) | rcode
    if q.edns:
        return HEADER.pack(q.id, flags, 1, 0, 0, 1) + q.question + opt_record(edns_udp_size, q.do)
    return HEADER.pack(q.id, flags, 1, 0, 0, 0) + q.question


def error_response(q: Query, rcode: int, edns_udp_size: int, ra: bool = True, ede: bytes = b"") -> bytes:
    """An error answer to a parsed query (REFUSED, SERVFAIL, NOTIMP, BADVERS)."""
    flags = QR | (RA if ra else 0) | (q.flags & (RD | CD)) | (rcode & 0xF)
    if q.edns:
        opt = opt_record(edns_udp_size, q.do, rcode >> 4, ede)
        return HEADER.pack(q.id, flags, 1, 0, 0, 1) + q.question + opt
    return HEADER.pack(q.id, flags, 1, 0, 0, 0) + q.question


def header_error(data: bytes, rcode: int) -> bytes | None:
    """FORMERR/NOTIMP for a message we could not parse: header only, QDCOUNT 0 (RFC 1035 4.1.1).
    None when there is no header to answer."""
    if len(data) < 12:
        return None
    qid, flags = _HH.unpack_from(data)
    if flags & QR:
        return None
    out_flags = QR | (flags & (0x7800 | RD | CD)) | (rcode & 0xF)
    return HEADER.pack(qid, out_flags, 0, 0, 0, 0)


# -- upstream queries and replies ---------------------------------------------------------------

def upstream_query(qid: int, qname_lower: bytes, qtype: int, qclass: int, *, do: bool, cd: bool,
                   udp_size: int) -> bytes:
    """The query we send upstream: RD=1, CD copied, always EDNS with the client's DO bit."""
    flags = RD | (CD if cd else 0)
    return (HEADER.pack(qid, flags, 1, 0, 0, 1) + qname_lower + _HH.pack(qtype, qclass)
            + opt_record(udp_size, do))


class ReplyRR(NamedTuple):
    owner: bytes      # uncompressed, lowered
    rtype: int
    rclass: int
    ttl: int
    rdata: bytes      # names in well-known RDATA expanded (safe to copy into another message)
    ttl_off: int      # where the TTL field sits in the reply


class Reply(NamedTuple):
    """An upstream reply, checked and walked."""

    id: int
    flags: int
    rcode: int
    body_start: int   # first octet after the question
    body_end: int     # first octet of the OPT record (or the end): what may be relayed
    answer: tuple[ReplyRR, ...]
    authority: tuple[ReplyRR, ...]
    additional: tuple[ReplyRR, ...]   # the records before OPT
    edns: bool


def parse_reply(data: bytes, qid: int, qname_lower: bytes, qtype: int, qclass: int) -> Reply:
    """Check that ``data`` answers our question (same ID, same question) and walk its records.

    WireError(rcode=None) when it is not ours or is malformed: the caller ignores it and keeps
    waiting for the genuine reply until its timeout.
    """
    n = len(data)
    if n < 12:
        raise WireError("reply shorter than a DNS header", None)
    rid, flags, qd, an, ns, ar = HEADER.unpack_from(data)
    if rid != qid:
        raise WireError(f"reply ID {rid} does not match query ID {qid}", None)
    if not flags & QR:
        raise WireError("reply has QR=0", None)
    if qd != 1:
        raise WireError(f"reply carries {qd} questions", None)
    try:
        name, pos = read_name(data, 12)
        if pos + 4 > n:
            raise WireError("reply question truncated", None)
        rtype, rclass = _HH.unpack_from(data, pos)
        if name.lower() != qname_lower or rtype != qtype or rclass != qclass:
            raise WireError("reply is for another question", None)
        pos += 4
        body_start = pos
        answer, pos = _read_section(data, pos, an)
        authority, pos = _read_section(data, pos, ns)
        additional: list[ReplyRR] = []
        body_end = -1
        edns = False
        ext_rcode = 0
        for _ in range(ar):
            start = pos
            rr, pos = _read_rr(data, pos)
            if rr.rtype == T_OPT:
                if body_end < 0:
                    body_end = start
                    edns = True
                    ext_rcode = (rr.ttl >> 24) & 0xFF
                continue
            if body_end < 0:
                additional.append(rr)
    except WireError as exc:
        raise WireError(exc.reason, None) from None
    if pos != n:
        raise WireError(f"{n - pos} octets after the last record of the reply", None)
    if body_end < 0:
        body_end = n
    rcode = (ext_rcode << 4) | (flags & 0xF)
    return Reply(rid, flags, rcode, body_start, body_end, answer, authority, tuple(additional), edns)


def _read_section(data: bytes, pos: int, count: int) -> tuple[tuple[ReplyRR, ...], int]:
    out = []
    for _ in range(count):
        rr, pos = _read_rr(data, pos)
        out.append(rr)
    return tuple(out), pos


# RDATA layouts that hold compressible names (RFC 3597 section 4: only these may be compressed)
_NAME_RDATA = {T_NS: (0, 1), T_CNAME: (0, 1), T_PTR: (0, 1), T_DNAME: (0, 1), T_MX: (2, 1),
               T_SOA: (0, 2), 3: (0, 1), 4: (0, 1), 7: (0, 1), 8: (0, 1), 9: (0, 1)}


def _read_rr(data: bytes, pos: int) -> tuple[ReplyRR, int]:
    owner, pos = read_name(data, pos)
    if pos + 10 > len(data):
        raise WireError("record header truncated")
    rtype, rclass, ttl, rdlen = _RR_FIXED.unpack_from(data, pos)
    ttl_off = pos + 4
    start = pos + 10
    end = start + rdlen
    if end > len(data):
        raise WireError("record data truncated")
    layout = _NAME_RDATA.get(rtype)
    rdata = data[start:end] if layout is None else _expand_rdata(data, start, end, layout)
    return ReplyRR(owner.lower(), rtype, rclass, ttl, rdata, ttl_off), end


def _expand_rdata(data: bytes, start: int, end: int, layout: tuple[int, int]) -> bytes:
    prefix, names = layout
    out = bytearray(data[start : start + prefix])
    pos = start + prefix
    for _ in range(names):
        name, pos = read_name(data, pos)
        out += name
    if pos > end:
        raise WireError("names run past the record data")
    out += data[pos:end]
    return bytes(out)


class Chain(NamedTuple):
    """The resolution chain of an answer (RPZ section 5.1 stages).

    ``names[0]`` is the QNAME, ``names[i]`` the target of the i-th CNAME/DNAME step;
    ``links[i]`` the records that lead from ``names[i-1]`` to ``names[i]`` (``links[0]`` is empty);
    ``addresses[i]`` the A/AAAA RDATA owned by ``names[i]``.
    """

    names: tuple[bytes, ...]
    links: tuple[tuple[ReplyRR, ...], ...]
    addresses: tuple[tuple[bytes, ...], ...]


def walk_chain(qname_lower: bytes, answer: tuple[ReplyRR, ...]) -> Chain:
    """Follow CNAMEs (and DNAME substitutions) from the QNAME through the answer section."""
    names_ = [qname_lower]
    links: list[tuple[ReplyRR, ...]] = [()]
    name = qname_lower
    seen = {name}
    for _ in range(MAX_CHAIN):
        step: list[ReplyRR] = []
        target: bytes | None = None
        for rr in answer:
            if rr.rtype == T_DNAME and _strictly_below(name, rr.owner):
                step.append(rr)
                sub = name[: len(name) - len(rr.owner)] + rr.rdata.lower()
                if len(sub) <= MAX_NAME:
                    target = sub
        for rr in answer:
            if rr.rtype == T_CNAME and rr.owner == name:
                step.append(rr)
                target = rr.rdata.lower()
                break
        if target is None or target in seen:
            break
        seen.add(target)
        names_.append(target)
        links.append(tuple(step))
        name = target
    addresses = tuple(tuple(rr.rdata for rr in answer if rr.owner == nm and rr.rtype in (T_A, T_AAAA))
                      for nm in names_)
    return Chain(tuple(names_), tuple(links), addresses)


def _strictly_below(name: bytes, owner: bytes) -> bool:
    if len(name) <= len(owner) or not name.endswith(owner):
        return False
    i = 0
    cut = len(name) - len(owner)
    while i < cut:
        i += name[i] + 1
    return i == cut


# -- relaying cached upstream answers -----------------------------------------------------------

def age_body(body: bytes, ttl_offsets: tuple[tuple[int, int], ...], elapsed: int) -> bytes:
    """The cached body with every TTL reduced by ``elapsed`` seconds (floored at 0)."""
    if elapsed <= 0 or not ttl_offsets:
        return body
    buf = bytearray(body)
    pack = _TTL.pack_into
    for off, ttl in ttl_offsets:
        pack(buf, off, ttl - elapsed if ttl > elapsed else 0)
    return bytes(buf)


def relay(q: Query, rflags: int, rcode: int, body: bytes, *, counts: tuple[int, int, int],
          edns_udp_size: int, limit: int | None) -> bytes:
    """A relayed upstream answer: client's ID and question, upstream's sections, our OPT."""
    an, ns, ar = counts
    flags = QR | RA | (q.flags & (RD | CD)) | (rflags & AD) | (rcode & 0xF)
    if q.edns:
        out = (HEADER.pack(q.id, flags, 1, an, ns, ar + 1) + q.question + body
               + opt_record(edns_udp_size, q.do, rcode >> 4))
    else:
        out = HEADER.pack(q.id, flags, 1, an, ns, ar) + q.question + body
    if limit is not None and len(out) > limit:
        return truncated(q, edns_udp_size, rcode & 0xF)
    return out


def rr_from_reply(rr: ReplyRR, ttl_cap: int | None = None) -> bytes:
    """Re-encode an upstream record uncompressed, for a response we assemble ourselves."""
    ttl = rr.ttl if ttl_cap is None else min(rr.ttl, ttl_cap)
    return encode_rr(rr.owner, rr.rtype, ttl, rr.rdata, rr.rclass)
