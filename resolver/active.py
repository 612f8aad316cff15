"""The active policy: loading zones into an ``rpz.Policy`` and the one reference that is swapped.

Build, validate, swap (STYLE.md habit 5): a new ``ActivePolicy`` is built beside the running one;
only when every zone loaded is the holder's reference replaced. A query reads the reference once
when it arrives and keeps that object to the end, so queries in flight finish on the policy they
started with, and the next query sees the new one.

Per-generation memo: decisions that do not depend on the client (no CLIENT-IP triggers anywhere)
are remembered per (QNAME, QTYPE) together with the response pieces built for them; the memo
belongs to the generation, so a swap drops it with the old policy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import rpz
from rpz import CompiledZone, Policy, PolicyZone, snapshot

from .config import Config, ZoneConfig
from .errors import PolicyLoadError

MEMO_LIMIT = 200_000


class ActivePolicy:
    """One loaded generation of the policy, with its memo. Immutable apart from the memo."""

    __slots__ = ("client_dependent", "generation", "loaded_at", "memo", "policy", "response_triggers",
                 "serials", "sources")

    def __init__(self, policy: Policy, generation: int, loaded_at: float, sources: tuple[str, ...] = ()) -> None:
        self.policy = policy
        self.generation = generation
        self.loaded_at = loaded_at
        self.serials = policy.serials()
        self.client_dependent = policy.has_client_ip
        self.response_triggers = policy.has_response_triggers
        self.memo: dict[tuple[bytes, int], Any] = {}
        self.sources = sources

    def remember(self, key: tuple[bytes, int], value: Any) -> None:
        memo = self.memo
        if len(memo) >= MEMO_LIMIT:
            memo.clear()   # a random-subdomain flood must not grow it without bound
        memo[key] = value


@dataclass(frozen=True, slots=True)
class ZoneLoad:
    name: str
    serial: int
    rules: int
    rejected: int
    path: str
    seconds: float


def load_zone(z: ZoneConfig, path: str) -> CompiledZone:
    """Load one zone: a compiled snapshot (mapped, shared between workers) or zone text."""
    if z.source == "snapshot" or path.endswith(".snap"):
        try:
            return snapshot.open_snapshot(path)
        except OSError as exc:
            raise PolicyLoadError(f"{path}: cannot open the snapshot: {exc.strerror}") from exc
        except rpz.RpzError as exc:
            raise PolicyLoadError(f"{path}: {exc}") from exc
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        what = "no such file" if isinstance(exc, FileNotFoundError) else exc.strerror
        hint = " (has the feed been synced yet? run: hotline-edge feed sync)" if "/feeds/" in path else ""
        raise PolicyLoadError(f"{path}: cannot read the zone: {what}{hint}") from exc
    try:
        return rpz.compile_text(data, path, z.origin, fast=True)
    except rpz.RpzError as exc:
        raise PolicyLoadError(f"{path}: {exc}") from exc


def compile_snapshots(cfg: Config, directory: str, generation: int,
                      log: Callable[..., None] | None = None) -> Config:
    """Compile every zone given as text into a snapshot under ``directory``; return the
    configuration that names the snapshots instead, so worker processes map one shared copy
    instead of each compiling its own. PolicyLoadError names the zone that failed."""
    os.makedirs(directory, mode=0o750, exist_ok=True)
    zones = []
    for i, z in enumerate(cfg.zones):
        path = cfg.zone_path(z)
        if z.source == "snapshot" or path.endswith(".snap"):
            zones.append(z)
            continue
        t0 = time.monotonic()
        try:
            cz = load_zone(z, path)
        except PolicyLoadError as exc:
            raise PolicyLoadError(f"policy.zone[{i}] ({z.name or z.path}): {exc}") from exc
        snap = os.path.join(directory, f"gen{generation}-zone{i}.snap")
        try:
            snapshot.write_snapshot(cz, snap)
        except OSError as exc:
            raise PolicyLoadError(f"{snap}: cannot write the compiled snapshot: {exc.strerror}") from exc
        if log is not None:
            _log_rejections(log, z.name or cz.name, cz, path)
            log("info", "zone_compiled", zone=z.name or cz.name, serial=cz.serial, rules=cz.stats.rules,
                file=path, snapshot=snap, seconds=round(time.monotonic() - t0, 3))
        zones.append(dataclasses.replace(z, source="snapshot", path=snap))
    return dataclasses.replace(cfg, zones=tuple(zones))


def remove_old_snapshots(directory: str, keep_generation: int) -> None:
    """Delete compiled snapshots of older generations (workers that map them keep their pages)."""
    with contextlib.suppress(OSError):
        for name in os.listdir(directory):
            if name.startswith("gen") and name.endswith(".snap") and not name.startswith(f"gen{keep_generation}-"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, name))


def _log_rejections(log: Callable[..., None], name: str, cz: CompiledZone, path: str) -> None:
    for r in list(cz.rejections)[:20]:
        log("warning", "record_rejected", zone=name, where=f"{r.source}:{r.line}", owner=r.owner, reason=r.reason)
    if len(cz.rejections) > 20:
        log("warning", "records_rejected", zone=name, file=path, count=len(cz.rejections),
            hint=f"hotline-edge rpz check {path} lists them all")


def build_policy(cfg: Config, log: Callable[..., None] | None = None) -> tuple[Policy, list[ZoneLoad]]:
    """Load every configured zone in order. PolicyLoadError names the zone that failed."""
    zones = []
    loads = []
    for i, z in enumerate(cfg.zones):
        path = cfg.zone_path(z)
        t0 = time.monotonic()
        try:
            cz = load_zone(z, path)
            settings = z.settings()
        except PolicyLoadError as exc:
            raise PolicyLoadError(f"policy.zone[{i}] ({z.name or z.path}): {exc}") from exc
        except rpz.RpzError as exc:
            raise PolicyLoadError(f"policy.zone[{i}] ({z.name or z.path}): {exc}") from exc
        zones.append(PolicyZone(cz, settings))
        rej = len(getattr(cz, "rejections", ()) or ())
        load = ZoneLoad(settings.name or cz.name, cz.serial, cz.stats.rules if cz.stats else 0, rej, path,
                        round(time.monotonic() - t0, 3))
        loads.append(load)
        if log is not None:
            log("info", "zone_loaded", zone=load.name, serial=load.serial, rules=load.rules,
                rejected=load.rejected, file=path, seconds=load.seconds)
            if rej and z.source != "snapshot":
                _log_rejections(log, load.name, cz, path)
    try:
        policy = Policy(zones)
    except rpz.RpzError as exc:
        raise PolicyLoadError(str(exc)) from exc
    return policy, loads


def sources_of(cfg: Config) -> tuple[str, ...]:
    return tuple(os.path.abspath(cfg.zone_path(z)) for z in cfg.zones)


class PolicyHolder:
    """The one reference the data plane reads. ``None`` until the first policy has loaded."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active: ActivePolicy | None = None

    def swap(self, policy: Policy, generation: int, loaded_at: float, sources: tuple[str, ...] = ()) -> ActivePolicy:
        """Make ``policy`` the one queries see from now on (one reference assignment)."""
        new = ActivePolicy(policy, generation, loaded_at, sources)
        self.active = new
        return new
