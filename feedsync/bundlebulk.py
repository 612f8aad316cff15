"""A takedown bundle read, screened and compiled as columns: what feedsync does with a real bundle.

``feedsync.bundle`` defines what every entry means, one entry at a time (``parse_entry``,
``check_entry``, ``rules_for``, ``fill_wildcard_gaps``, ``compile_zone``): the reference. A
million-entry bundle cannot afford a Python function call and an object per entry per step, so
here each field is one list (or numpy array) and each check one pass over a column:

    parse_columns(doc entries)   shape of every entry (types, times, names, enums)
    screen_columns(...)          duplicates and the appliance's guards
    rule_table(...)              entries in force -> RPZ owners with their action and order
    RuleTable.compile(...)       the policy zone (rpz.bulk.compile_rule_columns) and its text

Each column check accepts only values for which the reference gives the same result without
doubt (canonical lower-case names, times written ``YYYY-MM-DDTHH:MM:SSZ``, ...). Every other row
goes through the reference function, so its result (and rejection reason) is the reference's by
construction; tests/unit/feedsync/test_bundle_bulk.py checks that both ways agree.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from . import bundle as bf
from .bundle import Entry, EntryAction, EntryRejection, Guards, Match, Reason, Rule
from .errors import BundleFormatError

_TAIL = itemgetter(2)   # of str.partition: the parent of a name
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]

# ASCII classes, as lookup tables over byte values
_TARGET_OK = np.zeros(256, dtype=bool)
for _c in b"abcdefghijklmnopqrstuvwxyz0123456789_-.":
    _TARGET_OK[_c] = True
_REF_OK = np.zeros(256, dtype=bool)
_REF_OK[0x20:0x7F] = True
_REF_OK[ord('"')] = False
_REF_OK[ord("\\")] = False
_DIGIT = np.zeros(256, dtype=bool)
_DIGIT[ord("0"):ord("9") + 1] = True


def load_document(data: bytes, source: str) -> Any:
    """The bundle's JSON. orjson when it accepts the document; the standard library otherwise, so
    what is accepted and every error message stay those of ``json`` (NaN, huge integers, ...)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:   # json decides (and words the error)
        pass
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleFormatError(source, f"not JSON: {exc}") from exc


# --- columns -------------------------------------------------------------------------------------

@dataclass(slots=True)
class EntryColumns:
    """Every entry of a document, one list per field with the normalized value ``parse_entry``
    gives; ``valid`` says which rows are well-formed entries (the others were rejected)."""

    n: int
    valid: Mask
    entry_id: list[str]
    order_ref: list[str]
    issuing_authority: list[str]
    legal_basis: list[str]
    category: list[str]
    target: list[str]
    match: list[Match | None]            # None in rows that are not valid
    action: list[EntryAction | None]
    stop_page: list[str]
    issued_at: I64
    effective_at: I64
    expires_at: I64
    appeal_contact: list[str]
    retention_days: list[int]

    def entry(self, i: int) -> Entry:
        """The entry of a valid row (as ``parse_entry`` returned it)."""
        match, action = self.match[i], self.action[i]
        if match is None or action is None:
            raise ValueError(f"entry #{i} was not well-formed")
        return Entry(self.entry_id[i], self.order_ref[i], self.issuing_authority[i], self.legal_basis[i],
                     self.category[i], self.target[i], match, action, self.stop_page[i],
                     int(self.issued_at[i]), int(self.effective_at[i]), int(self.expires_at[i]),
                     self.appeal_contact[i], self.retention_days[i])

    def set_entry(self, i: int, e: Entry) -> None:
        for name in Entry.__slots__:
            col = getattr(self, name)
            col[i] = getattr(e, name)
        self.valid[i] = True

    def entries(self, rows: Sequence[int] | I64) -> Iterator[tuple[int, Entry]]:
        for i in (rows.tolist() if isinstance(rows, np.ndarray) else rows):
            yield i, self.entry(i)


def _ascii(col: list[str]) -> tuple[list[str], Mask | None]:
    """The column with non-ASCII values blanked, and which those were (None: all ASCII)."""
    if all(map(str.isascii, col)):
        return col, None
    odd = np.fromiter((not s.isascii() for s in col), dtype=bool, count=len(col))
    return [s if s.isascii() else "" for s in col], odd


def _lines(col: list[str]) -> tuple[npt.NDArray[np.uint8], I64, I64, Mask]:
    """The column as one ASCII byte array, each row followed by a newline; each row's start and the
    position of its newline; rows that were not ASCII (blanked)."""
    col, odd = _ascii(col)
    a = np.frombuffer(("\n".join(col) + "\n").encode("ascii") if col else b"", dtype=np.uint8)
    lens = np.fromiter(map(len, col), dtype=np.int64, count=len(col))
    ends = np.cumsum(lens + 1) - 1
    return a, ends - lens, ends, (odd if odd is not None else np.zeros(len(col), dtype=bool))


def _rows_of(positions: I64, ends: I64) -> I64:
    """Row of each byte position (rows given by the positions of their newlines)."""
    out: I64 = np.searchsorted(ends, positions, side="left")
    return out


def _charset_bad(col: list[str], table: npt.NDArray[np.bool_], max_len: int) -> Mask:
    """Rows that are empty, longer than ``max_len`` or hold a character outside ``table``."""
    a, starts, ends, odd = _lines(col)
    lens = ends - starts
    bad: Mask = odd | (lens == 0) | (lens > max_len)
    ok = table[a]
    ok[ends] = True
    wrong = np.flatnonzero(~ok)
    if len(wrong):
        bad[_rows_of(wrong, ends)] = True
    return bad


def _target_bad(col: list[str]) -> Mask:
    """Rows that are not a canonical host name: lower-case LDH (and _) labels of 1-63 characters,
    not starting or ending with '-', none starting with 'rpz-', at least two, at most 253 characters
    in all (``normalize_target`` returns such a name unchanged; every other row goes to it)."""
    n = len(col)
    a, starts, ends, odd = _lines(col)
    lens = ends - starts
    bad: Mask = odd | (lens == 0) | (lens > 253)
    ok = _TARGET_OK[a]
    ok[ends] = True
    wrong = np.flatnonzero(~ok)
    if len(wrong):
        bad[_rows_of(wrong, ends)] = True
    dots = np.flatnonzero(a == 46)
    dot_rows = _rows_of(dots, ends)
    bad |= np.bincount(dot_rows, minlength=n)[:n] == 0
    bounds = np.flatnonzero((a == 46) | (a == 10))
    lab_start = np.concatenate([starts, dots + 1])
    lab_row = np.concatenate([np.arange(n), dot_rows])
    lab_end = bounds[np.searchsorted(bounds, lab_start, side="left")]
    size = lab_end - lab_start
    lb = (size < 1) | (size > 63)
    good = np.flatnonzero(~lb)
    s0, e0 = lab_start[good], lab_end[good]
    edge = (a[s0] == 45) | (a[e0 - 1] == 45)
    four = size[good] >= 4
    s4 = s0[four]
    edge[np.flatnonzero(four)[(a[s4] == 114) & (a[s4 + 1] == 112) & (a[s4 + 2] == 122) & (a[s4 + 3] == 45)]] = True
    lb[good[edge]] = True
    if lb.any():
        bad[lab_row[lb]] = True
    return bad


def _days_from_civil(y: I64, m: I64, d: I64) -> I64:
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    out: I64 = era * 146097 + doe - 719468
    return out


_DIM = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def _times(col: list[Any]) -> tuple[I64, Mask]:
    """Epoch seconds of ``YYYY-MM-DDTHH:MM:SSZ`` values and the rows not in exactly that form (or
    not a valid calendar time): those go to ``parse_time``. A column of few distinct values (orders
    issued together) is read once per value."""
    n = len(col)
    try:
        distinct = list(dict.fromkeys(col))
    except TypeError:   # an unhashable value (a list): not a time, and no shortcut
        distinct = col
    if len(distinct) * 4 <= n:
        t, bad = _times_of(distinct)
        pos = np.fromiter(map(dict(zip(distinct, range(len(distinct)), strict=True)).__getitem__, col),
                          dtype=np.int64, count=n)
        return t[pos], bad[pos]
    return _times_of(col)


def _times_of(col: list[Any]) -> tuple[I64, Mask]:
    n = len(col)
    out = np.zeros(n, dtype=np.int64)
    if set(map(type, col)) <= {str}:
        bad = np.fromiter(map(len, col), dtype=np.int64, count=n) != 20
    else:
        bad = _where(col, lambda v: type(v) is not str or len(v) != 20)
    good = np.flatnonzero(~bad)
    if not len(good):
        return out, bad
    texts = col if len(good) == n else [col[i] for i in good.tolist()]
    try:
        blob = "".join(texts).encode("ascii")
    except UnicodeEncodeError:
        blob = "".join(t if t.isascii() else "?" * 20 for t in texts).encode("ascii")
    m = np.frombuffer(blob, dtype=np.uint8).reshape(-1, 20)
    digits = m[:, [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]]
    shape = (_DIGIT[digits].all(axis=1) & (m[:, 4] == 45) & (m[:, 7] == 45) & (m[:, 10] == 84)
             & (m[:, 13] == 58) & (m[:, 16] == 58) & (m[:, 19] == 90))
    v = digits.astype(np.int64) - 48
    y = v[:, 0] * 1000 + v[:, 1] * 100 + v[:, 2] * 10 + v[:, 3]
    mo = v[:, 4] * 10 + v[:, 5]
    d = v[:, 6] * 10 + v[:, 7]
    hh = v[:, 8] * 10 + v[:, 9]
    mi = v[:, 10] * 10 + v[:, 11]
    ss = v[:, 12] * 10 + v[:, 13]
    mo_c = np.clip(mo, 1, 12)
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    dim = _DIM[mo_c] + ((mo_c == 2) & leap)
    shape &= (y >= 1) & (mo >= 1) & (mo <= 12) & (d >= 1) & (d <= dim) & (hh <= 23) & (mi <= 59) & (ss <= 59)
    epoch = _days_from_civil(y, mo_c, d) * 86400 + hh * 3600 + mi * 60 + ss
    out[good] = epoch
    bad[good[~shape]] = True
    return out, bad


def _where(col: list[Any], pred: Callable[[Any], bool]) -> Mask:
    return np.fromiter(map(pred, col), dtype=bool, count=len(col))


def parse_columns(raw: list[Any]) -> tuple[EntryColumns, list[EntryRejection]]:
    """``parse_entry`` for every element of a ``/1`` document's ``entries`` list, by column."""
    n = len(raw)
    slow = np.zeros(n, dtype=bool)
    cols: dict[str, list[Any]] = {}
    if set(map(type, raw)) <= {dict}:
        for f in bf.ALL_FIELDS:
            try:
                cols[f] = list(map(itemgetter(f), raw))
            except KeyError:
                cols[f] = [e.get(f) for e in raw]
    else:
        cols = {f: [e.get(f) if type(e) is dict else None for e in raw] for f in bf.ALL_FIELDS}
        slow |= _where(raw, lambda e: type(e) is not dict)
    return parse_fields(n, cols, slow, raw.__getitem__)


def parse_fields(n: int, col: Mapping[str, list[Any]], slow: Mask, row: Callable[[int], Any]
                 ) -> tuple[EntryColumns, list[EntryRejection]]:
    """``parse_entry`` by column: ``col`` holds one list of ``n`` raw values per field (a field
    missing from it is absent from every entry), ``slow`` the rows known to need ``parse_entry``
    (given the raw entry by ``row``)."""
    col = {f: col.get(f) or [None] * n for f in bf.ALL_FIELDS}
    text: dict[str, list[str]] = {}
    for name in bf.REQUIRED_TEXT:
        c = col[name]
        if not set(map(type, c)) <= {str}:
            slow |= _where(c, lambda v: type(v) is not str)
            c = [v if type(v) is str else "" for v in c]
        s = list(map(str.strip, c))
        if "" in s:
            slow |= _where(s, lambda v: v == "")
        text[name] = s
    slow |= _charset_bad(text["order_ref"], _REF_OK, 128)
    slow |= _target_bad(text["target"])
    matches = list(map(bf._MATCHES.get, text["match"]))
    actions = list(map(bf._ACTIONS.get, text["action"]))
    if None in matches:
        slow |= _where(matches, lambda v: v is None)
    if None in actions:
        slow |= _where(actions, lambda v: v is None)
    sp = col["stop_page"]
    kinds = set(map(type, sp))
    if kinds <= {str}:
        stop = list(map(str.strip, sp))
    else:
        if not kinds <= {str, type(None)}:
            slow |= _where(sp, lambda v: not (v is None or type(v) is str))
        stop = [v.strip() if type(v) is str else "" for v in sp]
    if EntryAction.STOP_PAGE in actions:
        slow[[i for i, (a, p) in enumerate(zip(actions, stop, strict=True))
              if a is EntryAction.STOP_PAGE and not p]] = True
    times = []
    for name in bf.TIME_FIELDS:
        t, bad = _times(col[name])
        slow |= bad
        times.append(t)
    ret = col["retention_days"]
    if n and not (set(map(type, ret)) <= {int} and min(ret) >= 0):
        slow |= _where(ret, lambda v: not (type(v) is int and v >= 0))
    out = EntryColumns(n, ~slow, text["entry_id"], text["order_ref"], text["issuing_authority"],
                       text["legal_basis"], list(map(str.lower, text["category"])), text["target"],
                       matches, actions, stop, times[0], times[1], times[2], text["appeal_contact"], ret)
    rejected: list[EntryRejection] = []
    for i in np.flatnonzero(slow).tolist():
        e = bf.parse_entry(row(i), i)
        if isinstance(e, EntryRejection):
            rejected.append(e)
        else:
            out.set_entry(i, e)
    return out, rejected


def read_bundle(data: bytes, source: str = "<bundle>") -> tuple[bf.BundleHeader, EntryColumns, list[EntryRejection]]:
    """``parse_bundle`` by columns: the header (BundleFormatError when it is not a bundle), the
    entries and the rejections of malformed ones."""
    doc = load_document(data, source)
    head = bf.bundle_header(doc, source)
    if doc["format"] == bf.FORMAT:
        cols, rejected = parse_columns(doc["entries"])
        return head, cols, rejected
    n, fields = bf.bundle_columns(doc, source)
    del doc
    cols, rejected = parse_fields(n, fields, np.zeros(n, dtype=bool),
                                  lambda i: {name: c[i] for name, c in fields.items()})
    return head, cols, rejected


# --- guards --------------------------------------------------------------------------------------

def out_of_scope(cols: EntryColumns, categories: Sequence[str], authorities: Sequence[str]) -> str | None:
    """``bundle.out_of_scope`` over the valid rows, in document order."""
    cats = {c.lower() for c in categories}
    auths = set(authorities)
    rows = np.flatnonzero(cols.valid)
    bad_c = cats and not {cols.category[i] for i in rows.tolist()} <= cats
    bad_a = auths and not {cols.issuing_authority[i] for i in rows.tolist()} <= auths
    if not (bad_c or bad_a):
        return None
    return bf.out_of_scope((e for _, e in cols.entries(rows)), categories, authorities)


@dataclass(frozen=True, slots=True)
class ScreenedColumns:
    accepted: Mask                       # rows that passed every check
    rejected: tuple[EntryRejection, ...]  # parse and guard rejections, by position


_ACODE: dict[EntryAction | None, int] = {None: -1, **{a: k for k, a in enumerate(EntryAction)}}
_STOP, _PASS = _ACODE[EntryAction.STOP_PAGE], _ACODE[EntryAction.PASSTHRU]
_MCODE: dict[Match | None, int] = {None: -1, Match.EXACT: 0, Match.SUBDOMAINS: 1}


def _codes(values: list[Any], codes: Mapping[Any, int]) -> npt.NDArray[np.int8]:
    return np.fromiter(map(codes.__getitem__, values), dtype=np.int8, count=len(values))


def screen_columns(cols: EntryColumns, rejected: list[EntryRejection], guards: Guards) -> ScreenedColumns:
    """``bundle.screen``: the duplicate-id rule, then ``check_entry``'s guards, by column. Rows
    that any column check flags are decided by ``check_entry`` itself (exact reasons)."""
    n = cols.n
    valid = cols.valid
    rows = np.flatnonzero(valid)
    bad = list(rejected)
    dup = np.zeros(n, dtype=bool)
    ids = cols.entry_id if len(rows) == n else [cols.entry_id[i] for i in rows.tolist()]
    if len(set(ids)) < len(ids):
        seen: set[str] = set()
        for i in rows.tolist():
            eid = cols.entry_id[i]
            if eid in seen:
                dup[i] = True
                bad.append(EntryRejection(eid, i, Reason.DUPLICATE, "entry_id used twice in this version"))
            else:
                seen.add(eid)
    live = valid & ~dup
    iss, eff, exp = cols.issued_at, cols.effective_at, cols.expires_at
    flag = live & ((exp <= eff) | (eff < iss) | (exp - eff > guards.max_duration_s))
    lrows = np.flatnonzero(live)
    targets = cols.target if len(lrows) == n else [cols.target[i] for i in lrows.tolist()]
    if guards.is_public_suffix is not None:
        which = getattr(guards.is_public_suffix, "which", None)
        hits = which(targets) if which is not None else [k for k, t in enumerate(targets) if guards.is_public_suffix(t)]
        flag[lrows[np.asarray(hits, dtype=np.int64)]] = True
    acode = _codes(cols.action, _ACODE)
    for i in np.flatnonzero(live & (acode == _STOP)).tolist():
        if cols.stop_page[i] not in guards.stop_pages:
            flag[i] = True
    prot = {p.rstrip(".").lower() for p in (*guards.protected, *guards.stop_pages.values())}
    if prot:
        # at or under a protected name (a PASSTHRU rule blocks nothing: check_entry passes it)
        tails = tuple("." + p for p in prot)
        near = [k for k, t in enumerate(targets) if t.endswith(tails)] + \
            [k for k, t in enumerate(targets) if t in prot]
        # a subdomains rule on a name above a protected one covers it
        above = {".".join(p.split(".")[k:]) for p in prot for k in range(p.count(".") + 1)}
        if set(targets) & above:
            near += [k for k, t in enumerate(targets) if t in above]
        got = lrows[np.asarray(near, dtype=np.int64)]
        flag[got[acode[got] != _PASS]] = True
    accepted = live.copy()
    for i in np.flatnonzero(flag).tolist():
        why = bf.check_entry(cols.entry(i), i, guards)
        if why is not None:
            accepted[i] = False
            bad.append(why)
    bad.sort(key=lambda r: r.index)
    return ScreenedColumns(accepted, tuple(bad))


# --- rules ---------------------------------------------------------------------------------------

_CNAME = {EntryAction.NXDOMAIN: ".", EntryAction.NODATA: "*.", EntryAction.PASSTHRU: "rpz-passthru."}


@dataclass(slots=True)
class RuleTable(MutableMapping[str, Rule]):
    """The RPZ owners of a compiled bundle (relative names, ``*.`` for wildcards), one list per
    field; a read-only mapping owner -> ``bundle.Rule`` for the code that wants one at a time."""

    owners: list[str]
    cname: list[str]
    order_ref: list[str]
    entry_id: list[str]
    added: list[bool]
    _row: dict[str, int] | None = field(default=None, repr=False)

    def _rows(self) -> dict[str, int]:
        if self._row is None:
            self._row = dict(zip(self.owners, range(len(self.owners)), strict=True))
        return self._row

    def __getitem__(self, owner: str) -> Rule:
        i = self._rows()[owner]
        return Rule(self.cname[i], self.order_ref[i], self.entry_id[i], self.added[i])

    def __contains__(self, owner: object) -> bool:
        return owner in self._rows()

    def __iter__(self) -> Iterator[str]:
        return iter(self.owners)

    def __len__(self) -> int:
        return len(self.owners)

    def __delitem__(self, owner: str) -> None:
        raise TypeError("rules are not removed from a compiled table")

    def __setitem__(self, owner: str, rule: Rule) -> None:
        """Add an owner (``fill_wildcard_gaps`` does; replacing one is not needed and refused)."""
        rows = self._rows()
        if owner in rows:
            raise KeyError(f"{owner} is already a rule owner")
        rows[owner] = len(self.owners)
        self.owners.append(owner)
        self.cname.append(rule.cname)
        self.order_ref.append(rule.order_ref)
        self.entry_id.append(rule.entry_id)
        self.added.append(rule.added)

    def compile(self, zone: str, serial: int, ttl: int, source: str) -> Any:
        """The policy zone as rpz compiles it (``compile_records(zone_records(...))`` of every
        owner, without building the records)."""
        from rpz.bulk import compile_rule_columns
        head = bf.zone_records(zone, serial, {}, (), ttl)
        targets = list(dict.fromkeys(self.cname))
        tix = {c: k for k, c in enumerate(targets)}
        return compile_rule_columns(bf._wire(zone.rstrip(".").lower() + "."), head, self.owners,
                                    list(map(tix.__getitem__, self.cname)), [bf._wire(c) for c in targets],
                                    ttl, list(map(str.encode, self.order_ref)), source)

    def text(self, zone: str, serial: int, ttl: int) -> bytes:
        """``compile_zone``'s text: header, then the owners sorted."""
        origin = zone.rstrip(".").lower() + "."
        head = (f"; compiled by hotline-edge feedsync from a takedown bundle\n$ORIGIN {origin}\n$TTL {ttl}\n"
                f"@ SOA ns.{origin} noc.{origin} {serial % 2**32} 3600 600 864000 {ttl}\n@ NS localhost.\n")
        order = sorted(range(len(self.owners)), key=self.owners.__getitem__)
        o, c, r = self.owners, self.cname, self.order_ref
        body = "".join([f'{o[i]} CNAME {c[i]}\n{o[i]} TXT "order={r[i]}"\n' for i in order])
        return (head + body).encode("ascii")


@dataclass(frozen=True, slots=True)
class CompiledRules:
    rules: RuleTable
    in_force: int                          # entries enforced by the rules
    used: Mask                             # which rows those are
    conflicts: tuple[EntryRejection, ...]
    gap_names: int


def rule_table(cols: EntryColumns, accepted: Mask, stop_pages: Mapping[str, str], now: float) -> CompiledRules:
    """``bundle.rules_for`` and ``fill_wildcard_gaps`` by column. Entries with a target no other
    entry in force shares are independent; the few that share one are decided in the reference's
    order (effective_at, entry_id) by the same rule: same action, the earliest order stays; a
    different action, ENTRY_CONFLICT."""
    live = accepted & (cols.effective_at <= now) & (now < cols.expires_at)
    rows = np.flatnonzero(live)
    T = cols.target
    targets = [T[i] for i in rows.tolist()]
    used = live.copy()
    conflicts: list[EntryRejection] = []
    shared: list[int] = []
    keep = rows
    if len(set(targets)) < len(targets):
        counts = Counter(targets)
        multi = np.fromiter((counts[t] > 1 for t in targets), dtype=bool, count=len(rows))
        shared = rows[multi].tolist()
        keep = rows[~multi]
        targets = [T[i] for i in keep.tolist()]
    kl = keep.tolist()
    acode = _codes(cols.action, _ACODE)[keep]
    by_code = [_CNAME.get(a, "") for a in EntryAction]
    cname = [by_code[a] for a in acode.tolist()]
    for k in np.flatnonzero(acode == _STOP).tolist():
        cname[k] = stop_pages[cols.stop_page[kl[k]]].rstrip(".") + "."
    refs = [cols.order_ref[i] for i in kl]
    eids = [cols.entry_id[i] for i in kl]
    sub = np.flatnonzero(_codes(cols.match, _MCODE)[keep] == _MCODE[Match.SUBDOMAINS]).tolist()
    wild = [targets[k] for k in sub]
    owners = targets + ["*." + t for t in wild]
    cname += [cname[k] for k in sub]
    refs += [refs[k] for k in sub]
    eids += [eids[k] for k in sub]
    table = RuleTable(owners, cname, refs, eids, [False] * len(owners))
    bases = set(targets)
    wild_set = set(wild)
    if shared:
        ordered = sorted(shared, key=lambda i: (int(cols.effective_at[i]), cols.entry_id[i]))
        got, _, clash = bf.rules_for(((i, cols.entry(i)) for i in ordered), stop_pages, now)
        for r in clash:
            used[r.index] = False
        conflicts.extend(clash)
        for o, rule in got.items():
            table[o] = rule
            base = o[2:] if o.startswith("*.") else o
            bases.add(base)
            if o.startswith("*."):
                wild_set.add(base)
    gaps = fill_gaps(table, bases, wild_set)
    return CompiledRules(table, int(used.sum()), used, tuple(conflicts), gaps)


def fill_gaps(table: RuleTable, bases: set[str], wild: set[str]) -> int:
    """``bundle.fill_wildcard_gaps`` on the owners that have a wildcard rule above them (found
    through their distinct parent names); every other owner needs nothing. ``bases``: every owner
    without its ``*.``; ``wild``: the bases of the wildcard owners."""
    if not wild:
        return 0
    covered = set()
    for p in set(map(_TAIL, map(str.partition, bases, repeat(".")))):
        q = p
        while q:
            if q in wild:
                covered.add(p)
                break
            q = q.partition(".")[2]
    if not covered:
        return 0
    todo = [o for o in table.owners if (o[2:] if o.startswith("*.") else o).partition(".")[2] in covered]
    return bf.fill_wildcard_gaps(table, todo)


def accepted_rows(cols: EntryColumns, mask: Mask) -> Callable[[], Iterator[tuple[int, Entry]]]:
    rows = np.flatnonzero(mask)
    return lambda: cols.entries(rows)
