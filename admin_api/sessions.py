"""Subscriber session records in: RADIUS accounting, DHCP leases, CGNAT port blocks, accounts.

Reads CSV (header row) and JSON (an array of objects, or one object per line) and validates row by
row: a bad row becomes a ``Rejection`` naming its line and what is wrong, the other rows are kept.
Pure: text in, values out; the store writes them (idempotently) and the CLI draws the progress.

Columns (case-insensitive; ``-`` and ``_`` are the same, so RADIUS attribute names work as is):

    radius    Acct-Status-Type (Start|Stop|Interim-Update), Acct-Session-Id, User-Name,
              Framed-IP-Address, Event-Timestamp [, Acct-Session-Time, NAS-IP-Address]
    dhcp      ip_address, account, starts, ends [, mac]
    cgnat     public_ip, port_start, port_end, inside_ip, start [, end, protocol]
    accounts  account, name [, postal_address, phone, email]

Times are ISO 8601 with a zone (``2026-03-01T10:00:00+08:00``) or epoch seconds (UTC by
definition); a time without a zone is refused, never guessed. RFC 6302: shared addresses need
port and accurate, zoned timestamps to identify anyone.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from .clock import parse_instant
from .errors import SessionImportError


class SessionKind(StrEnum):
    RADIUS = "radius"
    DHCP = "dhcp"
    CGNAT = "cgnat"
    ACCOUNTS = "accounts"


REQUIRED: dict[SessionKind, tuple[str, ...]] = {
    SessionKind.RADIUS: ("acct_status_type", "acct_session_id", "user_name", "framed_ip_address",
                         "event_timestamp"),
    SessionKind.DHCP: ("ip_address", "account", "starts", "ends"),
    SessionKind.CGNAT: ("public_ip", "port_start", "port_end", "inside_ip", "start"),
    SessionKind.ACCOUNTS: ("account", "name"),
}
OPTIONAL: dict[SessionKind, tuple[str, ...]] = {
    SessionKind.RADIUS: ("acct_session_time", "nas_ip_address"),
    SessionKind.DHCP: ("mac",),
    SessionKind.CGNAT: ("end", "protocol"),
    SessionKind.ACCOUNTS: ("postal_address", "phone", "email"),
}


@dataclass(frozen=True, slots=True)
class RadiusEvent:
    status: str            # start | stop | interim
    session_id: str
    account: str
    address: str
    at: datetime
    session_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class DhcpLease:
    address: str
    account: str
    start: datetime
    end: datetime
    mac: str = ""


@dataclass(frozen=True, slots=True)
class PortBlock:
    public_ip: str
    port_lo: int
    port_hi: int
    inside: str
    start: datetime
    end: datetime | None
    protocol: str | None


@dataclass(frozen=True, slots=True)
class Account:
    account: str
    name: str
    postal_address: str = ""
    phone: str = ""
    email: str = ""


Row = RadiusEvent | DhcpLease | PortBlock | Account


@dataclass(frozen=True, slots=True)
class Rejection:
    where: str       # "FILE:LINE" or "records[N]"
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass(frozen=True, slots=True)
class ParseResult:
    kind: SessionKind
    rows: tuple[Row, ...]
    rejected: tuple[Rejection, ...]


class RowError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class _Unreadable:
    """A row the file reader could not even split into fields (reason kept for the rejection)."""

    reason: str


def norm_key(key: str) -> str:
    return key.strip().lower().replace("-", "_").replace(" ", "_")


def infer_kind(columns: Iterable[str]) -> SessionKind | None:
    cols = {norm_key(c) for c in columns}
    matches = [k for k, req in REQUIRED.items() if set(req) <= cols]
    # accounts' two columns are a subset of nothing else; prefer the most specific match
    matches.sort(key=lambda k: -len(REQUIRED[k]))
    return matches[0] if matches else None


# -- field parsers -------------------------------------------------------------------------------

def _text(row: Mapping[str, Any], key: str, required: bool = True) -> str:
    value = row.get(key)
    text = "" if value is None else str(value).strip()
    if required and not text:
        raise RowError(f"{key} is empty")
    return text


def _address(row: Mapping[str, Any], key: str) -> str:
    text = _text(row, key)
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise RowError(f"{key}: {text!r} is not an IPv4 or IPv6 address") from None


def _instant(row: Mapping[str, Any], key: str, required: bool = True) -> datetime | None:
    value = row.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise RowError(f"{key} is empty")
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    text = str(value).strip()
    if text.isdigit():
        return datetime.fromtimestamp(int(text), UTC)
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise RowError(f"{key}: {exc}") from None


def _int(row: Mapping[str, Any], key: str, lo: int, hi: int, required: bool = True) -> int | None:
    value = row.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise RowError(f"{key} is empty")
        return None
    try:
        n = int(str(value).strip())
    except ValueError:
        raise RowError(f"{key}: {value!r} is not a whole number") from None
    if not lo <= n <= hi:
        raise RowError(f"{key}: {n} is outside {lo}..{hi}")
    return n


_STATUS = {"start": "start", "stop": "stop", "interim_update": "interim", "interim": "interim", "alive": "interim"}


def parse_row(kind: SessionKind, raw: Mapping[str, Any]) -> Row:
    row = {norm_key(str(k)): v for k, v in raw.items()}
    missing = [c for c in REQUIRED[kind] if c not in row]
    if missing:
        raise RowError("missing column(s): " + ", ".join(missing))
    if kind is SessionKind.RADIUS:
        status = _STATUS.get(norm_key(_text(row, "acct_status_type")))
        if status is None:
            raise RowError(f"acct_status_type: {row['acct_status_type']!r} is not Start, Stop or Interim-Update")
        at = _instant(row, "event_timestamp")
        assert at is not None
        return RadiusEvent(status, _text(row, "acct_session_id"), _text(row, "user_name"),
                           _address(row, "framed_ip_address"), at,
                           _int(row, "acct_session_time", 0, 10 * 365 * 86400, required=False))
    if kind is SessionKind.DHCP:
        start, end = _instant(row, "starts"), _instant(row, "ends")
        assert start is not None and end is not None
        if end < start:
            raise RowError("ends is before starts")
        return DhcpLease(_address(row, "ip_address"), _text(row, "account"), start, end,
                         _text(row, "mac", required=False).lower())
    if kind is SessionKind.CGNAT:
        lo, hi = _int(row, "port_start", 0, 65535), _int(row, "port_end", 0, 65535)
        assert lo is not None and hi is not None
        if hi < lo:
            raise RowError(f"port_end {hi} is below port_start {lo}")
        start, end = _instant(row, "start"), _instant(row, "end", required=False)
        assert start is not None
        if end is not None and end < start:
            raise RowError("end is before start")
        proto = _text(row, "protocol", required=False).lower() or None
        if proto not in (None, "tcp", "udp"):
            raise RowError(f"protocol: {proto!r} is not tcp or udp")
        return PortBlock(_address(row, "public_ip"), lo, hi, _address(row, "inside_ip"), start, end, proto)
    return Account(_text(row, "account"), _text(row, "name"), _text(row, "postal_address", required=False),
                   _text(row, "phone", required=False), _text(row, "email", required=False))


def parse_rows(kind: SessionKind, rows: Iterable[tuple[str, Any]]) -> ParseResult:
    """Validate (location, row) pairs one by one; bad rows are rejected, the rest kept."""
    good: list[Row] = []
    bad: list[Rejection] = []
    for where, raw in rows:
        if isinstance(raw, _Unreadable):
            bad.append(Rejection(where, raw.reason))
            continue
        if not isinstance(raw, Mapping):
            bad.append(Rejection(where, "not an object with named fields"))
            continue
        try:
            good.append(parse_row(kind, raw))
        except RowError as exc:
            bad.append(Rejection(where, str(exc)))
    return ParseResult(kind, tuple(good), tuple(bad))


# -- file formats --------------------------------------------------------------------------------

def parse_text(text: str, source: str, kind: SessionKind | None = None, fmt: str | None = None) -> ParseResult:
    fmt = fmt or detect_format(text, source)
    if fmt == "csv":
        header, rows = _csv_rows(text, source)
        columns: list[str] = header
    elif fmt == "json":
        rows = list(_json_rows(text, source))
        columns = sorted({str(k) for _, r in rows if isinstance(r, Mapping) for k in r})
    else:
        raise SessionImportError(source, f"unknown format {fmt!r} (csv or json)")
    if kind is None:
        kind = infer_kind(columns)
        if kind is None:
            raise SessionImportError(source, "cannot tell the kind from the columns "
                                     f"({', '.join(columns) or 'none'}); pass --kind radius|dhcp|cgnat|accounts", 1)
    return parse_rows(kind, rows)


def detect_format(text: str, source: str) -> str:
    if source.lower().endswith((".json", ".jsonl", ".ndjson")):
        return "json"
    if source.lower().endswith(".csv"):
        return "csv"
    return "json" if text.lstrip()[:1] in ("[", "{") else "csv"


def _csv_rows(text: str, source: str) -> tuple[list[str], list[tuple[str, Any]]]:
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise SessionImportError(source, "empty file: a header row is needed", 1) from None
    except csv.Error as exc:
        raise SessionImportError(source, f"CSV: {exc}", 1) from exc
    names = [norm_key(h) for h in header]
    out: list[tuple[str, Any]] = []
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise SessionImportError(source, f"CSV: {exc}", reader.line_num) from exc
        line = reader.line_num
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(names):
            out.append((f"{source}:{line}", _Unreadable(f"{len(fields)} fields, the header has {len(names)}")))
            continue
        out.append((f"{source}:{line}", dict(zip(names, fields, strict=True))))
    return header, out


def _json_rows(text: str, source: str) -> Iterator[tuple[str, Any]]:
    start = len(text) - len(text.lstrip())
    if text[start:start + 1] != "[":
        for no, text_line in enumerate(text.splitlines(), start=1):
            if not text_line.strip():
                continue
            try:
                yield f"{source}:{no}", json.loads(text_line)
            except json.JSONDecodeError as exc:
                yield f"{source}:{no}", _Unreadable(f"not JSON: {exc.msg} at column {exc.colno}")
        return
    dec = json.JSONDecoder()
    pos, line, counted = start + 1, 1, 0
    while True:
        pos = _skip_ws(text, pos)
        if pos >= len(text):
            raise SessionImportError(source, "the JSON array is not closed", line)
        if text[pos] == "]":
            return
        line += text.count("\n", counted, pos)
        counted = pos
        try:
            obj, pos = dec.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise SessionImportError(source, f"JSON: {exc.msg}", exc.lineno) from exc
        yield f"{source}:{line}", obj
        pos = _skip_ws(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos < len(text) and text[pos] == "]":
            return
        else:
            raise SessionImportError(source, "expected ',' or ']' after an array element",
                                     line + text.count("\n", counted, pos))


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos
