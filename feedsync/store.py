"""Versions on disk, written so that a crash at any instant leaves old or new, complete.

    <state_dir>/feeds/<feed>/
        active.rpz                       hard link to the active version (docs/contracts.md)
        versions/<version>.rpz           compiled zone text the resolver loads
        versions/<version>.source        the verified source: bundle JSON, or the primary's full zone
        versions/<version>.meta.json     serial, digest, entry ids (for diffs), times
        versions/<version>.rpz.gz ...    superseded versions, compressed (read transparently)
        versions/<version>.snap          compiled snapshot (rpz.snapshot) of the active version, full or a
                                         delta over a base snapshot; active.snap is made from it
        active.version                   which version active.rpz and active.snap are (being) switched to
        tuf/                             python-tuf's trusted metadata (bundle feeds)

Every file is written temp -> fsync -> rename -> fsync(dir) (STYLE.md habit 5). ``active.rpz`` is
switched by linking the version into a temp name and renaming it over ``active.rpz``: one atomic
rename, no copy. Versions are kept for ``keep_days`` (>= 180) so "which order blocked X at time T"
stays answerable.

An activation writes ``active.version`` = {"version": V, "complete": false} before it switches
anything and {"complete": true} once both ``active.snap`` and ``active.rpz`` are V's; the feed state
is committed only after that. A crash in between leaves a marker that is incomplete or names a
version the state does not, and recovery puts the last-known-good back (``activation``). An IXFR
switches ``active.snap`` first, asks the resolver (which maps it), and switches ``active.rpz`` right
after (the zone text is written off the path to enforcement).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import StateError

ACTIVE = "active.rpz"
ACTIVE_SNAP = "active.snap"
MARKER = "active.version"
_VERSION = re.compile(r"^(\d{10})-(\d+)-([0-9a-f]{12})$")


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes, mode: int = 0o644) -> None:
    """temp in the same directory, fsync, rename over ``path``, fsync the directory."""
    d = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(d, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(d)


@dataclass(frozen=True, slots=True)
class VersionInfo:
    name: str
    serial: int
    zone_serial: int
    digest: str
    created_at: float
    ids: tuple[str, ...]
    extra: dict[str, Any]


class FeedStore:
    """The files of one feed."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.versions = os.path.join(root, "versions")
        try:
            os.makedirs(self.versions, exist_ok=True)
        except OSError as exc:
            raise StateError(f"{root}: cannot create the feed directory: {exc.strerror}") from exc

    @property
    def active_path(self) -> str:
        return os.path.join(self.root, ACTIVE)

    @staticmethod
    def version_name(created_at: float, zone_serial: int, digest: str) -> str:
        return f"{int(created_at):010d}-{zone_serial}-{digest[:12]}"

    def path(self, version: str, suffix: str) -> str:
        return os.path.join(self.versions, f"{version}.{suffix}")

    def write_version(self, name: str, rpz_text: bytes, source: bytes | None, meta: dict[str, Any]) -> None:
        """The version's files, each atomically; the .rpz last, so a complete .rpz means a complete version.
        When the source is the policy text itself (an RPZ zone with nothing refused), one file is
        written and linked under both names."""
        same = source is not None and (source is rpz_text or source == rpz_text)
        if source is not None and not same:
            atomic_write(self.path(name, "source"), source)
        atomic_write(self.path(name, "meta.json"), json.dumps(meta, sort_keys=True).encode())
        if same:
            atomic_write(self.path(name, "source"), rpz_text)
            tmp = self.path(name, "rpz") + ".tmp"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            os.link(self.path(name, "source"), tmp)
            os.replace(tmp, self.path(name, "rpz"))
            fsync_dir(self.versions)
            return
        atomic_write(self.path(name, "rpz"), rpz_text)

    def has(self, name: str) -> bool:
        return (os.path.exists(self.path(name, "rpz")) or os.path.exists(self.path(name, "rpz.gz"))) and \
            os.path.exists(self.path(name, "meta.json"))

    def read(self, name: str, suffix: str) -> bytes:
        """A version file; superseded versions are stored gzip-compressed (``.gz``)."""
        try:
            try:
                with open(self.path(name, suffix), "rb") as f:
                    return f.read()
            except FileNotFoundError:
                with open(self.path(name, suffix + ".gz"), "rb") as f:
                    return gzip.decompress(f.read())
        except OSError as exc:
            raise StateError(f"{self.path(name, suffix)}: cannot read version {name}: {exc.strerror}") from exc

    def info(self, name: str) -> VersionInfo:
        meta = json.loads(self.read(name, "meta.json"))
        return VersionInfo(name, int(meta["serial"]), int(meta["zone_serial"]), meta["digest"],
                           float(meta["created_at"]), tuple(meta.get("ids") or ()),
                           {k: v for k, v in meta.items()
                            if k not in ("serial", "zone_serial", "digest", "created_at", "ids")})

    def activate(self, name: str) -> None:
        """Point active.snap and active.rpz at version ``name`` (one rename each), bracketed by the
        activation marker."""
        self.begin_activation(name)
        self.switch_snapshot(name)
        self.switch_text(name)
        self.end_activation(name)

    def _marker(self, name: str, complete: bool) -> None:
        atomic_write(os.path.join(self.root, MARKER), json.dumps({"version": name, "complete": complete}).encode())

    def begin_activation(self, name: str) -> None:
        self._marker(name, False)

    def end_activation(self, name: str) -> None:
        self._marker(name, True)

    def switch_text(self, name: str) -> None:
        """active.rpz: a hard link of the version's .rpz, renamed over it; fsync the directory."""
        src = self.path(name, "rpz")
        if not os.path.exists(src):   # a superseded version, stored compressed
            atomic_write(src, self.read(name, "rpz"))
        tmp = os.path.join(self.root, f".{ACTIVE}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        try:
            os.link(src, tmp)
        except OSError:
            with open(src, "rb") as f:
                data = f.read()
            atomic_write(tmp, data)
        os.replace(tmp, self.active_path)
        fsync_dir(self.root)

    def write_snapshot(self, name: str, zone: Any) -> str | None:
        """versions/<name>.snap of the compiled ``zone`` (rpz.snapshot): a full snapshot, or a delta
        over the snapshot file ``zone`` was derived from. Returns the base version of a delta."""
        from rpz.snapshot import write_snapshot
        path = self.path(name, "snap")
        write_snapshot(zone, path)
        if not zone.changes or zone.snapshot_path is None:
            return None
        return os.path.basename(str(zone.snapshot_path))[: -len(".snap")]

    def switch_snapshot(self, name: str, zone: Any = None) -> None:
        """active.snap (what the resolver maps, docs/contracts.md) for version ``name``: a link of a
        full snapshot, or a delta written here so that it names its base from this folder (from
        ``zone`` when the caller has it in memory, else from the version's file). A version without
        a snapshot removes active.snap, so an older one never shadows active.rpz."""
        from rpz.snapshot import open_snapshot, write_snapshot
        active = os.path.join(self.root, ACTIVE_SNAP)
        snap = self.path(name, "snap")
        if not os.path.exists(snap):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(active)
            fsync_dir(self.root)
            return
        if zone is None:
            with open(snap, "rb") as f:
                delta = f.read(8) == b"HEPZDELT"
            zone = open_snapshot(snap, verify=False) if delta else None
        if zone is not None and zone.changes:
            write_snapshot(zone, active)
            return
        tmp = os.path.join(self.root, f".{ACTIVE_SNAP}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.link(snap, tmp)
        os.replace(tmp, active)
        fsync_dir(self.root)

    def deactivate(self) -> None:
        """Nothing active (no version was ever applied): active.rpz, active.snap and the marker go."""
        for fn in (MARKER, ACTIVE_SNAP, ACTIVE):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.root, fn))
        fsync_dir(self.root)

    def activation(self) -> tuple[str | None, bool]:
        """(the version active.rpz/active.snap are, whether its activation completed). Without a
        marker (a state written before it existed): the version active.rpz is a link of."""
        try:
            with open(os.path.join(self.root, MARKER), "rb") as f:
                m = json.loads(f.read())
            v = m.get("version")
            return (str(v) if v is not None else None), bool(m.get("complete"))
        except FileNotFoundError:
            return self._linked_version(), True
        except (OSError, ValueError):
            return None, False

    def active_version(self) -> str | None:
        """The version serving (or being switched to), or None."""
        return self.activation()[0]

    def _linked_version(self) -> str | None:
        """The version active.rpz is a link of (by inode), or None."""
        try:
            st = os.stat(self.active_path)
        except FileNotFoundError:
            return None
        for name in self.names():
            try:
                vs = os.stat(self.path(name, "rpz"))
            except FileNotFoundError:
                continue
            if (vs.st_ino, vs.st_dev) == (st.st_ino, st.st_dev):
                return name
        return None

    def remove(self, name: str) -> None:
        """Delete a version's files (one that was never served: the resolver refused it)."""
        for suffix in ("rpz", "source", "rpz.gz", "source.gz", "snap", "meta.json"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(name, suffix))
        fsync_dir(self.versions)

    def _compress(self, name: str) -> None:
        packed: dict[tuple[int, int], str] = {}
        for suffix in ("source", "rpz"):
            plain = self.path(name, suffix)
            try:
                st = os.stat(plain)
            except FileNotFoundError:
                continue
            twin = packed.get((st.st_dev, st.st_ino))
            if twin is not None:                      # the same file under two names: link the .gz too
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(plain + ".gz")
                os.link(twin, plain + ".gz")
            else:
                with open(plain, "rb") as f:
                    atomic_write(plain + ".gz", gzip.compress(f.read(), compresslevel=1))
                packed[(st.st_dev, st.st_ino)] = plain + ".gz"
            os.unlink(plain)

    def names(self) -> list[str]:
        out = []
        for fn in os.listdir(self.versions):
            base = fn[:-4] if fn.endswith(".rpz") else fn[:-7] if fn.endswith(".rpz.gz") else None
            if base is not None and _VERSION.match(base):
                out.append(base)
        return sorted(set(out))

    def prune(self, now: float, keep_days: int, keep: Iterable[str], keep_snapshots: Iterable[str] = ()) -> list[str]:
        """Delete versions older than ``keep_days`` except those in ``keep``; compress the other
        superseded ones (gzip, about a tenth of the size); delete compiled snapshots (derived data)
        except those in ``keep_snapshots``; remove leftover temp files."""
        keep_set = set(keep)
        snaps = set(keep_snapshots)
        for fn in os.listdir(self.versions):
            if fn.endswith(".snap") and fn[:-5] not in snaps:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.versions, fn))
        cutoff = now - keep_days * 86400
        gone = []
        for name in self.names():
            m = _VERSION.match(name)
            if name in keep_set or m is None:
                continue
            if int(m.group(1)) >= cutoff:
                self._compress(name)
                continue
            for suffix in ("rpz", "source", "rpz.gz", "source.gz", "meta.json"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path(name, suffix))
            gone.append(name)
        for d in (self.root, self.versions):
            for fn in os.listdir(d):
                if fn.startswith(".") and fn.endswith(".tmp"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(d, fn))
        if gone:
            fsync_dir(self.versions)
        return gone


def now_wall() -> float:
    return time.time()
