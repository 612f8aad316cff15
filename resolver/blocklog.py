"""The blocked-lookup log store: the ONE module that owns its SQLite schema (WAL, explicit migrations).

``<state_dir>/blocklog.sqlite`` holds, per node:

    segments   one row per committed batch (schema 2): its first seq, count, live records, times,
               the data key its addresses are sealed with (itself sealed to the compliance key;
               blocklog_seal), and the records by column: ``times`` (int64 LE), ``tpls`` (uint32 LE
               template ids, PURGED once purged), ``addrs`` (ADDR_W bytes each under one ChaCha20
               keystream), ``leaves`` (32-byte leaf digest each), the ``root`` (SHA-256 of the leaves),
               ``key_digest`` (schema 3: SHA-256 of the sealed data key, kept when a purge drops the
               key) and the segment's ``link``
    templates  what records of one name, type and transport under one rule share, with its digest
    contexts   what hits of one rule of one zone version share: node, zone, serial, trigger, rule
               owner, action, order_ref
    hits       schema 1: one row per record written before segments (seq, time, qname, qtype,
               transport, context, batch, sealed address, link); ``batches`` their batches
    chain      the newest head (seq, link), committed with every batch; ``segment_anchor`` the head
               of the rows when the log moved to segments (the first segment continues from it)
    gaps       what purges removed: per run of purged records its seq range (for rows also the link
               of its last record, so what remains still verifies; a gap without a purge is a break)
    daily      aggregates without personal data: hits per day per order per node (per zone, action)
    holds      legal holds: order_ref and/or time window, reason, until, who, released
    audit      hash-chained events: purges, holds, exports, queue drops (rpz.hashchain)

Segment chain: ``leaf = SHA-256(seq u64 LE || time_ms i64 LE || template digest || address
ciphertext)``, ``link_s = SHA-256(link_{s-1} || SHA-256(leaves of s) || key_digest_s)``, the key
digest left out for segments written before schema 3; a purged record keeps its leaf. Rows
(schema 1): ``link_seq = SHA-256(link_{seq-1} || SHA-256(payload_seq))`` with ``payload`` the
canonical JSON array written by ``payload()``. Every write, purge, hold and export is one
transaction together with its audit record (STYLE.md habit 12). Time is always passed in.

    store = BlocklogStore("/var/lib/hotline-edge/blocklog.sqlite", node="edge-1")
    store.write_batch(records, now_ms=..., public_key=pk)     # or write_columns(Columns(...), ...)
    store.verify().ok
    store.purge(now_ms=..., retention_days=lambda zone: 180, actor="cli:root")
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _jstr
from typing import Any

import numpy as np
import sqlite_utils

from rpz import hashchain
from rpz.sqlitetx import immediate

from .blocklog_seal import ADDR_W, blob, blob2, pack_address, seal_column
from .errors import BlocklogError, HoldError

DAY_MS = 86_400_000
TABLES_KEPT = 16     # connections' template tables whose index -> template maps a store keeps
TEMPLATES_KEPT = 1_000_000   # templates a writing store remembers (ids, digests, groups) before it starts again
# one hit as the data plane hands it over: (time_ms, ip, port, templates, transport), where a
# template is resolver.synth.HitTemplate: (qname, qtype, zone, serial, trigger, rule_owner, action, order_ref)
Template = tuple[str, int, str, int, str, str, str, str | None]
Raw = tuple[int, str, int, tuple[Template, ...], str]
Progress = Callable[[int, int], None]


def _m1(db: sqlite_utils.Database) -> None:
    db.table("contexts").create({"id": int, "canon": str, "node": str, "zone": str, "serial": int, "trigger": str,
                                 "rule_owner": str, "action": str, "order_ref": str}, pk="id",
                                not_null={"canon", "node", "zone", "serial", "trigger", "rule_owner", "action"})
    db.table("contexts").create_index(["canon"], unique=True)
    db.table("contexts").create_index(["order_ref"])
    db.table("batches").create({"id": int, "first_seq": int, "last_seq": int, "records": int, "min_time_ms": int,
                                "max_time_ms": int, "committed_ms": int, "head": bytes, "sealed_key": bytes}, pk="id",
                               not_null={"first_seq", "last_seq", "records", "min_time_ms", "max_time_ms",
                                         "committed_ms", "head"})
    db.table("hits").create({"seq": int, "time_ms": int, "ctx": int, "qname": str, "qtype": int, "transport": str,
                             "batch": int, "client": bytes, "link": bytes}, pk="seq",
                            not_null={"time_ms", "ctx", "qname", "qtype", "transport", "batch", "link"})
    db.table("hits").create_index(["ctx"])
    db.table("chain").create({"id": int, "seq": int, "link": bytes}, pk="id", not_null={"seq", "link"})
    db.table("gaps").create({"last_seq": int, "first_seq": int, "records": int, "link": bytes, "audit": int},
                            pk="last_seq", not_null={"first_seq", "records", "link"})
    db.table("daily").create({"day": str, "node": str, "order_ref": str, "zone": str, "action": str, "hits": int,
                              "first_ms": int, "last_ms": int}, pk=("day", "node", "order_ref", "zone", "action"),
                             not_null={"hits", "first_ms", "last_ms"})
    db.table("daily").create_index(["order_ref", "day"])
    db.table("holds").create({"id": int, "order_ref": str, "start_ms": int, "end_ms": int, "reason": str,
                              "until_ms": int, "created_by": str, "created_ms": int, "released_by": str,
                              "released_ms": int}, pk="id", not_null={"reason", "until_ms", "created_by", "created_ms"})
    db.table("audit").create({"id": int, "at_ms": int, "kind": str, "payload": bytes, "link": bytes}, pk="id",
                             not_null={"at_ms", "kind", "payload", "link"})


def _m2(db: sqlite_utils.Database) -> None:
    """Segments: one row per batch, the records stored by column (second amendment of decision 0004).
    The records written as rows so far stay where they are; the segment chain continues from their
    head, which ``segment_anchor`` keeps."""
    db.table("templates").create({"id": int, "ctx": int, "qname": str, "qtype": int, "transport": str,
                                  "digest": bytes}, pk="id",
                                 not_null={"ctx", "qname", "qtype", "transport", "digest"})
    db.table("templates").create_index(["ctx", "qname", "qtype", "transport"], unique=True)
    db.table("segments").create({"id": int, "first_seq": int, "count": int, "live": int, "min_time_ms": int,
                                 "max_time_ms": int, "committed_ms": int, "sealed_key": bytes, "times": bytes,
                                 "tpls": bytes, "addrs": bytes, "leaves": bytes, "root": bytes, "link": bytes},
                                pk="id", not_null={"first_seq", "count", "live", "min_time_ms", "max_time_ms",
                                                   "committed_ms", "root", "link"})
    db.table("segments").create_index(["first_seq"], unique=True)
    db.table("segments").create_index(["min_time_ms"])
    db.table("segment_anchor").create({"id": int, "seq": int, "link": bytes}, pk="id", not_null={"seq", "link"})
    row = db.execute("SELECT seq, link FROM chain WHERE id = 1").fetchone()
    db.execute("INSERT INTO segment_anchor (id, seq, link) VALUES (1, ?, ?)",
               (row[0], row[1]) if row else (0, hashchain.GENESIS))


def _m3(db: sqlite_utils.Database) -> None:
    """The sealed data key in the chain: a segment written from now on keeps ``key_digest``
    (SHA-256 of its sealed data key, or of nothing when it has none), which its link covers, so a
    swapped or removed key shows in ``log verify``. Segments written before keep NULL and their
    old link (fifth amendment of decision 0004)."""
    db.table("segments").add_column("key_digest", bytes)


# Explicit, numbered migrations (sqlite-utils), recorded in PRAGMA user_version. Append, never edit.
MIGRATIONS: tuple[Callable[[sqlite_utils.Database], None], ...] = (_m1, _m2, _m3)

# A new log's page size. A segment's columns (~64 bytes a record) fill overflow pages, and every
# page is written twice (WAL frame, then checkpoint), with a system call each: at 16 KiB a batch
# costs the writer ~30 % less CPU in its commit than at SQLite's 4 KiB (BENCHMARKS.md, issue 5).
# Larger pages cost more again: the few b-tree pages every commit touches are written whole.
PAGE_SIZE = 16384

PURGED = 0xFFFF_FFFF      # template id of a purged record in a segment (its leaf digest stays)
LEAF_W = 8 + 8 + 32 + ADDR_W   # seq (u64 LE), time_ms (i64 LE), template digest, address ciphertext


@dataclass(frozen=True, slots=True)
class Columns:
    """Records by column, the writer's input (``BlocklogStore.write_columns``): per record its time
    (UTC ms), its template (an index into ``templates``), its transport (1 for tcp, 0 for udp; None:
    all udp) and its client address slot (``blocklog_seal.pack_address``, ADDR_W bytes a row).

    ``stable``: ``templates`` is a connection's table, the same list object batch after batch, only
    ever appended to (never changed at an index). The store then remembers which of its templates
    each index is, and a batch's templates cost it nothing per record or per template."""

    times: np.ndarray                 # int64, n
    tpl: np.ndarray                   # int64 (or any integer), n: index into templates
    tcp: np.ndarray | None            # uint8, n; None: all udp
    addrs: np.ndarray                 # uint8, (n, ADDR_W)
    templates: Sequence[Template]
    stable: bool = False

    def __len__(self) -> int:
        return len(self.times)

    def part(self, start: int, end: int) -> Columns:
        return Columns(self.times[start:end], self.tpl[start:end], None if self.tcp is None else self.tcp[start:end],
                       self.addrs[start:end], self.templates, self.stable)

    @staticmethod
    def concat(parts: Sequence[Columns]) -> Columns:
        """One Columns of several (their template lists appended, indices moved)."""
        if len(parts) == 1:
            return parts[0]
        tcp = None
        if any(p.tcp is not None for p in parts):
            tcp = np.concatenate([p.tcp if p.tcp is not None else np.zeros(len(p), np.uint8) for p in parts])
        if all(p.templates is parts[0].templates for p in parts):     # one connection's table: as it is
            return Columns(np.concatenate([p.times for p in parts]), np.concatenate([p.tpl for p in parts]), tcp,
                           np.concatenate([p.addrs for p in parts]), parts[0].templates,
                           all(p.stable for p in parts))
        templates: list[Template] = []
        offsets: dict[int, int] = {}         # parts often share one list (one connection's table)
        tpl = []
        for p in parts:
            at = offsets.get(id(p.templates))
            if at is None:
                at = offsets[id(p.templates)] = len(templates)
                templates.extend(p.templates)
            tpl.append(np.asarray(p.tpl, dtype=np.int64) + at)
        return Columns(np.concatenate([p.times for p in parts]), np.concatenate(tpl), tcp,
                       np.concatenate([p.addrs for p in parts]), templates)


def columns_from_raws(raws: Sequence[Raw]) -> Columns:
    """The records of ``raws`` (one per template of each) as Columns. ValueError naming a record
    whose address is not an IP address and port, or whose transport is neither udp nor tcp."""
    times: list[int] = []
    tpl: list[int] = []
    tcp: list[int] = []
    addrs = bytearray()
    templates: list[Template] = []
    index: dict[Template, int] = {}
    slots: dict[tuple[str, int], bytes] = {}
    for t_ms, ip, port, tpls, transport in raws:
        slot = slots.get((ip, port))
        if slot is None:
            slot = slots[(ip, port)] = pack_address(ip, port)
        if transport not in ("udp", "tcp"):
            raise ValueError(f"transport {transport!r:.20} is neither udp nor tcp")
        for t in tpls:
            k = index.get(t)
            if k is None:
                k = index[t] = len(templates)
                templates.append(t)
            times.append(t_ms)
            tpl.append(k)
            tcp.append(transport == "tcp")
            addrs += slot
    return Columns(np.array(times, dtype=np.int64), np.array(tpl, dtype=np.int64),
                   np.array(tcp, dtype=np.uint8) if any(tcp) else None,
                   np.frombuffer(bytes(addrs), dtype=np.uint8).reshape(-1, ADDR_W), templates)


@dataclass(frozen=True, slots=True)
class Hold:
    id: int
    order_ref: str | None
    start_ms: int | None
    end_ms: int | None
    reason: str
    until_ms: int
    created_by: str
    created_ms: int
    released_by: str | None = None
    released_ms: int | None = None

    def active(self, now_ms: int) -> bool:
        return self.released_ms is None and now_ms < self.until_ms

    def covers(self, order_ref: str | None, time_ms: int) -> bool:
        if self.order_ref is not None and self.order_ref != order_ref:
            return False
        return self.start_ms is None or self.end_ms is None or self.start_ms <= time_ms <= self.end_ms

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "order_ref": self.order_ref, "start_ms": self.start_ms, "end_ms": self.end_ms,
                "reason": self.reason, "until_ms": self.until_ms, "created_by": self.created_by,
                "created_ms": self.created_ms, "released_by": self.released_by, "released_ms": self.released_ms}


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    records: int                  # records whose links checked out
    gaps: int                     # purged runs crossed (each anchored by its recorded link)
    head_seq: int
    head: bytes
    first_bad: int | None = None  # seq of the first record (or missing range start) that does not check out
    reason: str = ""
    audit: hashchain.ChainCheck = field(default_factory=lambda: hashchain.ChainCheck(True, 0))

    def __str__(self) -> str:
        if self.first_bad is not None:
            return f"blocked-lookup log BROKEN at record {self.first_bad}: {self.reason} ({self.records} records " \
                   f"verified before it)"
        if not self.audit.ok:
            return f"blocked-lookup log audit chain BROKEN: {self.audit}"
        return (f"blocked-lookup log intact: {self.records} records, {self.gaps} purged runs anchored, head seq "
                f"{self.head_seq} {self.head.hex()[:16]}; audit: {self.audit.checked} events")


@dataclass(frozen=True, slots=True)
class PurgeReport:
    deleted: int
    kept_by_holds: int
    runs: int
    batches_deleted: int
    cutoffs: dict[str, int]        # zone -> retention days applied
    holds: tuple[int, ...]         # holds that kept records


@dataclass(frozen=True, slots=True)
class HitRow:
    seq: int
    time_ms: int
    qname: str
    qtype: int
    transport: str
    node: str
    zone: str
    serial: int
    trigger: str
    rule_owner: str
    action: str
    order_ref: str | None
    sealed_client: bytes | None   # self-contained (blocklog_seal.blob), or None: no address recorded


def payload(seq: int, time_ms: int, qname: str, qtype: int, transport: str, batch: int, client: bytes | None,
            ctx_canon: str) -> bytes:
    """The canonical bytes of one record, chained with rpz.hashchain.link (a JSON array)."""
    c = f'"{client.hex()}"' if client is not None else "null"
    return f'[{seq},{time_ms},{_jstr(qname)},{qtype},"{transport}",{batch},{c},{ctx_canon}]'.encode()


def context_canon(node: str, t: Template) -> str:
    return json.dumps([node, t[2], t[3], t[4], t[5], t[6], t[7]], ensure_ascii=True, separators=(",", ":"))


def template_canon(qname: str, qtype: int, transport: str, ctx_canon: str) -> bytes:
    """The canonical bytes of a template (what records of one name, type and transport under one
    rule context share): its SHA-256 is the ``digest`` each record's leaf covers."""
    return f'[{_jstr(qname)},{qtype},{_jstr(transport)},{ctx_canon}]'.encode()


_DIGEST = type(hashlib.sha256()).digest


def sha256_rows_py(rows: Any, width: int) -> bytes:
    """SHA-256 of each ``width``-byte row of a C-contiguous uint8 array, with hashlib: one bytes
    object per row straight from numpy (a void dtype keeps trailing zero bytes), then the C-level
    map. About 1 us per row, nearly all of it call overhead."""
    flat = (np.frombuffer(rows, dtype=np.uint8) if isinstance(rows, bytes | bytearray | memoryview)
            else np.ascontiguousarray(rows, dtype=np.uint8).reshape(-1))
    if width <= 0 or len(flat) % width:
        raise ValueError(f"sha256_rows: a buffer of {len(flat)} bytes is not made of rows of {width} bytes")
    return b"".join(map(_DIGEST, map(hashlib.sha256, flat.view(f"V{width}").tolist())))


_segment_leaves_c: Callable[[int, Any, Any, Any, Any], bytes] | None
try:     # the same digests in one C call (resolver/_leafhash.c, an optional extension): 0.06-0.09 us a row
    from ._leafhash import leaves as _segment_leaves_c
    from ._leafhash import sha256_rows
    LEAF_HASHING = "openssl"
except ImportError:   # built without a compiler or OpenSSL headers
    sha256_rows = sha256_rows_py
    _segment_leaves_c = None
    LEAF_HASHING = "hashlib"


# The fixed-width record a leaf digest covers, as a packed structured dtype: numpy fills it a field
# at a time (four strided copies), about a third of what byte-column slices of a (n, LEAF_W) array cost.
LEAF_DTYPE = np.dtype([("seq", "<u8"), ("time", "<i8"), ("digest", "V32"), ("addr", f"V{ADDR_W}")])
assert LEAF_DTYPE.itemsize == LEAF_W


def _leaves(seqs: np.ndarray, times: np.ndarray, digests: np.ndarray, ct: bytes | None, n: int) -> bytes:
    """The leaf digests of n records (32 bytes each): SHA-256 of the fixed-width record (seq u64 LE,
    time_ms i64 LE, template digest, address ciphertext or ADDR_W zero bytes), built by numpy and
    hashed in one call (``sha256_rows``)."""
    rec = np.zeros(n, dtype=LEAF_DTYPE) if ct is None else np.empty(n, dtype=LEAF_DTYPE)
    rec["seq"] = seqs
    rec["time"] = times
    rec["digest"] = np.ascontiguousarray(digests, dtype=np.uint8).reshape(n, 32).view("V32").reshape(n)
    if ct is not None:
        rec["addr"] = np.frombuffer(ct, dtype=f"V{ADDR_W}")
    return sha256_rows(rec.view(np.uint8), LEAF_W)


def segment_leaves(first_seq: int, times: np.ndarray, digests: np.ndarray, li: np.ndarray, ct: bytes | None) -> bytes:
    """The leaves of a new segment's records (seqs from ``first_seq`` on; record i's template digest
    is row ``li[i]`` of ``digests``): in one pass in C (``_leafhash.leaves``: no array of records
    built first, ~0.03 us a record less), else ``_leaves``. The same bytes either way."""
    if _segment_leaves_c is not None:
        return _segment_leaves_c(first_seq, np.ascontiguousarray(times, dtype=np.int64), digests,
                                 np.ascontiguousarray(li, dtype=np.int64), ct)
    n = len(times)
    return _leaves(np.arange(first_seq, first_seq + n, dtype="<u8"), times, digests[li], ct, n)


_INSERT_SEGMENT = ("INSERT INTO segments (id, first_seq, count, live, min_time_ms, max_time_ms, committed_ms, "
                   "sealed_key, times, tpls, addrs, leaves, root, link, key_digest) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_INSERT_SEGMENT_2 = ("INSERT INTO segments (id, first_seq, count, live, min_time_ms, max_time_ms, committed_ms, "
                     "sealed_key, times, tpls, addrs, leaves, root, link) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")          # into a log of schema 2


def segment_link(prev: bytes, root: bytes, key_digest: bytes | None) -> bytes:
    """A segment's link: SHA-256(previous link || root || key digest); a segment written before
    schema 3 has no key digest and its link leaves it out."""
    return hashlib.sha256(prev + root + (key_digest or b"")).digest()


def _cross(gaps: dict[int, tuple[int, bytes]], expect: int) -> tuple[bytes | None, int, int]:
    """Follow recorded gaps from seq ``expect``: (link of the last purged record or None, the seq
    after the gaps, how many gaps were crossed)."""
    anchor, crossed = None, 0
    while expect in gaps:
        last, anchor = gaps[expect]
        expect = last + 1
        crossed += 1
    return anchor, expect, crossed


def day_of(time_ms: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(time_ms // 1000))


class BlocklogStore:
    """One connection to the log. Not shared between threads: each thread opens its own."""

    def __init__(self, path: str, node: str = "", *, busy_timeout_s: float = 30.0, readonly: bool = False) -> None:
        self.path = path
        self.node = node
        try:
            if readonly:
                if not os.path.exists(path):
                    raise BlocklogError(f"{path}: no blocked-lookup log here (check [blocklog] path / [node] "
                                        "state_dir, or whether the resolver ever ran with [blocklog])")
                self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=busy_timeout_s,
                                            isolation_level=None)
            else:
                os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o750, exist_ok=True)
                self.conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
                self.conn.execute(f"PRAGMA page_size={PAGE_SIZE}")    # a new log's; an existing one keeps its own
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=FULL")
                self._migrate()
        except sqlite3.Error as exc:
            raise BlocklogError(f"{path}: cannot open the blocked-lookup log: {exc}") from exc
        except OSError as exc:
            raise BlocklogError(f"{path}: cannot create the blocked-lookup log's directory: {exc.strerror}") from exc
        self._ctx: dict[tuple[Any, ...], tuple[int, str, str, str | None, str]] = {}  # (id, canon, zone, order, action)
        self._tpl: dict[tuple[Template, str], int] = {}            # (template, transport) -> template id
        # The templates this connection has used, by a dense local number (li): their ids, digests and
        # daily group (zone, order, action); per stable table (Columns.stable) its index -> li, for udp
        # and for tcp (-1: not yet known). A batch's templates are then looked up by numpy indexing.
        self._li: dict[int, int] = {}                              # template id -> li
        self._ltid = np.zeros(0, dtype="<u4")
        self._ldig = np.zeros((0, 32), dtype=np.uint8)
        self._lgrp = np.zeros(0, dtype=np.int64)
        self._groups: dict[tuple[str, str, str], int] = {}          # (zone, order or "", action) -> group
        self._group_names: list[tuple[str, str, str]] = []
        self._tables: dict[int, tuple[Sequence[Template], np.ndarray]] = {}   # id(list) -> (list, (2, n) li)
        self._head: tuple[int, bytes] | None = None
        self._segment_id: int | None = None
        self._keyed = True                  # new segments' links cover their sealed data key (schema 3)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()

    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        have = self.schema_version()
        if have > len(MIGRATIONS):
            raise BlocklogError(f"{self.path}: schema version {have} is newer than this program knows "
                                f"({len(MIGRATIONS)}); upgrade hotline-edge")
        db = sqlite_utils.Database(self.conn)
        for n in range(have, len(MIGRATIONS)):
            with self.tx():
                MIGRATIONS[n](db)
                self.conn.execute(f"PRAGMA user_version = {n + 1}")

    def tx(self) -> AbstractContextManager[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error): writers serialize, readers go on."""
        return immediate(self.conn)

    # -- writing ------------------------------------------------------------------------------------

    def head(self) -> tuple[int, bytes]:
        """(seq, link) of the newest record ever written (0, GENESIS for a new log)."""
        row = self.conn.execute("SELECT seq, link FROM chain WHERE id = 1").fetchone()
        return (int(row[0]), bytes(row[1])) if row else (0, hashchain.GENESIS)

    def _anchor(self) -> tuple[int, bytes]:
        """(seq, link) the segments continue from: the last record written as a row (schema 1)."""
        if self.schema_version() < 2:       # a log of schema 1 read without migrating it (readonly)
            return self.head()
        row = self.conn.execute("SELECT seq, link FROM segment_anchor WHERE id = 1").fetchone()
        return (int(row[0]), bytes(row[1])) if row else (0, hashchain.GENESIS)

    @property
    def written_seq(self) -> int:
        """The newest seq this connection wrote or read as the head."""
        return self._head[0] if self._head is not None else self.head()[0]

    def write_batch(self, raws: Sequence[Raw], *, now_ms: int, public_key: bytes | None) -> int:
        """Append the hits of ``raws`` as one batch (``write_columns``). Returns how many records were
        written. BlocklogError when a record cannot be stored or the database refuses the write
        (nothing of the batch is then kept)."""
        try:
            cols = columns_from_raws(raws)
        except ValueError as exc:
            raise BlocklogError(f"{self.path}: cannot write a batch: {exc}") from exc
        return self.write_columns(cols, now_ms=now_ms, public_key=public_key)

    def write_columns(self, cols: Columns | Sequence[Columns], *, now_ms: int, public_key: bytes | None) -> int:
        """Append ``cols`` (or several Columns, in order) as one batch, a segment: one transaction
        with the segment row (columns, leaf digests, link, the sealed data key), the chain head and
        the daily aggregates. Returns how many records were written. BlocklogError when the
        database refuses the write (nothing of the batch is then kept)."""
        parts = [cols] if isinstance(cols, Columns) else [p for p in cols if len(p)]
        n = sum(len(p) for p in parts)
        if n == 0:
            return 0
        try:
            with self.tx() as c:
                return self._write_segment(c, parts, now_ms, public_key)
        except BaseException as exc:   # the transaction was rolled back, whatever stopped it
            self._forget_templates()   # contexts and templates created in it are gone
            self._head = self._segment_id = None
            if isinstance(exc, sqlite3.Error):
                raise BlocklogError(f"{self.path}: cannot write a batch of {n} records: {exc}") from exc
            raise

    def _write_segment(self, c: sqlite3.Connection, parts: Sequence[Columns], now_ms: int,
                       public_key: bytes | None) -> int:
        """The writer's hot path: no Python code per record (nor per template already known)."""
        if self._head is None or self._segment_id is None:
            self._keyed = self.schema_version() >= 3
            self._head = self.head()
            self._segment_id = int(c.execute("SELECT coalesce(max(id), 0) FROM segments").fetchone()[0])
        seq, prev = self._head
        if len(self._li) >= TEMPLATES_KEPT:     # bounded memory under endless new names: start again
            self._forget_templates()            # (before the batch: its local numbers stay valid)
        if len(parts) > 1 and all(p.templates is parts[0].templates for p in parts):
            parts = [Columns.concat(parts)]        # one connection's messages: one lookup of their templates
        if len(parts) == 1:
            li = self._locals(c, parts[0])
            times = np.ascontiguousarray(parts[0].times, dtype="<i8")
            plain = np.ascontiguousarray(parts[0].addrs, dtype=np.uint8)
        else:
            li = np.concatenate([self._locals(c, p) for p in parts])
            times = np.concatenate([np.asarray(p.times, dtype="<i8") for p in parts])
            plain = np.concatenate([np.asarray(p.addrs, dtype=np.uint8) for p in parts])
        n = len(li)
        if plain.shape != (n, ADDR_W) or times.shape != (n,):
            raise BlocklogError(f"{self.path}: a batch of {n} records has {times.shape} times and addresses of "
                                f"shape {plain.shape}, not ({n}, {ADDR_W})")
        tids = self._ltid[li]
        if public_key is not None:
            sealed_key, ct = seal_column(public_key, plain.tobytes())
            del plain
        else:
            sealed_key, ct = None, None
        leaves = segment_leaves(seq + 1, times, self._ldig, li, ct)
        root = hashlib.sha256(leaves).digest()
        key_digest = hashlib.sha256(sealed_key or b"").digest() if self._keyed else None
        link = segment_link(prev, root, key_digest)
        segment = self._segment_id + 1
        t_min, t_max = int(times.min()), int(times.max())
        c.execute(_INSERT_SEGMENT if self._keyed else _INSERT_SEGMENT_2,
                  (segment, seq + 1, n, n, t_min, t_max, now_ms, sealed_key, times.tobytes(), tids.tobytes(), ct,
                   leaves, root, link, *((key_digest,) if self._keyed else ())))
        c.execute("INSERT INTO chain (id, seq, link) VALUES (1, ?, ?) "
                  "ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, link = excluded.link", (seq + n, link))
        self._add_daily(c, times, li, t_min, t_max)
        self._head = (seq + n, link)
        self._segment_id = segment
        return n

    def _locals(self, c: sqlite3.Connection, cols: Columns) -> np.ndarray:
        """The local numbers (li) of ``cols``' records' templates, creating the templates (and their
        contexts) new to the store. For a stable table the index -> li map is kept between
        batches, so a known template costs one numpy lookup per record and nothing else."""
        tpl = np.asarray(cols.tpl, dtype=np.intp)
        tcp = None if cols.tcp is None else np.asarray(cols.tcp, dtype=np.intp)
        m = len(cols.templates)
        if len(tpl) and (int(tpl.min()) < 0 or int(tpl.max()) >= m):
            raise BlocklogError(f"{self.path}: a record refers to template {int(tpl.max())} of {m}")
        if tcp is not None and len(tcp) and int(tcp.max()) > 1:
            raise BlocklogError(f"{self.path}: a record's transport is {int(tcp.max())}, neither 0 (udp) nor 1 (tcp)")
        table = self._table_map(cols.templates) if cols.stable else np.full((2, m), -1, dtype=np.int64)
        li = table[0, tpl] if tcp is None else table[tcp, tpl]
        missing = li < 0
        if missing.any():
            key = tpl[missing] * 2 + (tcp[missing] if tcp is not None else 0)
            for k in np.unique(key).tolist():
                tid = self._template_id(c, cols.templates[k >> 1], "tcp" if k & 1 else "udp")
                table[k & 1, k >> 1] = self._li[tid]
            li = table[0, tpl] if tcp is None else table[tcp, tpl]
        return li

    def _table_map(self, templates: Sequence[Template]) -> np.ndarray:
        """The kept index -> li map of a stable table (grown when the table has grown); a few tables
        are kept (one per connection), the least recently used dropped first."""
        entry = self._tables.pop(id(templates), None)
        if entry is None or entry[0] is not templates:
            table = np.full((2, len(templates)), -1, dtype=np.int64)
        else:
            table = entry[1]
            if table.shape[1] < len(templates):
                grown = np.full((2, max(len(templates), 2 * table.shape[1])), -1, dtype=np.int64)
                grown[:, :table.shape[1]] = table
                table = grown
        self._tables[id(templates)] = (templates, table)       # the list is held: its id stays its own
        while len(self._tables) > TABLES_KEPT:
            del self._tables[next(iter(self._tables))]
        return table

    def _forget_templates(self) -> None:
        self._ctx.clear()
        self._tpl.clear()
        self._li.clear()
        self._ltid = np.zeros(0, dtype="<u4")
        self._ldig = np.zeros((0, 32), dtype=np.uint8)
        self._lgrp = np.zeros(0, dtype=np.int64)
        self._groups.clear()
        self._group_names.clear()
        self._tables.clear()

    def _add_daily(self, c: sqlite3.Connection, times: np.ndarray, li: np.ndarray, t_min: int, t_max: int) -> None:
        """Per (day, order, zone, action) counts -> the daily table's rows: each template's group
        is known by its local number, so a batch is counted per (day, group) by numpy alone."""
        groups = self._lgrp[li]
        if t_min // DAY_MS == t_max // DAY_MS:       # a batch within one day (nearly all): by group id
            m = len(self._group_names)
            counts = np.bincount(groups, minlength=m)
            first = np.full(m, np.iinfo(np.int64).max, dtype=np.int64)
            last = np.full(m, np.iinfo(np.int64).min, dtype=np.int64)
            np.minimum.at(first, groups, times)
            np.maximum.at(last, groups, times)
            uniq = np.flatnonzero(counts)
            counts, first, last = counts[uniq], first[uniq], last[uniq]
            uniq = (t_min // DAY_MS) << 32 | uniq
        else:
            key = (times // DAY_MS).astype(np.int64) << 32 | groups
            uniq, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
            first = np.full(len(uniq), np.iinfo(np.int64).max, dtype=np.int64)
            last = np.full(len(uniq), np.iinfo(np.int64).min, dtype=np.int64)
            np.minimum.at(first, inverse.reshape(-1), times)
            np.maximum.at(last, inverse.reshape(-1), times)
        rows = []
        for k, cnt, lo, hi in zip(uniq.tolist(), counts.tolist(), first.tolist(), last.tolist(), strict=True):
            zone, order, action = self._group_names[k & 0xFFFF_FFFF]
            rows.append((day_of((k >> 32) * DAY_MS), self.node, order, zone, action, cnt, lo, hi))
        c.executemany("INSERT INTO daily VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                      "ON CONFLICT(day, node, order_ref, zone, action) DO UPDATE SET hits = hits + excluded.hits, "
                      "first_ms = min(first_ms, excluded.first_ms), last_ms = max(last_ms, excluded.last_ms)", rows)

    def _template_id(self, c: sqlite3.Connection, t: Template, transport: str) -> int:
        """The id of (qname, qtype, transport, context) in ``templates`` (created when new, with its
        digest: SHA-256 of ``template_canon``), with its local number (li) assigned."""
        tid = self._tpl.get((t, transport))
        if tid is not None:
            return tid
        ctx = self._ctx.get(t[2:])
        if ctx is None:
            ctx = self._context(c, t[2:], t)
        row = c.execute("SELECT id, digest FROM templates WHERE ctx = ? AND qname = ? AND qtype = ? AND transport = ?",
                        (ctx[0], t[0], t[1], transport)).fetchone()
        if row is None:
            digest = hashlib.sha256(template_canon(t[0], t[1], transport, ctx[1])).digest()
            cur = c.execute("INSERT INTO templates (ctx, qname, qtype, transport, digest) VALUES (?, ?, ?, ?, ?)",
                            (ctx[0], t[0], t[1], transport, digest))
            tid = int(cur.lastrowid or 0)
        else:
            tid, digest = int(row[0]), bytes(row[1])
        self._tpl[(t, transport)] = tid
        if tid not in self._li:
            group = (ctx[2], ctx[3] or "", ctx[4])
            gid = self._groups.get(group)
            if gid is None:
                gid = self._groups[group] = len(self._group_names)
                self._group_names.append(group)
            li = len(self._li)
            if li == len(self._ltid):                              # grow the arrays (doubling)
                cap = max(1024, 2 * li)
                self._ltid = np.resize(self._ltid, cap)
                self._ldig = np.resize(self._ldig, (cap, 32))
                self._lgrp = np.resize(self._lgrp, cap)
            self._ltid[li], self._ldig[li], self._lgrp[li] = tid, np.frombuffer(digest, dtype=np.uint8), gid
            self._li[tid] = li
        return tid

    def _context(self, c: sqlite3.Connection, key: tuple[Any, ...], t: Template) -> tuple[int, str, str, str | None,
                                                                                             str]:
        canon = context_canon(self.node, t)
        row = c.execute("SELECT id FROM contexts WHERE canon = ?", (canon,)).fetchone()
        if row is None:
            cur = c.execute("INSERT INTO contexts (canon, node, zone, serial, trigger, rule_owner, action, order_ref) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (canon, self.node, *t[2:]))
            ctx_id = int(cur.lastrowid or 0)
        else:
            ctx_id = int(row[0])
        self._ctx[key] = (ctx_id, canon, t[2], t[7], t[6])
        return self._ctx[key]

    # -- audit --------------------------------------------------------------------------------------

    def append_audit(self, kind: str, at_ms: int, record: dict[str, Any]) -> int:
        """One event on the audit chain (inside the caller's transaction when there is one)."""
        body = hashchain.canonical({"kind": kind, "at_ms": at_ms, "node": self.node, **record})
        with self.tx() as c:
            row = c.execute("SELECT link FROM audit ORDER BY id DESC LIMIT 1").fetchone()
            prev = bytes(row[0]) if row else hashchain.GENESIS
            cur = c.execute("INSERT INTO audit (at_ms, kind, payload, link) VALUES (?, ?, ?, ?)",
                            (at_ms, kind, body, hashchain.link(prev, body)))
            return int(cur.lastrowid or 0)

    def audit(self, limit: int = 100, kind: str | None = None) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT id, payload FROM audit WHERE ? IS NULL OR kind = ? ORDER BY id DESC LIMIT ?",
                                 (kind, kind, limit))
        return [{"id": i, **json.loads(p)} for i, p in rows]

    # -- verifying ----------------------------------------------------------------------------------

    def verify(self, progress: Progress | None = None) -> VerifyReport:
        """Recompute every record's link from its columns, across purged runs (anchored by their
        recorded links), up to the committed head; then the audit chain. Names the first break.
        One read transaction: a writer appending meanwhile is not seen half-way."""
        self.conn.execute("BEGIN")
        try:
            return self._verify(progress)
        finally:
            self.conn.execute("COMMIT")

    def _verify(self, progress: Progress | None) -> VerifyReport:
        anchor_seq, anchor = self._anchor()
        gap_rows = [(int(f), int(last), bytes(lk)) for last, f, lk in
                    self.conn.execute("SELECT last_seq, first_seq, link FROM gaps ORDER BY first_seq")]
        gaps = {f: (last, lk) for f, last, lk in gap_rows if last <= anchor_seq}   # of records written as rows
        total = self.counts()["records"]
        head_seq, head = self.head()
        prev, expect, n, crossed = hashchain.GENESIS, 1, 0, 0
        canons = {}      # recomputed from the columns queries read, so a changed order_ref shows too
        for i, node, *cols in self.conn.execute("SELECT id, node, zone, serial, trigger, rule_owner, action, "
                                                "order_ref FROM contexts"):
            canons[i] = context_canon(node, ("", 0, *cols))
        rows = self.conn.execute(
            "SELECT seq, time_ms, qname, qtype, transport, batch, client, link, ctx FROM hits ORDER BY seq")
        link = hashchain.link
        for seq, t_ms, qname, qtype, transport, batch, client, stored, ctx in rows:
            canon = canons.get(ctx, "")
            if seq != expect:
                anchor_, expect, k = _cross(gaps, expect)
                crossed += k
                if anchor_ is None or expect != seq:
                    return VerifyReport(False, n, crossed, head_seq, head, expect,
                                        f"records {expect}..{seq - 1} are missing and no purge recorded their removal")
                prev = anchor_
            if link(prev, payload(seq, t_ms, qname, qtype, transport, batch,
                                  bytes(client) if client is not None else None, canon)) != bytes(stored):
                return VerifyReport(False, n, crossed, head_seq, head, seq,
                                    "the record does not match its stored link (it, or the link, was changed)")
            prev = bytes(stored)
            expect = seq + 1
            n += 1
            if progress is not None and n % 50_000 == 0:
                progress(n, total)
        if expect <= anchor_seq:
            anchor_, expect, k = _cross(gaps, expect)
            crossed += k
            if anchor_ is not None:
                prev = anchor_
        if expect - 1 != anchor_seq or prev != anchor:
            return VerifyReport(False, n, crossed, head_seq, head, expect,
                                f"the records written as rows end at {expect - 1}, but the segments continue from "
                                f"record {anchor_seq} (the newest records were removed, or the anchor was changed)")
        if self.schema_version() < 2:
            return self._verified(n, crossed, head_seq, head, prev, expect, total, progress)
        bad, n, crossed, prev, expect = self._verify_segments(canons, gap_rows, anchor_seq, anchor, n, crossed,
                                                              progress, total)
        if bad is not None:
            return VerifyReport(False, n, crossed, head_seq, head, bad[0], bad[1])
        return self._verified(n, crossed, head_seq, head, prev, expect, total, progress)

    def _verified(self, n: int, crossed: int, head_seq: int, head: bytes, prev: bytes, expect: int, total: int,
                  progress: Progress | None) -> VerifyReport:
        """The records end at the committed head; then the audit chain."""
        if expect - 1 != head_seq or prev != head:
            return VerifyReport(False, n, crossed, head_seq, head, expect,
                                f"the committed head is record {head_seq}, but the records end at {expect - 1} "
                                "(the newest records were removed, or the head was changed)")
        if progress is not None:
            progress(total, total)
        audit = hashchain.verify((i, bytes(p), bytes(lk)) for i, p, lk in
                                 self.conn.execute("SELECT id, payload, link FROM audit ORDER BY id"))
        return VerifyReport(audit.ok, n, crossed, head_seq, head, audit=audit)

    def _verify_segments(self, canons: dict[int, str], gap_rows: list[tuple[int, int, bytes]], anchor_seq: int,
                         prev: bytes, n: int, crossed: int, progress: Progress | None, total: int,
                         ) -> tuple[tuple[int, str] | None, int, int, bytes, int]:
        """Each segment from the anchor on: every present record's leaf recomputed from its columns
        (the template's digest from the templates and contexts columns), every purged record inside a
        recorded purge, then the segment's link. (break (seq, reason) or None, records, gaps crossed,
        last link, next seq)."""
        digests: dict[int, bytes] = {}
        for tid, ctx, qname, qtype, transport in self.conn.execute(
                "SELECT id, ctx, qname, qtype, transport FROM templates"):
            digests[int(tid)] = hashlib.sha256(template_canon(qname, qtype, transport, canons.get(ctx, ""))).digest()
        seg_gaps = [(f, last) for f, last, _ in gap_rows if f > anchor_seq]
        gap_first = np.array([f for f, _ in seg_gaps], dtype=np.int64)
        gap_last = np.array([last for _, last in seg_gaps], dtype=np.int64)
        used: set[int] = set()
        expect = anchor_seq + 1
        sha = hashlib.sha256

        def uncovered(seqs: np.ndarray) -> int | None:
            """The first of ``seqs`` no recorded purge covers (None: all covered)."""
            if len(seqs) == 0:
                return None
            at = np.searchsorted(gap_first, seqs, side="right") - 1
            ok = at >= 0
            ok[ok] = gap_last[at[ok]] >= seqs[ok]
            if not ok.all():
                return int(seqs[np.argmin(ok)])
            used.update(np.unique(at).tolist())
            return None

        keyed = "key_digest" if self.schema_version() >= 3 else "NULL"
        rows = self.conn.execute(f"SELECT first_seq, count, times, tpls, addrs, leaves, root, link, sealed_key, "  # noqa: S608
                                 f"{keyed} FROM segments ORDER BY first_seq")
        for first, count, times_b, tpls_b, addrs_b, leaves_b, root, stored, sealed, key_digest in rows:
            if first != expect:
                return ((expect, f"records {expect}..{first - 1} are missing (a segment was removed)" if first > expect
                         else f"segments overlap at record {first}"), n, len(used) + crossed, prev, expect)
            seqs = np.arange(first, first + count, dtype=np.int64)
            if leaves_b is None:                 # every record purged: only the root is left
                bad = uncovered(seqs)
                if bad is not None:
                    return ((bad, "the record was removed and no purge recorded its removal"), n,
                            len(used) + crossed, prev, expect)
                root_now, live = bytes(root), 0
            else:
                leaves = bytes(leaves_b)
                if (times_b is None or tpls_b is None or len(times_b) != 8 * count or len(tpls_b) != 4 * count
                        or len(leaves) != 32 * count or (addrs_b is not None and len(addrs_b) != ADDR_W * count)):
                    return ((first, "the segment's columns do not have one entry per record (it was changed)"), n,
                            len(used) + crossed, prev, expect)
                times = np.frombuffer(times_b, dtype="<i8")
                tpls = np.frombuffer(tpls_b, dtype="<u4")
                present = tpls != PURGED
                bad = uncovered(seqs[~present])
                if bad is not None:
                    return ((bad, "the record was removed and no purge recorded its removal"), n,
                            len(used) + crossed, prev, expect)
                idx = np.flatnonzero(present)
                live = len(idx)
                if live:
                    known = [digests.get(t) for t in tpls[idx].tolist()]
                    if None in known:
                        bad_at = int(seqs[idx[known.index(None)]])
                        return ((bad_at, "the record refers to a template that does not exist (it was changed)"), n,
                                len(used) + crossed, prev, expect)
                    dig = np.frombuffer(b"".join(known), dtype=np.uint8).reshape(-1, 32)   # type: ignore[arg-type]
                    ct = None
                    if addrs_b is not None:
                        ct = np.frombuffer(addrs_b, dtype=np.uint8).reshape(count, ADDR_W)[idx].tobytes()
                    mine = _leaves(seqs[idx], times[idx], dig, ct, len(idx))
                    theirs = np.frombuffer(leaves, dtype=np.uint8).reshape(count, 32)[idx].tobytes()
                    if mine != theirs:
                        a = np.frombuffer(mine, dtype=np.uint8).reshape(-1, 32)
                        b = np.frombuffer(theirs, dtype=np.uint8).reshape(-1, 32)
                        k = int(np.argmax((a != b).any(axis=1)))
                        return ((int(seqs[idx[k]]), "the record does not match its leaf digest (it, or the leaf, "
                                 "was changed)"), n, len(used) + crossed, prev, expect)
                root_now = sha(leaves).digest()
            if key_digest is not None:
                why = None
                if sealed is not None and sha(bytes(sealed)).digest() != bytes(key_digest):
                    why = "its sealed data key does not match the digest its link covers (the key was changed)"
                elif sealed is None and addrs_b is not None:    # a purge drops the key only with the addresses
                    why = "its sealed data key is gone while it still holds addresses (the key was removed)"
                if why is not None:
                    return ((first, f"the segment of records {first}..{first + count - 1}: {why}"), n,
                            len(used) + crossed, prev, expect)
            if segment_link(prev, root_now, bytes(key_digest) if key_digest is not None else None) != bytes(stored):
                return ((first, f"the segment of records {first}..{first + count - 1} does not match its link "
                         "(a leaf digest or the link was changed)"), n, len(used) + crossed, prev, expect)
            prev = bytes(stored)
            expect = first + count
            n_before = n
            n += live
            if progress is not None and n // 50_000 != n_before // 50_000:
                progress(n, total)
        return None, n, len(used) + crossed, prev, expect

    # -- holds --------------------------------------------------------------------------------------

    def add_hold(self, *, order_ref: str | None, start_ms: int | None, end_ms: int | None, reason: str,
                 until_ms: int, actor: str, now_ms: int) -> Hold:
        """A legal hold: records it covers are not purged until ``until_ms``. Audited."""
        if order_ref is None and (start_ms is None or end_ms is None):
            raise HoldError("a legal hold needs a scope: an order_ref, a time window (start and end), or both")
        if (start_ms is None) != (end_ms is None):
            raise HoldError("a time window needs both start and end")
        if start_ms is not None and end_ms is not None and end_ms < start_ms:
            raise HoldError("the window ends before it starts")
        if not reason.strip():
            raise HoldError("a legal hold needs a reason (the case, order or request it serves)")
        if until_ms <= now_ms:
            raise HoldError("the hold's end date is not in the future")
        with self.tx() as c:
            cur = c.execute("INSERT INTO holds (order_ref, start_ms, end_ms, reason, until_ms, created_by, "
                            "created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (order_ref, start_ms, end_ms, reason, until_ms, actor, now_ms))
            hold = Hold(int(cur.lastrowid or 0), order_ref, start_ms, end_ms, reason, until_ms, actor, now_ms)
            self.append_audit("hold_created", now_ms, {"hold": hold.to_json()})
        return hold

    def release_hold(self, hold_id: int, *, actor: str, now_ms: int, note: str = "") -> Hold:
        with self.tx() as c:
            h = self.hold(hold_id)
            if h.released_ms is not None:
                raise HoldError(f"legal hold {hold_id} was already released by {h.released_by}")
            c.execute("UPDATE holds SET released_by = ?, released_ms = ? WHERE id = ?", (actor, now_ms, hold_id))
            self.append_audit("hold_released", now_ms, {"hold": hold_id, "by": actor, "note": note})
        return self.hold(hold_id)

    def hold(self, hold_id: int) -> Hold:
        row = self.conn.execute("SELECT * FROM holds WHERE id = ?", (hold_id,)).fetchone()
        if row is None:
            raise HoldError(f"no legal hold {hold_id}")
        return Hold(*row)

    def holds(self, active_at_ms: int | None = None) -> list[Hold]:
        out = [Hold(*r) for r in self.conn.execute("SELECT * FROM holds ORDER BY id")]
        return out if active_at_ms is None else [h for h in out if h.active(active_at_ms)]

    # -- purging ------------------------------------------------------------------------------------

    def purge(self, *, now_ms: int, retention_days: Callable[[str], int], actor: str, chunk: int = 20_000,
              progress: Progress | None = None) -> PurgeReport:
        """Delete records older than their zone's retention unless an active legal hold covers them.
        Each chunk is one transaction with its audit event; every purged run leaves a gap row, so
        the rest still verifies. Records written as rows (schema 1) are deleted, and batches left
        empty with their sealed data keys; in a segment a purged record's time, template and address
        bytes are overwritten (its leaf digest stays), and a segment left empty keeps only its root
        and link (its sealed data key goes). Addresses are never read."""
        holds = self.holds(active_at_ms=now_ms)
        anchor_seq = self._anchor()[0]
        ctxs = {int(i): (z, o) for i, z, o in self.conn.execute("SELECT id, zone, order_ref FROM contexts")}
        days = {z: retention_days(z) for z, _ in ctxs.values()}
        cutoff = {i: now_ms - days[z] * DAY_MS for i, (z, _) in ctxs.items()}
        doomed: list[tuple[int, bytes, int]] = []      # (seq, link or leaf, segment id or 0)
        kept, used_holds = 0, set()
        if cutoff:
            horizon = max(cutoff.values())
            ranges = self.conn.execute("SELECT first_seq, last_seq FROM batches WHERE min_time_ms < ? "
                                       "ORDER BY first_seq", (horizon,)).fetchall()
            for a, b in ranges:
                for seq, t_ms, ctx, lk in self.conn.execute(
                        "SELECT seq, time_ms, ctx, link FROM hits WHERE seq BETWEEN ? AND ? ORDER BY seq", (a, b)):
                    if t_ms >= cutoff[ctx]:
                        continue
                    holder = next((h for h in holds if h.covers(ctxs[ctx][1], t_ms)), None)
                    if holder is not None:
                        kept += 1
                        used_holds.add(holder.id)
                        continue
                    doomed.append((int(seq), bytes(lk), 0))
            k, used = self._doomed_in_segments(horizon, ctxs, cutoff, holds, doomed)
            kept += k
            used_holds |= used
        runs_total, batches_total = 0, 0
        zones_days = dict(sorted(days.items()))
        for start in range(0, len(doomed), chunk):
            part = doomed[start:start + chunk]
            rows_part = [(s, lk) for s, lk, seg in part if not seg]
            seg_part = [(s, lk) for s, lk, seg in part if seg]
            with self.tx() as c:
                runs = self._purge_runs(c, rows_part, anchor_seq) + self._purge_runs(c, seg_part, anchor_seq)
                emptied = self._drop_empty_batches(c, rows_part[0][0], rows_part[-1][0]) if rows_part else 0
                emptied += self._purge_in_segments(c, [(s, seg) for s, _, seg in part if seg])
                aid = self.append_audit("purge", now_ms, {
                    "by": actor, "deleted": len(part), "runs": [[a, b] for a, b, _ in runs[:100]],
                    "runs_total": len(runs), "batches_deleted": emptied, "retention_days": zones_days,
                    "part": start // chunk + 1})
                c.execute("UPDATE gaps SET audit = ? WHERE audit IS NULL", (aid,))
            runs_total += len(runs)
            batches_total += emptied
            if progress is not None:
                progress(start + len(part), len(doomed))
        self.append_audit("purge_done", now_ms, {"by": actor, "deleted": len(doomed), "kept_by_holds": kept,
                                                 "holds": sorted(used_holds), "retention_days": zones_days})
        return PurgeReport(len(doomed), kept, runs_total, batches_total, zones_days, tuple(sorted(used_holds)))

    def _doomed_in_segments(self, horizon: int, ctxs: dict[int, tuple[str, str | None]], cutoff: dict[int, int],
                            holds: Sequence[Hold], doomed: list[tuple[int, bytes, int]]) -> tuple[int, set[int]]:
        """Append the segments' records past retention and not held to ``doomed`` (numpy per
        segment); (how many holds kept, the holds that kept some). The first hold covering a record
        is the one that keeps it, as for the rows."""
        tmap = {int(i): int(ctx) for i, ctx in self.conn.execute("SELECT id, ctx FROM templates")}
        if not tmap:
            return 0, set()
        size = max(tmap) + 1
        cut = np.full(size, np.iinfo(np.int64).min, dtype=np.int64)     # unknown template: never old
        orders: list[str | None] = [None] * size
        for tid, ctx in tmap.items():
            cut[tid] = cutoff[ctx]
            orders[tid] = ctxs[ctx][1]
        per_hold: list[tuple[Hold, np.ndarray | None]] = []
        for h in holds:
            if h.order_ref is None:
                per_hold.append((h, None))
            else:
                per_hold.append((h, np.array([o == h.order_ref for o in orders], dtype=bool)))
        kept, used = 0, set()
        for seg, first, times_b, tpls_b, leaves_b in self.conn.execute(
                "SELECT id, first_seq, times, tpls, leaves FROM segments WHERE live > 0 AND min_time_ms < ? "
                "ORDER BY first_seq", (horizon,)).fetchall():
            times = np.frombuffer(times_b, dtype="<i8")
            tpls = np.frombuffer(tpls_b, dtype="<u4").astype(np.int64)
            present = (tpls != PURGED) & (tpls < size)
            safe = np.where(present, tpls, 0)
            old = present & (times < cut[safe])
            free = old.copy()
            for h, match in per_hold:
                covers = free.copy()
                if match is not None:
                    covers &= match[safe]
                if h.start_ms is not None and h.end_ms is not None:
                    covers &= (times >= h.start_ms) & (times <= h.end_ms)
                if covers.any():
                    used.add(h.id)
                    kept += int(np.count_nonzero(covers))
                    free &= ~covers
            for i in np.flatnonzero(free).tolist():
                doomed.append((first + i, bytes(leaves_b[32 * i:32 * i + 32]), seg))
        return kept, used

    def _purge_in_segments(self, c: sqlite3.Connection, part: Sequence[tuple[int, int]]) -> int:
        """Overwrite the time, template and address bytes of these (seq, segment) records; a segment
        left without records keeps only its root and link. The address column is written (zeros
        over each purged record's bytes, SQLite's incremental blob I/O), never read. Returns how
        many segments were emptied."""
        by_seg: dict[int, list[int]] = {}
        for seq, seg in part:
            by_seg.setdefault(seg, []).append(seq)
        emptied = 0
        for seg, seqs in by_seg.items():
            first, live, times_b, tpls_b, has_addrs = c.execute(
                "SELECT first_seq, live, times, tpls, sealed_key IS NOT NULL FROM segments WHERE id = ?",
                (seg,)).fetchone()
            idx = np.array(seqs, dtype=np.int64) - first
            if live - len(idx) <= 0:
                c.execute("UPDATE segments SET live = 0, sealed_key = NULL, times = NULL, tpls = NULL, addrs = NULL, "
                          "leaves = NULL WHERE id = ?", (seg,))
                emptied += 1
                continue
            times = np.frombuffer(times_b, dtype="<i8").copy()
            tpls = np.frombuffer(tpls_b, dtype="<u4").copy()
            times[idx] = 0
            tpls[idx] = PURGED
            c.execute("UPDATE segments SET live = ?, times = ?, tpls = ? WHERE id = ?",
                      (live - len(idx), times.tobytes(), tpls.tobytes(), seg))
            if has_addrs:
                with c.blobopen("segments", "addrs", seg) as blob_:
                    for i in idx.tolist():
                        blob_.seek(i * ADDR_W)
                        blob_.write(bytes(ADDR_W))
        return emptied

    def _purge_runs(self, c: sqlite3.Connection, part: Sequence[tuple[int, bytes]],
                    anchor_seq: int) -> list[tuple[int, int, bytes]]:
        """Delete these records (rows; segment records are overwritten by the caller); merge them with
        adjacent gaps into runs (first, last, link of last). ``part`` lies on one side of the anchor
        (rows up to it, segments after it) and no gap is merged across it."""
        if not part:
            return []
        gaps = {int(f): (int(last), bytes(lk), int(n)) for last, f, lk, n in
                c.execute("SELECT last_seq, first_seq, link, records FROM gaps")}
        by_last = {v[0]: k for k, v in gaps.items()}
        runs: list[list[Any]] = []          # [first, last, link, records]
        for seq, lk in part:
            if runs and runs[-1][1] + 1 == seq:
                runs[-1][1:4] = [seq, lk, runs[-1][3] + 1]
                continue
            if runs:                        # only existing gaps between the previous run and this record?
                nxt = runs[-1][1] + 1
                while nxt in gaps and gaps[nxt][0] < seq:
                    g = gaps[nxt]
                    runs[-1][1:4] = [g[0], g[1], runs[-1][3] + g[2]]
                    nxt = g[0] + 1
                if nxt == seq:
                    runs[-1][1:4] = [seq, lk, runs[-1][3] + 1]
                    continue
            runs.append([seq, seq, lk, 1])
        rows = part[0][0] <= anchor_seq
        for r in runs:
            if rows:
                c.execute("DELETE FROM hits WHERE seq BETWEEN ? AND ?", (r[0], r[1]))
            left = by_last.get(r[0] - 1) if r[0] - 1 != anchor_seq else None   # a gap ending just before: extend it
            if left is not None:
                r[0] = left
                r[3] += gaps[left][2]
            right = gaps.get(r[1] + 1) if r[1] != anchor_seq else None         # one starting just after: its anchor
            if right is not None:
                r[1], r[2], r[3] = right[0], right[1], r[3] + right[2]
            c.execute("DELETE FROM gaps WHERE last_seq BETWEEN ? AND ?", (r[0], r[1]))
            c.execute("INSERT INTO gaps (last_seq, first_seq, records, link) VALUES (?, ?, ?, ?)",
                      (r[1], r[0], r[3], r[2]))
        return [(r[0], r[1], r[2]) for r in runs]

    def _drop_empty_batches(self, c: sqlite3.Connection, lo: int, hi: int) -> int:
        cur = c.execute("DELETE FROM batches WHERE last_seq >= ? AND first_seq <= ? AND NOT EXISTS "
                        "(SELECT 1 FROM hits WHERE seq BETWEEN batches.first_seq AND batches.last_seq)", (lo, hi))
        return int(cur.rowcount)

    # -- reading ------------------------------------------------------------------------------------

    def records(self, *, order_ref: str | None = None, qname: str | None = None, start_ms: int | None = None,
                end_ms: int | None = None) -> Iterator[HitRow]:
        """Records by order reference and/or QNAME inside [start_ms, end_ms], oldest first. Client
        addresses stay sealed (``HitRow.sealed_client``)."""
        name = qname.lower().rstrip(".") + "." if qname is not None else None
        rows = self.conn.execute(
            "SELECT h.seq, h.time_ms, h.qname, h.qtype, h.transport, c.node, c.zone, c.serial, c.trigger, "
            "c.rule_owner, c.action, c.order_ref, h.client, b.sealed_key FROM hits h "
            "JOIN contexts c ON c.id = h.ctx JOIN batches b ON b.id = h.batch "
            "WHERE (?1 IS NULL OR h.ctx IN (SELECT id FROM contexts WHERE order_ref = ?1)) "
            "AND (?2 IS NULL OR h.qname = ?2) AND (?3 IS NULL OR h.time_ms >= ?3) AND (?4 IS NULL OR h.time_ms <= ?4) "
            "ORDER BY h.seq", (order_ref, name, start_ms, end_ms))
        for row in rows:
            client, sealed_key = row[12], row[13]
            sealed = blob(bytes(sealed_key), row[0], bytes(client)) if client is not None and sealed_key else None
            yield HitRow(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10],
                         row[11], sealed)
        if self.schema_version() >= 2:
            yield from self._segment_records(order_ref, name, start_ms, end_ms)

    def _segment_records(self, order_ref: str | None, name: str | None, start_ms: int | None,
                         end_ms: int | None) -> Iterator[HitRow]:
        info: dict[int, tuple[Any, ...]] = {}
        for tid, *fields in self.conn.execute(
                "SELECT t.id, t.qname, t.qtype, t.transport, c.node, c.zone, c.serial, c.trigger, c.rule_owner, "
                "c.action, c.order_ref FROM templates t JOIN contexts c ON c.id = t.ctx "
                "WHERE (?1 IS NULL OR c.order_ref = ?1) AND (?2 IS NULL OR t.qname = ?2)", (order_ref, name)):
            info[int(tid)] = tuple(fields)
        if not info:
            return
        wanted = np.array(sorted(info), dtype=np.uint32)
        lo = start_ms if start_ms is not None else np.iinfo(np.int64).min
        hi = end_ms if end_ms is not None else np.iinfo(np.int64).max
        rows = self.conn.execute(
            "SELECT first_seq, sealed_key, times, tpls, addrs FROM segments WHERE live > 0 "
            "AND max_time_ms >= ? AND min_time_ms <= ? ORDER BY first_seq", (lo, hi))
        for first, sealed_key, times_b, tpls_b, addrs_b in rows:
            times = np.frombuffer(times_b, dtype="<i8")
            tpls = np.frombuffer(tpls_b, dtype="<u4")
            mask = np.isin(tpls, wanted) & (times >= lo) & (times <= hi)
            for i in np.flatnonzero(mask).tolist():
                sealed = None
                if addrs_b is not None and sealed_key is not None:
                    sealed = blob2(bytes(sealed_key), i, bytes(addrs_b[i * ADDR_W:(i + 1) * ADDR_W]))
                f = info[int(tpls[i])]
                yield HitRow(first + i, int(times[i]), f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9],
                             sealed)

    def daily(self, order_ref: str, since_day: str | None = None) -> list[dict[str, Any]]:
        """Hits per day (and node, zone, action) for one order: no personal data."""
        q = "SELECT day, node, zone, action, hits, first_ms, last_ms FROM daily WHERE order_ref = ?"
        args: list[Any] = [order_ref]
        if since_day:
            q += " AND day >= ?"
            args.append(since_day)
        return [{"day": d, "node": n, "zone": z, "action": a, "hits": h, "first_ms": f, "last_ms": la}
                for d, n, z, a, h, f, la in self.conn.execute(q + " ORDER BY day, node, zone, action", args)]

    def counts(self) -> dict[str, int]:
        r = self.conn.execute("SELECT (SELECT count(*) FROM hits), (SELECT count(*) FROM batches), "
                              "(SELECT coalesce(sum(records), 0) FROM gaps), (SELECT count(*) FROM holds)").fetchone()
        if self.schema_version() >= 2:
            live, segs = self.conn.execute("SELECT coalesce(sum(live), 0), count(*) FILTER (WHERE live > 0) "
                                           "FROM segments").fetchone()
            r = (r[0] + live, r[1] + segs, r[2], r[3])
        return {"records": int(r[0]), "batches": int(r[1]), "purged": int(r[2]), "holds": int(r[3])}
