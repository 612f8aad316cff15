"""RPZ zones in master-file format (RFC 1035 section 5): the careful, line-precise reader.

Handles $ORIGIN, $TTL, relative names, ``@``, blank owners (previous owner), comments, quoted
strings, escapes and multi-line parentheses. $INCLUDE and $GENERATE are refused: a policy zone must
be self-contained so that what was verified is what gets enforced. Each bad record becomes a
Rejection naming file:line and the reason; the rest of the zone still loads. The RDATA grammar of
each type is dnspython's; what the records mean is ours (rpz.actions, rpz.triggers).

TTL of a record without one: its $TTL, else the SOA minimum (as BIND does).

Large zones take the vectorized path in rpz.fastzone for lines that are provably simple; it hands
everything else to this module, so both paths share one grammar.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tokenizer
import dns.ttl

from . import names
from .actions import RR
from .errors import DnsNameError, RecordError, ZoneReadError


@dataclass(frozen=True, slots=True)
class Rejection:
    """One record refused, with where and why."""

    source: str
    line: int | None
    owner: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.owner}: {self.reason}"


@dataclass(frozen=True, slots=True)
class ParsedRR:
    """A record read from the zone: absolute canonical owner, the RR, its line."""

    owner: bytes
    rr: RR
    line: int | None
    ttl_explicit: bool = True


@dataclass(frozen=True, slots=True)
class Fields:
    """TTL (None: use the default), type and RDATA of one record, parsed from text."""

    ttl: int | None
    rdtype: int
    rdata: bytes


def parse_fields(text: str, origin: dns.name.Name) -> Fields:
    """Parse ``[ttl] [class] type rdata`` (either order of ttl and class). RecordError when bad."""
    try:
        tok = dns.tokenizer.Tokenizer(text)
        t = tok.get()
        ttl: int | None = None
        seen_class = False
        while True:
            if not t.is_identifier():
                raise RecordError(f"expected a record type, found {t.value!r}")
            v = t.value
            if ttl is None and v[:1].isdigit():
                ttl = dns.ttl.from_text(v)
                t = tok.get()
                continue
            if (not seen_class and v.upper() in ("IN", "CH", "HS", "CS", "ANY", "NONE")) or (
                    not seen_class and v.upper().startswith("CLASS")):
                if dns.rdataclass.from_text(v) != dns.rdataclass.IN:
                    raise RecordError(f"class {v} is not supported (policy zones are class IN)")
                seen_class = True
                t = tok.get()
                continue
            break
        try:
            rdtype = dns.rdatatype.from_text(t.value)
        except dns.rdatatype.UnknownRdatatype as exc:
            raise RecordError(f"unknown record type {t.value!r}") from exc
        rd = dns.rdata.from_text(dns.rdataclass.IN, rdtype, tok, origin=origin, relativize=False)
        if ttl is not None and ttl > 0x7FFFFFFF:
            raise RecordError(f"TTL {ttl} is larger than 2147483647")
        return Fields(ttl, int(rdtype), rd.to_wire() or b"")
    except RecordError:
        raise
    except dns.exception.DNSException as exc:
        raise RecordError(_dns_reason(exc)) from exc
    except (ValueError, UnicodeError) as exc:
        raise RecordError(f"unreadable record data: {exc}") from exc


def _dns_reason(exc: Exception) -> str:
    msg = str(exc) or type(exc).__name__
    return msg[0].lower() + msg[1:] if msg else "malformed record"


@dataclass(slots=True)
class LogicalLine:
    """One record or directive after comments are cut and parentheses joined."""

    line: int
    owner: str | None  # None: the line started with blank space (previous owner)
    rest: str
    consumed: tuple[int, int]  # first and last physical line (1-based)


class Lines(Protocol):
    def __len__(self) -> int: ...
    def __getitem__(self, i: int) -> bytes: ...


def logical_lines(lines: Lines, first: int, last: int) -> Iterator[LogicalLine]:
    """Scan physical lines first..last (0-based, inclusive start) into logical lines.

    A parenthesised record may run past ``last``; it is read to its end.
    """
    i = first
    n = len(lines)
    while i <= last and i < n:
        start = i
        text, depth, i = _scan(lines, i)
        if depth != 0:
            raise _Unbalanced(start + 1)
        if not text.strip():
            continue
        raw = lines[start].decode("latin-1")
        if raw[:1] in (" ", "\t"):
            yield LogicalLine(start + 1, None, text.strip(), (start + 1, i))
        else:
            parts = text.split(None, 1)
            yield LogicalLine(start + 1, parts[0], parts[1] if len(parts) > 1 else "", (start + 1, i))


class _Unbalanced(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


def _scan(lines: Lines, i: int) -> tuple[str, int, int]:
    """Join physical lines from i while parentheses are open; drop comments. Returns text, depth,
    index of the next unread line."""
    out: list[str] = []
    depth = 0
    n = len(lines)
    while True:
        s = lines[i].decode("latin-1").rstrip("\r")
        i += 1
        quoted = False
        j = 0
        buf: list[str] = []
        while j < len(s):
            c = s[j]
            if c == "\\" and j + 1 < len(s):
                buf.append(s[j : j + 2])
                j += 2
                continue
            if c == '"':
                quoted = not quoted
            elif not quoted:
                if c == ";":
                    break
                if c == "(":
                    depth += 1
                    buf.append(" ")
                    j += 1
                    continue
                if c == ")":
                    depth -= 1
                    if depth < 0:
                        return "".join(out) + "".join(buf), depth, i
                    buf.append(" ")
                    j += 1
                    continue
            buf.append(c)
            j += 1
        out.append("".join(buf))
        if depth == 0 or i >= n:
            return " ".join(out), depth, i
        out.append(" ")


class ZoneReader:
    """Reads one zone's text into ParsedRRs and Rejections (the careful path).

    ``origin`` (text or wire) fixes the zone apex; without it the first $ORIGIN does.
    """

    def __init__(self, data: bytes, source: str, origin: bytes | None = None) -> None:
        self.data = data
        self.source = source
        self.apex: bytes | None = origin.lower() if origin is not None else None
        self.rejections: list[Rejection] = []
        self.soa: ParsedRR | None = None
        self._origin: bytes | None = self.apex
        self._default_ttl: int | None = None
        self._prev_owner: bytes | None = None
        self.contexts: list[tuple[int, bytes | None, int | None]] = [(0, self._origin, None)]
        self.last_consumed = -1

    # -- public -----------------------------------------------------------------------------
    def reject(self, line: int | None, owner: str, reason: str) -> None:
        self.rejections.append(Rejection(self.source, line, owner, reason))

    def read_lines(self, lines: Lines, first: int = 0, last: int | None = None) -> Iterator[ParsedRR]:
        """Records of physical lines first..last; may be called piecewise, in order."""
        end = len(lines) - 1 if last is None else last
        try:
            for ll in logical_lines(lines, first, end):
                self.last_consumed = ll.consumed[1] - 1
                yield from self._logical(ll)
        except _Unbalanced as exc:
            raise ZoneReadError(self.source, "unbalanced parentheses: '(' never closed", exc.line) from None

    def read_line_in_context(self, lines: Lines, i: int, origin: bytes, default_ttl: int | None) -> list[ParsedRR]:
        """Read physical line i alone as if $ORIGIN and $TTL were as given (for lines the fast
        path handed back after the careful pass)."""
        saved = (self._origin, self._default_ttl, self.last_consumed)
        self._origin, self._default_ttl = origin, default_ttl
        try:
            return list(self.read_lines(lines, i, i))
        finally:
            self._origin, self._default_ttl, self.last_consumed = saved

    def origin_dns(self) -> dns.name.Name:
        assert self._origin is not None
        return dns.name.from_wire(self._origin, 0)[0]

    @property
    def origin(self) -> bytes | None:
        return self._origin

    @property
    def default_ttl(self) -> int | None:
        return self._default_ttl

    def note_owner(self, owner: bytes) -> None:
        """Tell the reader the owner of a record read elsewhere (blank-owner lines refer to it)."""
        self._prev_owner = owner

    # -- internals --------------------------------------------------------------------------
    def _logical(self, ll: LogicalLine) -> Iterator[ParsedRR]:
        if ll.owner is not None and ll.owner.startswith("$"):
            self._directive(ll)
            return
        if self._origin is None:
            raise ZoneReadError(self.source, "no zone origin: add a $ORIGIN line or give the zone name",
                                ll.line)
        owner_text = ll.owner if ll.owner is not None else None
        try:
            if owner_text is None:
                if self._prev_owner is None:
                    raise RecordError("record without an owner name and no previous owner")
                owner = self._prev_owner
            else:
                owner = names.from_text(owner_text, self._origin).lower()
        except (DnsNameError, RecordError) as exc:
            self.reject(ll.line, owner_text or "(blank)", f"bad owner name: {exc}")
            return
        self._prev_owner = owner
        try:
            fields = parse_fields(ll.rest, self.origin_dns())
        except RecordError as exc:
            self.reject(ll.line, names.to_text(owner), exc.reason)
            return
        if fields.rdtype == 6:  # SOA
            self._take_soa(owner, fields, ll.line)
            return
        ttl = fields.ttl
        if ttl is None:
            ttl = self._default_ttl if self._default_ttl is not None else self._soa_minimum()
        yield ParsedRR(owner, RR(fields.rdtype, ttl, fields.rdata), ll.line, fields.ttl is not None)

    def _take_soa(self, owner: bytes, fields: Fields, line: int) -> None:
        if self.apex is None:
            self.apex = owner
        if owner != self.apex:
            self.reject(line, names.to_text(owner), "SOA record outside the zone apex")
            return
        if self.soa is not None:
            self.reject(line, names.to_text(owner), "second SOA record at the apex")
            return
        minimum = int.from_bytes(fields.rdata[-4:], "big")
        ttl = fields.ttl if fields.ttl is not None else (
            self._default_ttl if self._default_ttl is not None else minimum)
        self.soa = ParsedRR(owner, RR(6, ttl, fields.rdata), line)

    def _soa_minimum(self) -> int:
        if self.soa is not None:
            return int.from_bytes(self.soa.rr.rdata[-4:], "big")
        return 0

    def _directive(self, ll: LogicalLine) -> None:
        assert ll.owner is not None
        word = ll.owner.upper()
        arg = ll.rest.split()
        if word == "$ORIGIN":
            if len(arg) != 1:
                self.reject(ll.line, "$ORIGIN", "expected exactly one name after $ORIGIN")
                return
            try:
                new = names.from_text(arg[0], self._origin).lower()
            except DnsNameError as exc:
                raise ZoneReadError(self.source, f"bad $ORIGIN: {exc}", ll.line) from exc
            if self.apex is None:
                self.apex = new
            self._origin = new
            self.contexts.append((ll.line, self._origin, self._default_ttl))
        elif word == "$TTL":
            try:
                if len(arg) != 1:
                    raise ValueError("expected exactly one value")
                self._default_ttl = dns.ttl.from_text(arg[0])
                self.contexts.append((ll.line, self._origin, self._default_ttl))
            except (ValueError, dns.exception.DNSException) as exc:
                self.reject(ll.line, "$TTL", f"bad $TTL: {exc}")
        elif word == "$INCLUDE":
            self.reject(ll.line, "$INCLUDE", "$INCLUDE is refused: a policy zone must be one "
                        "self-contained file (what was verified is what is enforced)")
        elif word == "$GENERATE":
            self.reject(ll.line, "$GENERATE", "$GENERATE is not supported in policy zones")
        else:
            self.reject(ll.line, ll.owner, f"unknown directive {ll.owner}")
