"""Compiled policy snapshots: one file the resolver maps into memory instead of parsing zones.

Layout (all integers little-endian):

    b"HEPZSNAP"  u32 format  u32 header length  header (UTF-8 JSON)  padding to 8
    sections, each 8-byte aligned, at the offsets the header lists
    32-byte SHA-256 of everything before it

The JSON header holds what is small (origin, SOA, actions, prefixes, statistics, rejections);
sections hold the packed arrays of rpz.index. Opening maps the file read-only and builds the
tables over memoryviews of the map: no copy, so every worker process that maps the same file
shares its pages, and opening takes milliseconds whatever the size. Written atomically
(temp file, fsync, rename, fsync of the directory): a reader sees the old file or the new one.

Opening the same full snapshot file again (same path, device, inode, size and modification time) while
a zone mapped from it is alive returns that zone: a delta over an unchanged base then costs only
its changes, and a process swapping versions holds one mapping of the base, not two. The checksum
is computed by reading the file, not through the mapping, so checking it does not make the whole
file resident in the process (only the pages lookups touch are).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import struct
import weakref
from collections.abc import Iterable
from typing import Any

from .actions import RR, Action, ActionKind
from .errors import SnapshotError
from .index import NameTable, NameTableArrays, PrefixTable, StringTable
from .triggers import Prefix
from .zone import CompiledZone, ZoneStats
from .zonetext import Rejection

MAGIC = b"HEPZSNAP"
DELTA_MAGIC = b"HEPZDELT"
FORMAT = 1
_TABLE_FIELDS = ("blob", "offs", "hashes", "bstart", "rule", "wrule", "kids")
# full snapshots mapped and checked in this process: (path, st_dev, st_ino, st_size, st_mtime_ns) -> zone
# (the path too: a zone remembers the path it was opened by, and deltas name their base by it)
_MAPPED: weakref.WeakValueDictionary[tuple[str, int, int, int, int], CompiledZone] = weakref.WeakValueDictionary()


def atomic_write(path: str, chunks: Iterable[bytes | memoryview], mode: int = 0o644) -> None:
    """Write ``chunks`` to ``path`` so that readers see either the old file or the whole new one."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            for c in chunks:
                f.write(c)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _action_json(a: Action) -> dict[str, Any]:
    out: dict[str, Any] = {"k": int(a.kind)}
    if a.records:
        out["r"] = [[r.rdtype, r.ttl, r.rdata.hex()] for r in a.records]
    if a.garden:
        out["g"] = a.garden.hex()
        out["t"] = a.ttl
    return out


def _action_from(d: dict[str, Any]) -> Action:
    return Action(ActionKind(d["k"]), records=tuple(RR(t, ttl, bytes.fromhex(h)) for t, ttl, h in d.get("r", [])),
                  garden=bytes.fromhex(d.get("g", "")), ttl=d.get("t", 0))


def _as_bytes(x: bytes | memoryview | list[int]) -> bytes | memoryview:
    if isinstance(x, list):
        return struct.pack(f"<{len(x)}I", *x)
    return x


def snapshot_bytes(zone: CompiledZone) -> list[bytes | memoryview]:
    """The snapshot file of ``zone`` (one without incremental changes) as a list of chunks."""
    if zone.changes:
        raise SnapshotError("a zone with incremental changes is written as a delta (write_snapshot does it)")
    sections: list[tuple[str, bytes | memoryview]] = []
    tables: dict[str, dict[str, int]] = {}
    for tname, table in (("qname", zone.base_qname), ("nsdname", zone.base_nsdname)):
        arr = table.arrays
        for f in _TABLE_FIELDS:
            sections.append((f"{tname}.{f}", _as_bytes(getattr(arr, f))))
        tables[tname] = {"maxdepth": arr.maxdepth}
    sections.append(("rule_action", _as_bytes(zone.rule_action)))
    sections.append(("rule_ref", _as_bytes(zone.rule_ref)))
    sections.append(("refs.blob", zone.refs.blob))
    sections.append(("refs.offs", zone.refs.offs))
    layout: dict[str, list[int]] = {}
    pos = 0
    for name, data in sections:
        n = memoryview(data).nbytes
        layout[name] = [pos, n]
        pos += (n + 7) & ~7
    header = {
        "format": FORMAT, "origin": zone.origin.hex(), "source": zone.source,
        "soa": [zone.soa.ttl, zone.soa.rdata.hex()],
        "actions": [_action_json(a) for a in zone.actions],
        "prefixes": {k: [[p.v6, p.length, str(p.value), r] for p, r in t.entries]
                     for k, t in (("client_ip", zone.client_ip), ("ip", zone.ip), ("nsip", zone.nsip))},
        "tables": tables, "sections": layout,
        "stats": {"rules": zone.stats.rules, "records": zone.stats.records,
                  "by_trigger": zone.stats.by_trigger, "by_action": zone.stats.by_action},
        "rejections": [[r.source, r.line, r.owner, r.reason] for r in zone.rejections],
    }
    hdr = json.dumps(header, separators=(",", ":")).encode()
    head = MAGIC + struct.pack("<II", FORMAT, len(hdr)) + hdr
    head += b"\0" * (-len(head) % 8)
    chunks: list[bytes | memoryview] = [head]
    for _, data in sections:
        n = memoryview(data).nbytes
        chunks.append(data if not isinstance(data, memoryview) else data.cast("B"))
        if n % 8:
            chunks.append(b"\0" * (8 - n % 8))
    digest = hashlib.sha256()
    for c in chunks:
        digest.update(c)
    chunks.append(digest.digest())
    return chunks


def write_snapshot(zone: CompiledZone, path: str) -> None:
    """Write ``zone`` to ``path`` atomically.

    A zone derived with ``with_owners`` from a zone opened from a snapshot file is written as a
    small delta naming that base file (and its checksum) plus the changed owners' records; the
    base file must stay where it is while the delta is in use.
    """
    if not zone.changes:
        atomic_write(path, snapshot_bytes(zone))
        return
    if zone.snapshot_path is None or zone.snapshot_digest is None:
        raise SnapshotError(f"{path}: the zone has incremental changes over a base that was never written; "
                            "write the base snapshot first")
    base = os.path.relpath(os.path.abspath(zone.snapshot_path), os.path.dirname(os.path.abspath(path)))
    header = {"format": FORMAT, "base": base, "base_sha256": zone.snapshot_digest.hex(), "source": zone.source,
              "changes": [[o.hex(), [[r.rdtype, r.ttl, r.rdata.hex()] for r in rrs]]
                          for o, rrs in zone.changes.items()]}
    hdr = json.dumps(header, separators=(",", ":")).encode()
    body = DELTA_MAGIC + struct.pack("<II", FORMAT, len(hdr)) + hdr
    atomic_write(path, [body, hashlib.sha256(body).digest()])


def open_snapshot(path: str, verify: bool = True) -> CompiledZone:
    """Map a snapshot file. ``verify`` checks its SHA-256 first (a few ms per 100 MB)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise SnapshotError(f"{path}: cannot open the policy snapshot: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        size = st.st_size
        if size < 16 + 32:
            raise SnapshotError(f"{path}: {size} bytes is too short to be a policy snapshot")
        key = (os.path.abspath(path), st.st_dev, st.st_ino, size, st.st_mtime_ns)
        known = _MAPPED.get(key)
        if known is not None:
            return known
        mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        view = memoryview(mm)
        if view[:8] == DELTA_MAGIC:
            return _open_delta(path, view, size, verify)
        if view[:8] != MAGIC:
            raise SnapshotError(f"{path}: not a policy snapshot (bad magic); compile it with "
                                "`hotline-edge rpz compile`")
        fmt, hlen = struct.unpack_from("<II", mm, 8)
        if fmt != FORMAT:
            raise SnapshotError(f"{path}: snapshot format {fmt}, this version reads format {FORMAT}; recompile it")
        if verify and _file_sha256(fd, size - 32) != view[size - 32 :]:
            raise SnapshotError(f"{path}: checksum mismatch: the snapshot is truncated or corrupted")
    finally:
        os.close(fd)
    try:
        header = json.loads(bytes(view[16 : 16 + hlen]))
    except ValueError as exc:
        raise SnapshotError(f"{path}: unreadable snapshot header: {exc}") from exc
    base = 16 + hlen
    base += -base % 8
    layout = header["sections"]

    def sect(name: str, raw: bool = False) -> memoryview:
        off, n = layout[name]
        v = view[base + off : base + off + n]
        return v if raw else v.cast("I")

    tables = {}
    for tname in ("qname", "nsdname"):
        tables[tname] = NameTable(NameTableArrays(
            blob=sect(f"{tname}.blob", raw=True), offs=sect(f"{tname}.offs"), hashes=sect(f"{tname}.hashes"),
            bstart=sect(f"{tname}.bstart"), rule=sect(f"{tname}.rule"), wrule=sect(f"{tname}.wrule"),
            kids=sect(f"{tname}.kids"), maxdepth=header["tables"][tname]["maxdepth"]))
    pre = {k: PrefixTable([(Prefix(bool(v6), ln, int(val)), r) for v6, ln, val, r in header["prefixes"][k]])
           for k in ("client_ip", "ip", "nsip")}
    st = header["stats"]
    zone = CompiledZone(
        origin=bytes.fromhex(header["origin"]), soa=RR(6, header["soa"][0], bytes.fromhex(header["soa"][1])),
        source=header["source"], actions=[_action_from(a) for a in header["actions"]],
        rule_action=sect("rule_action"), rule_ref=sect("rule_ref"),
        refs=StringTable(sect("refs.blob", raw=True), sect("refs.offs")), qname=tables["qname"],
        nsdname=tables["nsdname"], client_ip=pre["client_ip"], ip=pre["ip"], nsip=pre["nsip"],
        rejections=[Rejection(*r) for r in header["rejections"]],
        stats=ZoneStats(st["rules"], st["records"], st["by_trigger"], st["by_action"]))
    zone.mapped = mm
    zone.snapshot_path = path
    zone.snapshot_digest = bytes(view[size - 32 :])
    if verify:
        _MAPPED[key] = zone
    return zone


def _file_sha256(fd: int, n: int, chunk: int = 1 << 20) -> bytes:
    """SHA-256 of the first ``n`` bytes of ``fd``, read through a buffer (not the mapping)."""
    h = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    pos = 0
    while pos < n:
        got = os.preadv(fd, [view[: min(chunk, n - pos)]], pos)
        if got <= 0:
            raise SnapshotError(f"snapshot shorter than its size while reading it at byte {pos}")
        h.update(view[:got])
        pos += got
    return h.digest()


def _open_delta(path: str, view: memoryview, size: int, verify: bool) -> CompiledZone:
    fmt, hlen = struct.unpack_from("<II", view, 8)
    if fmt != FORMAT:
        raise SnapshotError(f"{path}: delta format {fmt}, this version reads format {FORMAT}")
    if verify and hashlib.sha256(view[: size - 32]).digest() != view[size - 32 :]:
        raise SnapshotError(f"{path}: checksum mismatch: the delta is truncated or corrupted")
    try:
        header = json.loads(bytes(view[16 : 16 + hlen]))
    except ValueError as exc:
        raise SnapshotError(f"{path}: unreadable delta header: {exc}") from exc
    base_path = os.path.join(os.path.dirname(os.path.abspath(path)), header["base"])
    base = open_snapshot(base_path, verify)
    if base.snapshot_digest is None or base.snapshot_digest.hex() != header["base_sha256"]:
        raise SnapshotError(f"{path}: its base {base_path} is not the snapshot it was made from "
                            "(checksum differs); rewrite the delta or restore the base")
    changes = {bytes.fromhex(o): [RR(t, ttl, bytes.fromhex(h)) for t, ttl, h in rrs] for o, rrs in header["changes"]}
    return base.with_owners(changes, source=header.get("source"))
