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

import array
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

# ASCII classes as inclusive byte ranges (two vector operations per range over a whole column)
_TARGET_RANGES = ((ord("a"), ord("z")), (ord("0"), ord("9")), (ord("-"), ord(".")), (ord("_"), ord("_")))
_REF_RANGES = ((0x20, 0x21), (0x23, 0x5B), (0x5D, 0x7E))      # printable, without '"' and '\\'
_DIGIT = np.zeros(256, dtype=bool)
_DIGIT[ord("0"):ord("9") + 1] = True


_BEFORE_VALUE = frozenset(b"[,:")
_WHITESPACE = frozenset(b" \t\r\n")


def json_bools(data: bytes, limit: int = 10_000) -> bool:
    """Whether the JSON text ``data`` may hold a ``true`` or ``false`` value: an occurrence that
    follows ``[``, ``,`` or ``:`` (after whitespace). Words inside strings may answer True (a
    caution, never a miss); past ``limit`` occurrences the answer is True."""
    seen = 0
    for word in (b"true", b"false"):
        i = data.find(word)
        while i >= 0:
            seen += 1
            if seen > limit:
                return True
            j = i - 1
            while j >= 0 and data[j] in _WHITESPACE:
                j -= 1
            if j >= 0 and data[j] in _BEFORE_VALUE:
                return True
            i = data.find(word, i + 1)
    return False


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
    acode: npt.NDArray[np.int8]           # the action's code per row (_ACODE), -1 where not valid
    mcode: npt.NDArray[np.int8]           # the match's code per row (_MCODE)
    _parents: list[str] | None = None

    def parents(self) -> list[str]:
        """The parent of every row's target ("" for a single label), computed once."""
        if self._parents is None:
            self._parents = list(map(_TAIL, map(str.partition, self.target, repeat("."))))
        return self._parents

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
        self._parents = None
        self.acode[i] = _ACODE[e.action]
        self.mcode[i] = _MCODE[e.match]
        self.valid[i] = True

    def entries(self, rows: Sequence[int] | I64) -> Iterator[tuple[int, Entry]]:
        for i in (rows.tolist() if isinstance(rows, np.ndarray) else rows):
            yield i, self.entry(i)


def _plain(col: list[str]) -> tuple[list[str], str, Mask]:
    """The column with every value that is not ASCII or holds a newline blanked, the column joined
    into one text (each row followed by a newline, so newlines are exactly the row ends), and
    which rows were blanked."""
    n = len(col)
    odd = np.zeros(n, dtype=bool)
    if not all(map(str.isascii, col)):
        odd = np.fromiter((not s.isascii() for s in col), dtype=bool, count=n)
        col = [s if s.isascii() else "" for s in col]
    text = "\n".join(col) + "\n" if col else ""
    if text.count("\n") != n:
        nl = np.fromiter(("\n" in s for s in col), dtype=bool, count=n)
        odd |= nl
        col = ["" if s else v for s, v in zip(nl.tolist(), col, strict=True)]
        text = "\n".join(col) + "\n"
    return col, text, odd


def _lines(col: list[str], table: bytes) -> tuple[Mask, I64, I64, Mask]:
    """The column as one ASCII text, each row followed by a newline: per byte, whether ``table``
    (bytes.translate: 1 = not allowed) refuses it; each row's start and the position of its
    newline; rows that were not plain ASCII (blanked, see _plain)."""
    col, text, odd = _plain(col)
    wrong = np.frombuffer(text.encode("ascii").translate(table), dtype=bool)
    lens = np.fromiter(map(len, col), dtype=np.int64, count=len(col))
    ends = np.cumsum(lens + 1) - 1
    return wrong, ends - lens, ends, odd


def _refusing(ranges: tuple[tuple[int, int], ...]) -> bytes:
    """A bytes.translate table: 0 for the newline and the bytes in the inclusive ``ranges``, 1 for
    every other byte (one C pass over a whole column, far cheaper than numpy indexing)."""
    return bytes(0 if c == 10 or any(lo <= c <= hi for lo, hi in ranges) else 1 for c in range(256))


_TARGET_OK = _refusing(_TARGET_RANGES)
_REF_OK = _refusing(_REF_RANGES)


def _charset_bad(col: list[str], table: bytes, max_len: int) -> Mask:
    """Rows that are empty, longer than ``max_len`` or hold a character ``table`` refuses."""
    wrong, starts, ends, odd = _lines(col, table)
    lens = ends - starts
    bad: Mask = odd | (lens == 0) | (lens > max_len)
    if len(col):
        bad |= np.logical_or.reduceat(wrong, starts)   # no row's span is empty (its newline)
    return bad


def _target_bad(col: list[str]) -> Mask:
    """Rows that are not a canonical host name: lower-case LDH (and _) labels of 1-63 characters,
    not starting or ending with '-', none starting with 'rpz-', at least two, at most 253 characters
    in all (``normalize_target`` returns such a name unchanged; every other row goes to it)."""
    n = len(col)
    col, text, odd = _plain(col)
    blob = text.encode("ascii")
    wrong = np.frombuffer(blob.translate(_TARGET_OK), dtype=bool)
    lens = np.fromiter(map(len, col), dtype=np.int64, count=n)
    ends = np.cumsum(lens + 1) - 1
    starts = ends - lens
    bad: Mask = odd | (lens == 0) | (lens > 253)
    if not n:
        return bad
    # every row ends with its newline (and holds no other), so no row's span is empty
    bad |= np.logical_or.reduceat(wrong, starts)
    bad |= ~np.logical_or.reduceat(np.frombuffer(blob, dtype=np.uint8) == 46, starts)   # one dot at least
    # label faults, by neighbouring bytes (elementwise over the whole column, no per-label work):
    # an empty label, a label starting or ending with '-', a label starting with 'rpz-'
    u = np.frombuffer(blob, dtype=np.uint8)
    edge = np.empty(len(u) + 1, dtype=bool)     # a label boundary before each byte (or at the end)
    edge[0] = True
    np.logical_or(u == 46, u == 10, out=edge[1:])
    hy = u == 45
    fault = edge[:-1] & (edge[1:] | hy)               # empty label, or '-' first
    fault[:-1] |= hy[:-1] & edge[2:]                  # '-' last
    rpz = edge[:-4] & (u[:-3] == 114) & (u[1:-2] == 112) & (u[2:-1] == 122) & hy[3:]
    fault[:-3] |= rpz
    got = np.flatnonzero(fault)
    if len(got):
        bad[np.searchsorted(ends, got, side="left")] = True
    for k in np.flatnonzero((lens > 63) & ~bad).tolist():   # only a long row can hold a long label
        if max(map(len, col[k].split("."))) > 63:
            bad[k] = True
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


@dataclass(frozen=True, slots=True)
class Coded:
    """A ``/2`` encoded column kept encoded: ``values[index[i]]`` is row i's value. Checks run once
    per distinct value and their results are spread to the rows through ``index``."""

    values: list[Any]
    index: I64

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Any:
        return self.values[int(self.index[i])]

    def spread(self, per_value: list[Any]) -> list[Any]:
        """One value per row from one per distinct value."""
        if len(per_value) == 1:
            return per_value * len(self.index)
        return list(map(per_value.__getitem__, self.index.tolist()))


Column = list[Any] | Coded


def coded_columns(doc: dict[str, Any], source: str, exact_types: bool = True) -> tuple[int, dict[str, Column]]:
    """``bundle.bundle_columns`` with encoded columns left encoded (``Coded``): the same checks,
    the same errors, in the same order. ``exact_types=False`` promises that the document holds no
    JSON ``true``/``false`` (the caller looked at its bytes), so an index that numpy reads as
    integers is all integers and is checked as an array."""
    n = doc.get("count")
    columns = doc.get("columns")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0 or not isinstance(columns, dict):
        bf.bundle_columns(doc, source)   # raises its error
    assert isinstance(n, int) and isinstance(columns, dict)
    out: dict[str, Column] = {}
    for name, given in columns.items():
        if not isinstance(given, dict):
            if not isinstance(given, list) or len(given) != n:
                bf.bundle_columns({"count": n, "columns": {name: given}}, source)   # raises its error
            out[name] = given
            continue
        values, index = given.get("values"), given.get("index")
        idx = None
        if isinstance(values, list) and isinstance(index, list) and set(given) == {"values", "index"} \
                and not exact_types and index:
            try:   # C-level: refuses floats, text, lists and integers beyond 64 bits (bools: see above)
                arr = np.frombuffer(array.array("q", index), dtype=np.int64)
            except (ValueError, TypeError, OverflowError):
                arr = None
            if arr is not None and len(arr) == n and int(arr.min()) >= 0 and int(arr.max()) < len(values):
                idx = arr
        if idx is None:   # the reference decides (and words any error)
            _, one = bf.bundle_columns({"count": n, "columns": {name: given}}, source)
            idx = np.array(given["index"], dtype=np.int64) if n else np.zeros(0, dtype=np.int64)
            del one
        out[name] = Coded(list(values), idx)   # type: ignore[arg-type]
    return n, out


def _by_value(c: Column, check: Callable[[list[Any]], tuple[Mask, list[Any]]]) -> tuple[Mask, list[Any]]:
    """``check`` (-> rows to send to the reference, normalized values) over a column; over an
    encoded one, once per distinct value."""
    if isinstance(c, Coded):
        bad, out = check(c.values)
        return bad[c.index], c.spread(out)
    return check(c)


def _text_check(extra: Callable[[list[str]], Mask] | None = None, lower: bool = False
                ) -> Callable[[list[Any]], tuple[Mask, list[Any]]]:
    """A required text field: strings, stripped, not empty (and ``extra``'s shape check); the
    values kept are the stripped ones (lower-cased with ``lower``)."""
    def check(c: list[Any]) -> tuple[Mask, list[Any]]:
        slow = np.zeros(len(c), dtype=bool)
        if not set(map(type, c)) <= {str}:
            slow |= _where(c, lambda v: type(v) is not str)
            c = [v if type(v) is str else "" for v in c]
        s = list(map(str.strip, c))
        if "" in s:
            slow |= _where(s, lambda v: v == "")
        if extra is not None:
            slow |= extra(s)
        return slow, list(map(str.lower, s)) if lower else s
    return check


def _enum(c: Column, table: Mapping[str, Any], codes: Mapping[Any, int]
          ) -> tuple[Mask, list[Any], npt.NDArray[np.int8]]:
    """An enumerated field: rows to send to the reference, the member per row and its code."""
    def check(v: list[Any]) -> tuple[Mask, list[Any]]:
        slow, s = _text_check()(v)
        got = list(map(table.get, s))
        if None in got:
            slow |= _where(got, lambda x: x is None)
        return slow, got
    if isinstance(c, Coded):
        bad, got = check(c.values)
        return bad[c.index], c.spread(got), _codes(got, codes)[c.index]
    bad, got = check(c)
    return bad, got, _codes(got, codes)


def _stop_check(c: list[Any]) -> tuple[Mask, list[Any]]:
    slow = np.zeros(len(c), dtype=bool)
    kinds = set(map(type, c))
    if kinds <= {str}:
        return slow, list(map(str.strip, c))
    if not kinds <= {str, type(None)}:
        slow |= _where(c, lambda v: not (v is None or type(v) is str))
    return slow, [v.strip() if type(v) is str else "" for v in c]


def _retention_check(c: list[Any]) -> tuple[Mask, list[Any]]:
    if c and not (set(map(type, c)) <= {int} and min(c) >= 0):
        return _where(c, lambda v: not (type(v) is int and v >= 0)), c
    return np.zeros(len(c), dtype=bool), c


def parse_fields(n: int, col: Mapping[str, Column], slow: Mask, row: Callable[[int], Any]
                 ) -> tuple[EntryColumns, list[EntryRejection]]:
    """``parse_entry`` by column: ``col`` holds, per field, a list of ``n`` raw values or a
    ``Coded`` column (a field missing from it is absent from every entry), ``slow`` the rows known
    to need ``parse_entry`` (given the raw entry by ``row``)."""
    col = {f: col.get(f) or Coded([None], np.zeros(n, dtype=np.int64)) for f in bf.ALL_FIELDS}
    text: dict[str, list[Any]] = {}
    extra: dict[str, Callable[[list[str]], Mask]] = {
        "order_ref": lambda s: _charset_bad(s, _REF_OK, 128), "target": _target_bad}
    for name in bf.REQUIRED_TEXT:
        if name in ("match", "action"):
            continue
        bad, text[name] = _by_value(col[name], _text_check(extra.get(name), lower=name == "category"))
        slow |= bad
    bad, matches, mcode = _enum(col["match"], bf._MATCHES, _MCODE)
    slow |= bad
    bad, actions, acode = _enum(col["action"], bf._ACTIONS, _ACODE)
    slow |= bad
    bad, stop = _by_value(col["stop_page"], _stop_check)
    slow |= bad
    if (acode == _STOP).any():
        slow[[i for i in np.flatnonzero(acode == _STOP).tolist() if not stop[i]]] = True
    times = []
    for name in bf.TIME_FIELDS:
        c = col[name]
        t, bad = _times_of(c.values) if isinstance(c, Coded) else _times(c)
        if isinstance(c, Coded):
            t, bad = t[c.index], bad[c.index]
        slow |= bad
        times.append(t)
    bad, ret = _by_value(col["retention_days"], _retention_check)
    slow |= bad
    out = EntryColumns(n, ~slow, text["entry_id"], text["order_ref"], text["issuing_authority"],
                       text["legal_basis"], text["category"], text["target"], matches, actions, stop,
                       times[0], times[1], times[2], text["appeal_contact"], ret, acode, mcode)
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
    n, fields = coded_columns(doc, source, exact_types=json_bools(data))
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


def _rows_ending(col: list[str], tails: Sequence[str], whole: Sequence[str]) -> I64:
    """Rows that end with one of ``tails`` or equal one of ``whole`` (few of each), found by
    searching the column joined into one text instead of testing row by row."""
    if not col or not (tails or whole):
        return np.zeros(0, dtype=np.int64)
    text = "\n" + "\n".join(col) + "\n"
    lens = np.fromiter(map(len, col), dtype=np.int64, count=len(col))
    starts = np.empty(len(col), dtype=np.int64)     # of each row in text
    starts[0] = 1
    np.cumsum(lens[:-1] + 1, out=starts[1:])
    starts[1:] += 1
    hits: list[int] = []
    for needle, skip in [*((t + "\n", 0) for t in tails), *(("\n" + w + "\n", 1) for w in whole)]:
        i = text.find(needle)
        while i >= 0:
            hits.append(i + skip)       # a position inside the row
            i = text.find(needle, i + 1)
    rows: I64 = np.searchsorted(starts, np.asarray(hits, dtype=np.int64), side="right") - 1
    return np.unique(rows)


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
    everyone = len(lrows) == n
    targets = cols.target if everyone else [cols.target[i] for i in lrows.tolist()]
    if guards.is_public_suffix is not None:
        which = getattr(guards.is_public_suffix, "which", None)
        if which is not None:
            parents = cols.parents()
            hits = which(targets, parents if everyone else [parents[i] for i in lrows.tolist()])
        else:
            hits = [k for k, t in enumerate(targets) if guards.is_public_suffix(t)]
        flag[lrows[np.asarray(hits, dtype=np.int64)]] = True
    acode = cols.acode
    for i in np.flatnonzero(live & (acode == _STOP)).tolist():
        if cols.stop_page[i] not in guards.stop_pages:
            flag[i] = True
    prot = {p.rstrip(".").lower() for p in (*guards.protected, *guards.stop_pages.values())}
    if prot:
        # at or under a protected name (a PASSTHRU rule blocks nothing: check_entry passes it)
        # and a subdomains rule on a name above a protected one covers it
        above = {".".join(p.split(".")[k:]) for p in prot for k in range(p.count(".") + 1)}
        got = lrows[_rows_ending(targets, ["." + p for p in prot], sorted(above | prot))]
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
    every = len(rows) == cols.n    # every row in force (the common case): the columns as they are
    targets = list(T) if every else [T[i] for i in rows.tolist()]
    used = live.copy()
    conflicts: list[EntryRejection] = []
    shared: list[int] = []
    keep = rows
    bases = set(targets)
    if len(bases) < len(targets):
        counts = Counter(targets)
        multi = np.fromiter((counts[t] > 1 for t in targets), dtype=bool, count=len(rows))
        shared = rows[multi].tolist()
        keep = rows[~multi]
        every = False
        targets = [T[i] for i in keep.tolist()]
        bases = set(targets)
    kl = keep.tolist()
    acode = cols.acode[keep]
    by_code = np.array([_CNAME.get(a, "") for a in EntryAction] + [""], dtype=object)
    cname: list[str] = by_code[acode].tolist()     # code -1 (never in force) -> ""
    for k in np.flatnonzero(acode == _STOP).tolist():
        cname[k] = stop_pages[cols.stop_page[kl[k]]].rstrip(".") + "."
    refs = list(cols.order_ref) if every else [cols.order_ref[i] for i in kl]
    eids = list(cols.entry_id) if every else [cols.entry_id[i] for i in kl]
    sub = np.flatnonzero(cols.mcode[keep] == _MCODE[Match.SUBDOMAINS]).tolist()
    wild = [targets[k] for k in sub]
    owners = targets + ["*." + t for t in wild]
    cname += [cname[k] for k in sub]
    refs += [refs[k] for k in sub]
    eids += [eids[k] for k in sub]
    table = RuleTable(owners, cname, refs, eids, [False] * len(owners))
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
    gaps = fill_gaps(table, bases, wild_set, cols.parents())
    return CompiledRules(table, int(used.sum()), used, tuple(conflicts), gaps)


def fill_gaps(table: RuleTable, bases: set[str], wild: set[str], parents: Sequence[str] | None = None) -> int:
    """``bundle.fill_wildcard_gaps`` on the owners that have a wildcard rule above them (found
    through their distinct parent names); every other owner needs nothing. ``bases``: every owner
    without its ``*.``; ``wild``: the bases of the wildcard owners; ``parents``: names that include
    the parent of every base (more do no harm), when the caller has them already."""
    if not wild:
        return 0
    covered = set()
    if parents is None:
        parents = list(map(_TAIL, map(str.partition, bases, repeat("."))))
    for p in set(parents):
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
