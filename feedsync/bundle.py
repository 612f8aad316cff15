"""The takedown bundle: the ONE owner of the entry format, the bundle document, the hotline's orders
files (CSV/JSON) and their compilation to RPZ zone text.

A bundle is the TUF target a hotline signs (docs/feeds.md has the operator's view):

    {"format": "hotline-edge-bundle/1", "feed": "hk-hotline", "sequence": 7,
     "generated_at": "2026-11-22T10:00:00Z",
     "entries": [{"entry_id": "E-1", "order_ref": "TW-2026-0042", "issuing_authority": "...",
                  "legal_basis": "...", "category": "csam", "target": "bad.example.test",
                  "match": "subdomains", "action": "nxdomain", "stop_page": "",
                  "issued_at": "...Z", "effective_at": "...Z", "expires_at": "...Z",
                  "appeal_contact": "appeals@hotline.test", "retention_days": 180}, ...]}

Reading is split in two pure steps: ``parse_entry`` checks the shape of one entry (fields present,
times with a zone, known enum values) and ``check_entry`` applies the appliance's guards (public
suffix, protected names, duration bound). Both refuse one entry with a reason; the rest go on.
``compile_zone`` turns the entries in force at ``now`` into RPZ zone text, with the order reference
as ``TXT "order=<ref>"`` at every rule owner and the extra names that DNS wildcard semantics need
(DESIGN.md section 5; ``fill_wildcard_gaps``).

These functions work one entry at a time and are the definition of what an entry means.
feedsync.bundlebulk does the same by column for real (million-entry) bundles, handing every row
its column checks cannot vouch for back to these; tests/property/test_bundle_bulk.py holds both
to the same results.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any

from .errors import BundleFormatError

FORMAT = "hotline-edge-bundle/1"            # entries as a list of objects
FORMAT_COLUMNS = "hotline-edge-bundle/2"    # the same entries as one list per field (docs/feeds.md)
FORMATS = (FORMAT, FORMAT_COLUMNS)
MAX_TTL = 86400


class Match(StrEnum):
    EXACT = "exact"
    SUBDOMAINS = "subdomains"


class EntryAction(StrEnum):
    NXDOMAIN = "nxdomain"
    NODATA = "nodata"
    STOP_PAGE = "stop_page"
    PASSTHRU = "passthru"


class Reason(StrEnum):
    """Why one entry was refused (the rest of the version still applies). Stable codes."""

    MISSING_FIELD = "ENTRY_MISSING_FIELD"        # a legal or required field is absent or empty
    BAD_VALUE = "ENTRY_BAD_VALUE"                # unknown match/action, bad time, bad number
    MALFORMED_NAME = "ENTRY_MALFORMED_NAME"      # target is not a valid DNS name
    URL_TARGET = "ENTRY_URL_TARGET"              # a URL: DNS can only act on names
    PUBLIC_SUFFIX = "ENTRY_PUBLIC_SUFFIX"        # a public suffix (com, co.uk, github.io, ...)
    PROTECTED = "ENTRY_PROTECTED"                # on, under, or (subdomains) above a protected name
    BAD_TIMES = "ENTRY_BAD_TIMES"                # expires before it takes effect; effect before issue
    TOO_LONG = "ENTRY_TOO_LONG"                  # duration beyond the configured maximum
    UNKNOWN_STOP_PAGE = "ENTRY_UNKNOWN_STOP_PAGE"  # stop_page action with a ref not in the config
    DUPLICATE = "ENTRY_DUPLICATE"                # entry_id seen before in the same version
    CONFLICT = "ENTRY_CONFLICT"                  # same rule owner as another entry, different action


_MATCHES = {m.value: m for m in Match}
_ACTIONS = {a.value: a for a in EntryAction}

# Fields every entry must carry (issue 4, "A bundle entry carries"). stop_page only for stop_page.
REQUIRED_TEXT = ("entry_id", "order_ref", "issuing_authority", "legal_basis", "category", "target",
                 "match", "action", "appeal_contact")
TIME_FIELDS = ("issued_at", "effective_at", "expires_at")
ALL_FIELDS = (*REQUIRED_TEXT, "stop_page", *TIME_FIELDS, "retention_days")
_REF = re.compile(r"^[\x21-\x7e]([\x20-\x7e]{0,126}[\x21-\x7e])?$")
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


@dataclass(frozen=True, slots=True)
class Entry:
    """One takedown order as the appliance enforces it. Times are UTC epoch seconds."""

    entry_id: str
    order_ref: str
    issuing_authority: str
    legal_basis: str
    category: str
    target: str          # lower-case A-label name without the final dot
    match: Match
    action: EntryAction
    stop_page: str
    issued_at: int
    effective_at: int
    expires_at: int
    appeal_contact: str
    retention_days: int

    def in_force(self, now: float) -> bool:
        return self.effective_at <= now < self.expires_at

    def to_json(self) -> dict[str, Any]:
        return {
            "entry_id": self.entry_id, "order_ref": self.order_ref,
            "issuing_authority": self.issuing_authority, "legal_basis": self.legal_basis,
            "category": self.category, "target": self.target, "match": self.match.value,
            "action": self.action.value, "stop_page": self.stop_page,
            "issued_at": format_time(self.issued_at), "effective_at": format_time(self.effective_at),
            "expires_at": format_time(self.expires_at), "appeal_contact": self.appeal_contact,
            "retention_days": self.retention_days,
        }


@dataclass(frozen=True, slots=True)
class EntryRejection:
    """One entry refused: which (id and position), the stable reason code, and the detail."""

    entry_id: str
    index: int
    reason: Reason
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"entry_id": self.entry_id, "index": self.index, "reason": self.reason.value,
                "detail": self.detail}

    def __str__(self) -> str:
        return f"entry {self.entry_id or '#' + str(self.index)}: {self.reason.value}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Bundle:
    """A parsed bundle document: header plus entries (already shape-checked) and shape rejections."""

    feed: str
    sequence: int
    generated_at: int
    entries: tuple[Entry, ...]
    rejected: tuple[EntryRejection, ...]
    indices: tuple[int, ...] = ()        # position of each entry in the document


@dataclass(frozen=True, slots=True)
class Guards:
    """What ``check_entry`` needs from the feed configuration (pure values)."""

    max_duration_s: int
    protected: tuple[str, ...] = ()
    stop_pages: Mapping[str, str] = field(default_factory=dict)
    is_public_suffix: Callable[[str], bool] | None = None  # None: no public-suffix check


# --- times -------------------------------------------------------------------------------------

@lru_cache(maxsize=65536)
def parse_time(text: str) -> int:
    """ISO 8601 with a zone (``2026-11-22T10:00:00Z`` or ``+08:00``) -> UTC epoch seconds."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except (ValueError, AttributeError) as exc:
        raise ValueError(f"not an ISO 8601 time: {text!r}") from exc
    if dt.tzinfo is None:
        raise ValueError(f"time without a zone: {text!r} (write Z for UTC)")
    return int(dt.timestamp())


def format_time(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- names -------------------------------------------------------------------------------------

def normalize_target(raw: str) -> tuple[str | None, Reason | None, str]:
    """(name, None, "") or (None, reason, detail). Lower case, IDNA A-labels, no final dot."""
    text = raw.strip()
    if "://" in text or "/" in text or "?" in text or "#" in text:
        return None, Reason.URL_TARGET, (f"{text!r} is a URL; DNS can only act on names: send the host "
                                         "name, with match=subdomains only if the whole domain is dedicated")
    if text.endswith("."):
        text = text[:-1]
    if not text:
        return None, Reason.MALFORMED_NAME, "empty target"
    try:
        text = text.encode("idna").decode("ascii") if not text.isascii() else text
    except UnicodeError as exc:
        return None, Reason.MALFORMED_NAME, f"{raw!r} is not a valid IDNA name ({exc})"
    name = text.lower()
    labels = name.split(".")
    if len(name) > 253:
        return None, Reason.MALFORMED_NAME, f"{raw!r} is longer than 253 characters"
    for label in labels:
        if not _LABEL.match(label):
            return None, Reason.MALFORMED_NAME, f"{raw!r}: label {label!r} is not a valid host label"
    if len(labels) < 2:
        return None, Reason.PUBLIC_SUFFIX, f"{name!r} is a top-level domain"
    if any(lab.startswith("rpz-") for lab in labels):
        return None, Reason.MALFORMED_NAME, (f"{name!r}: labels starting with rpz- are reserved for RPZ triggers "
                                             "and actions")
    return name, None, ""


def _is_at_or_under(name: str, ancestor: str) -> bool:
    return name == ancestor or name.endswith("." + ancestor)


# --- one entry -----------------------------------------------------------------------------------

def parse_entry(raw: Any, index: int) -> Entry | EntryRejection:
    """Shape check of one entry (a mapping of strings/numbers)."""
    if not isinstance(raw, Mapping):
        return EntryRejection("", index, Reason.BAD_VALUE, "an entry must be an object")
    eid = str(raw.get("entry_id") or "").strip()

    def reject(reason: Reason, detail: str) -> EntryRejection:
        return EntryRejection(eid, index, reason, detail)

    text: dict[str, str] = {}
    for name in REQUIRED_TEXT:
        value = raw.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return reject(Reason.MISSING_FIELD, f"{name} is missing")
        if not isinstance(value, str):
            return reject(Reason.BAD_VALUE, f"{name} must be text")
        text[name] = value.strip()
    for name in TIME_FIELDS:
        if not str(raw.get(name) or "").strip():
            return reject(Reason.MISSING_FIELD, f"{name} is missing")
    if raw.get("retention_days") in (None, ""):
        return reject(Reason.MISSING_FIELD, "retention_days is missing")
    if not _REF.match(text["order_ref"]) or '"' in text["order_ref"] or "\\" in text["order_ref"]:
        return reject(Reason.BAD_VALUE, "order_ref must be 1-128 printable ASCII characters without quotes "
                                        "or backslashes")
    match = _MATCHES.get(text["match"].lower())
    if match is None:
        return reject(Reason.BAD_VALUE, f"match {text['match']!r} is not exact or subdomains")
    action = _ACTIONS.get(text["action"].lower())
    if action is None:
        return reject(Reason.BAD_VALUE, f"action {text['action']!r} is not one of "
                                        f"{', '.join(a.value for a in EntryAction)}")
    stop_page = str(raw.get("stop_page") or "").strip()
    if action is EntryAction.STOP_PAGE and not stop_page:
        return reject(Reason.MISSING_FIELD, "stop_page is missing for action stop_page")
    try:
        times = [parse_time(str(raw[n])) for n in TIME_FIELDS]
    except ValueError as exc:
        return reject(Reason.BAD_VALUE, str(exc))
    try:
        retention = int(str(raw["retention_days"]).strip())
    except ValueError:
        return reject(Reason.BAD_VALUE, f"retention_days {raw['retention_days']!r} is not a whole number")
    if retention < 0:
        return reject(Reason.BAD_VALUE, "retention_days is negative")
    target, why, detail = normalize_target(text["target"])
    if target is None:
        assert why is not None
        return reject(why, detail)
    return Entry(eid, text["order_ref"], text["issuing_authority"], text["legal_basis"],
                 text["category"].lower(), target, match, action, stop_page, times[0], times[1], times[2],
                 text["appeal_contact"], retention)


def check_entry(entry: Entry, index: int, guards: Guards) -> EntryRejection | None:
    """The appliance's own guards on a well-formed entry; None when it may be enforced."""

    def reject(reason: Reason, detail: str) -> EntryRejection:
        return EntryRejection(entry.entry_id, index, reason, detail)

    if entry.expires_at <= entry.effective_at:
        return reject(Reason.BAD_TIMES, f"expires_at {format_time(entry.expires_at)} is not after "
                                        f"effective_at {format_time(entry.effective_at)}")
    if entry.effective_at < entry.issued_at:
        return reject(Reason.BAD_TIMES, "effective_at is before issued_at")
    duration = entry.expires_at - entry.effective_at
    if duration > guards.max_duration_s:
        return reject(Reason.TOO_LONG, f"in force for {duration // 86400} days; this feed allows at most "
                                       f"{guards.max_duration_s // 86400} (max_duration_days)")
    if guards.is_public_suffix is not None and guards.is_public_suffix(entry.target):
        return reject(Reason.PUBLIC_SUFFIX, f"{entry.target} is a public suffix: blocking it would block "
                                            "every domain registered under it")
    if entry.action is EntryAction.STOP_PAGE and entry.stop_page not in guards.stop_pages:
        return reject(Reason.UNKNOWN_STOP_PAGE, f"stop page {entry.stop_page!r} is not configured "
                                                "(stop_pages in the feed's config)")
    if entry.action is not EntryAction.PASSTHRU:
        for p in (*guards.protected, *guards.stop_pages.values()):
            prot = p.rstrip(".").lower()
            if _is_at_or_under(entry.target, prot) or (
                    entry.match is Match.SUBDOMAINS and _is_at_or_under(prot, entry.target)):
                return reject(Reason.PROTECTED, f"{entry.target} ({entry.match.value}) would block the "
                                                f"protected name {prot}")
    return None


# --- documents -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class BundleHeader:
    feed: str
    sequence: int
    generated_at: int


def bundle_header(doc: Any, source: str) -> BundleHeader:
    """The document's header fields, checked; BundleFormatError when it is not a bundle at all
    (``entries`` must be a list; its elements are checked one by one later)."""
    if not isinstance(doc, dict) or doc.get("format") not in FORMATS:
        raise BundleFormatError(source, f"not a {' or '.join(FORMATS)} document (format field)")
    feed = doc.get("feed")
    seq = doc.get("sequence")
    if not isinstance(feed, str) or not feed:
        raise BundleFormatError(source, "feed is missing")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise BundleFormatError(source, "sequence must be a non-negative integer")
    if doc["format"] == FORMAT and not isinstance(doc.get("entries"), list):
        raise BundleFormatError(source, "entries must be a list")
    try:
        generated = parse_time(str(doc.get("generated_at", "")))
    except ValueError as exc:
        raise BundleFormatError(source, f"generated_at: {exc}") from exc
    return BundleHeader(feed, seq, generated)


def bundle_columns(doc: dict[str, Any], source: str) -> tuple[int, dict[str, list[Any]]]:
    """A ``hotline-edge-bundle/2`` document's columns, each expanded to one value per entry:
    ``count`` entries; a column is a list of ``count`` values, or ``{"values": [...], "index":
    [...]}`` (``count`` positions into ``values``, for fields with few distinct values). A field
    without a column is absent from every entry; columns of unknown fields are ignored, as unknown
    keys of a ``/1`` entry are. BundleFormatError for a malformed column."""
    n = doc.get("count")
    columns = doc.get("columns")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise BundleFormatError(source, "count must be a non-negative integer")
    if not isinstance(columns, dict):
        raise BundleFormatError(source, "columns must be an object (field -> values)")
    out: dict[str, list[Any]] = {}
    for name, given in columns.items():
        col = given
        if isinstance(col, dict):
            values, index = col.get("values"), col.get("index")
            if not isinstance(values, list) or not isinstance(index, list) or set(col) != {"values", "index"}:
                raise BundleFormatError(source, f"column {name}: an encoded column is {{\"values\": [...], "
                                                f"\"index\": [...]}}")
            if not set(map(type, index)) <= {int} or (index and not 0 <= min(index) <= max(index) < len(values)):
                raise BundleFormatError(source, f"column {name}: index must hold positions into values "
                                                f"(0 to {len(values) - 1})")
            col = list(map(values.__getitem__, index))
        if not isinstance(col, list):
            raise BundleFormatError(source, f"column {name} must be a list or an encoded column")
        if len(col) != n:
            raise BundleFormatError(source, f"column {name} has {len(col)} values, count is {n}")
        out[name] = col
    return n, out


def entry_rows(doc: dict[str, Any], source: str) -> list[Any]:
    """The entries of a checked document (``bundle_header``) as ``/1`` gives them: one object each."""
    if doc["format"] == FORMAT:
        return list(doc["entries"])
    n, cols = bundle_columns(doc, source)
    return [{name: col[i] for name, col in cols.items()} for i in range(n)]


def parse_bundle(data: bytes, source: str = "<bundle>") -> Bundle:
    """Parse a bundle document one entry at a time (the reference; feedsync.bundlebulk reads real
    bundles by column). BundleFormatError when it is not a bundle at all."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleFormatError(source, f"not JSON: {exc}") from exc
    head = bundle_header(doc, source)
    good: list[Entry] = []
    where: list[int] = []
    bad: list[EntryRejection] = []
    for i, raw in enumerate(entry_rows(doc, source)):
        e = parse_entry(raw, i)
        if isinstance(e, EntryRejection):
            bad.append(e)
        else:
            good.append(e)
            where.append(i)
    return Bundle(head.feed, head.sequence, head.generated_at, tuple(good), tuple(bad), tuple(where))


def dump_bundle(feed: str, sequence: int, generated_at: int, entries: Iterable[Mapping[str, Any]], *,
                columns: bool = True) -> bytes:
    """Serialize a bundle (the publish tool's side). Entries are written as given, in order: as
    columns (``hotline-edge-bundle/2``, a field absent from an entry written as null, a field with
    few distinct values encoded as values + index) or, with ``columns=False``, as ``/1``."""
    rows = [dict(e) for e in entries]
    head = {"feed": feed, "sequence": sequence, "generated_at": format_time(generated_at)}
    if not columns:
        doc: dict[str, Any] = {"format": FORMAT, **head, "entries": rows}
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    names = list(dict.fromkeys(k for r in rows for k in r))
    cols: dict[str, Any] = {}
    for name in names:
        col = [r.get(name) for r in rows]
        try:
            distinct = list(dict.fromkeys(col))
        except TypeError:   # a value that is not hashable: written as it is
            distinct = col
        if len(distinct) * 4 <= len(col) and all(type(v) in (str, int, type(None)) for v in distinct):
            at = {v: k for k, v in enumerate(distinct)}
            cols[name] = {"values": distinct, "index": [at[v] for v in col]}
        else:
            cols[name] = col
    doc = {"format": FORMAT_COLUMNS, **head, "count": len(rows), "columns": cols}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def read_orders(data: bytes, source: str) -> list[dict[str, Any]]:
    """The hotline's orders list: CSV with a header row, or JSON (a list, or {"entries": [...]})."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BundleFormatError(source, f"not UTF-8 (byte {exc.start})") from exc
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise BundleFormatError(source, f"JSON: {exc}") from exc
        rows = doc.get("entries") if isinstance(doc, dict) else doc
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise BundleFormatError(source, "JSON orders must be a list of objects (or {\"entries\": [...]})")
        return [dict(r) for r in rows]
    reader = csv.DictReader(io.StringIO(text))
    try:
        return _csv_rows(reader, source)
    except csv.Error as exc:
        raise BundleFormatError(f"{source}:{reader.line_num}", f"CSV: {exc}") from exc


def _csv_rows(reader: csv.DictReader[str], source: str) -> list[dict[str, Any]]:
    if reader.fieldnames is None:
        raise BundleFormatError(source, "empty CSV (a header row naming the fields comes first)")
    unknown = [f for f in reader.fieldnames if f not in ALL_FIELDS]
    if unknown:
        raise BundleFormatError(f"{source}:1", f"unknown column(s) {', '.join(unknown)}; known: "
                                               f"{', '.join(ALL_FIELDS)}")
    rows = []
    for row in reader:
        if None in row:
            raise BundleFormatError(f"{source}:{reader.line_num}", "more values than header columns")
        rows.append({k: v for k, v in row.items() if v is not None})
    return rows


# --- whole-version checks ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Screened:
    """Entries that passed both steps (with their index), and every rejection."""

    accepted: tuple[tuple[int, Entry], ...]
    rejected: tuple[EntryRejection, ...]


def screen(bundle: Bundle, guards: Guards) -> Screened:
    """Apply ``check_entry`` and the duplicate-id rule to a parsed bundle."""
    seen: set[str] = set()
    good: list[tuple[int, Entry]] = []
    bad = list(bundle.rejected)
    indices = bundle.indices or tuple(range(len(bundle.entries)))
    for i, e in zip(indices, bundle.entries, strict=True):
        if e.entry_id in seen:
            bad.append(EntryRejection(e.entry_id, i, Reason.DUPLICATE, "entry_id used twice in this version"))
            continue
        seen.add(e.entry_id)
        why = check_entry(e, i, guards)
        if why is None:
            good.append((i, e))
        else:
            bad.append(why)
    bad.sort(key=lambda r: r.index)
    return Screened(tuple(good), tuple(bad))


def out_of_scope(entries: Iterable[Entry], categories: Sequence[str], authorities: Sequence[str]) -> str | None:
    """The first scope violation (FEED_SCOPE), or None. Empty lists allow anything."""
    cats = {c.lower() for c in categories}
    auths = set(authorities)
    for e in entries:
        if cats and e.category not in cats:
            return f"entry {e.entry_id}: category {e.category!r} is not among this feed's ({', '.join(sorted(cats))})"
        if auths and e.issuing_authority not in auths:
            return f"entry {e.entry_id}: issuing_authority {e.issuing_authority!r} is not authorised for this feed"
    return None


# --- compilation ---------------------------------------------------------------------------------

_ACTION_RDATA = {EntryAction.NXDOMAIN: ".", EntryAction.NODATA: "*.", EntryAction.PASSTHRU: "rpz-passthru."}


@dataclass(frozen=True, slots=True)
class Rule:
    """One RPZ owner (relative to the zone, ``*.`` for wildcards): CNAME target and order reference."""

    cname: str
    order_ref: str
    entry_id: str
    added: bool = False  # put there by fill_wildcard_gaps, not by an entry


RecordTuple = tuple[bytes, int, int, bytes]


@dataclass(frozen=True, slots=True)
class Compiled:
    text: bytes
    rules: dict[str, Rule]             # owner (relative) -> rule: what the text says
    rule_count: int
    in_force: tuple[str, ...]          # entry ids enforced by this text
    conflicts: tuple[EntryRejection, ...]
    gap_names: int                     # owners added by fill_wildcard_gaps


def rules_for(accepted: Iterable[tuple[int, Entry]], stop_pages: Mapping[str, str], now: float
              ) -> tuple[dict[str, Rule], list[str], list[EntryRejection]]:
    """Entries in force at ``now`` -> {owner: Rule}. Same owner, same action: the earliest entry's
    order reference stays (both orders are enforced by it); different action: ENTRY_CONFLICT."""
    rules: dict[str, Rule] = {}
    used: list[str] = []
    conflicts: list[EntryRejection] = []
    ordered = sorted(accepted, key=lambda ie: (ie[1].effective_at, ie[1].entry_id))
    for index, e in ordered:
        if not e.in_force(now):
            continue
        if e.action is EntryAction.STOP_PAGE:
            cname = stop_pages[e.stop_page].rstrip(".") + "."
        else:
            cname = _ACTION_RDATA[e.action]
        owners = [e.target] + (["*." + e.target] if e.match is Match.SUBDOMAINS else [])
        clash = next((rules[o] for o in owners if o in rules and rules[o].cname != cname), None)
        if clash is not None:
            conflicts.append(EntryRejection(e.entry_id, index, Reason.CONFLICT,
                                            f"{e.target} already has a different action from entry "
                                            f"{clash.entry_id}"))
            continue
        for o in owners:
            rules.setdefault(o, Rule(cname, e.order_ref, e.entry_id))
        used.append(e.entry_id)
    return rules, used, conflicts


def fill_wildcard_gaps(rules: MutableMapping[str, Rule], owners: Iterable[str] | None = None) -> int:
    """Add the owners that keep every name under a ``*.T`` rule covered (DESIGN.md section 5).

    DNS wildcard semantics (RFC 4592 section 2.2.2): a name that exists, even as an empty
    non-terminal, is never synthesized from a wildcard. So a rule at ``a.sub.bad.test`` beside
    ``*.bad.test`` makes ``sub.bad.test`` exist, and ``x.sub.bad.test`` and ``sub.bad.test`` escape.
    For every owner M on the path from each rule owner up to (not including) the nearest wildcard
    base T above it, add ``*.M`` (and ``M`` itself where it exists only as a non-terminal) with
    T's rule. Returns how many owners were added. ``owners``: only these need looking at (the
    others have no wildcard rule above them; default: all).
    """
    wild = {o[2:] for o in rules if o.startswith("*.")}
    if not wild:
        return 0
    added = 0
    for owner in list(rules if owners is None else owners):
        base = owner[2:] if owner.startswith("*.") else owner
        path = [base]
        rest = base
        while "." in rest:
            rest = rest.split(".", 1)[1]
            path.append(rest)
        for i, m in enumerate(path):
            cover = next((a for a in path[i + 1:] if a in wild), None)
            if cover is None:
                break
            src = rules["*." + cover]
            gap = Rule(src.cname, src.order_ref, src.entry_id, added=True)
            if "*." + m not in rules:
                rules["*." + m] = gap
                wild.add(m)
                added += 1
            if m not in rules and (i > 0 or owner.startswith("*.")):
                rules[m] = gap
                added += 1
    return added


def compile_zone(zone: str, serial: int, accepted: Iterable[tuple[int, Entry]], stop_pages: Mapping[str, str],
                 *, now: float, ttl: int = 60) -> Compiled:
    """RPZ zone text for the entries in force at ``now``, rules sorted by owner."""
    rules, used, conflicts = rules_for(accepted, stop_pages, now)
    gaps = fill_wildcard_gaps(rules)
    origin = zone.rstrip(".").lower() + "."
    out = io.StringIO()
    out.write(f"; compiled by hotline-edge feedsync from a takedown bundle\n$ORIGIN {origin}\n$TTL {ttl}\n"
              f"@ SOA ns.{origin} noc.{origin} {serial % 2**32} 3600 600 864000 {ttl}\n@ NS localhost.\n")
    w = out.write
    for owner in sorted(rules):
        r = rules[owner]
        w(f"{owner} CNAME {r.cname}\n{owner} TXT \"order={r.order_ref}\"\n")
    return Compiled(out.getvalue().encode("ascii"), rules, len(rules), tuple(used), tuple(conflicts), gaps)


def zone_records(zone: str, serial: int, rules: Mapping[str, Rule], owners: Iterable[str], ttl: int = 60
                 ) -> list[RecordTuple]:
    """The apex and the given owners of ``compile_zone``'s text as (owner wire, type, ttl, rdata wire),
    for rpz.compile_records (the same zone, without a text round trip)."""
    origin = zone.rstrip(".").lower() + "."
    origin_wire = _wire(origin)
    records: list[RecordTuple] = [
        (origin_wire, 6, ttl, _wire("ns." + origin) + _wire("noc." + origin)
         + b"".join(v.to_bytes(4, "big") for v in (serial % 2**32, 3600, 600, 864000, ttl))),
        (origin_wire, 2, ttl, _wire("localhost."))]
    cname_wire: dict[str, bytes] = {}
    for owner in owners:
        r = rules[owner]
        target = cname_wire.get(r.cname)
        if target is None:
            target = cname_wire[r.cname] = _wire(r.cname)
        ow = _wire(owner + "." + origin)
        txt = ("order=" + r.order_ref).encode("ascii")
        records.append((ow, 5, ttl, target))
        records.append((ow, 16, ttl, bytes((len(txt),)) + txt))
    return records


def owner_wire(zone: str, owner: str) -> bytes:
    """The absolute wire name of a rule owner (relative to ``zone``), as ``zone_records`` writes it."""
    return _wire(owner + "." + zone.rstrip(".").lower() + ".")


def _wire(name: str) -> bytes:
    """Wire form of an absolute, already validated lower-case name (``.`` is the root)."""
    if name == ".":
        return b"\x00"
    return b"".join(bytes((len(lab),)) + lab.encode("ascii") for lab in name.rstrip(".").split(".")) + b"\x00"

