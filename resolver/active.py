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

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import rpz
from rpz import CompiledZone, Policy, PolicyZone

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
            from rpz import snapshot  # type: ignore[attr-defined]
        except ImportError:
            raise PolicyLoadError(f"{path}: compiled snapshots need rpz.snapshot, which this build lacks; "
                                  "configure the zone text with file = ... instead") from None
        try:
            zone: CompiledZone = snapshot.open_snapshot(path)
        except OSError as exc:
            raise PolicyLoadError(f"{path}: cannot open the snapshot: {exc.strerror}") from exc
        except rpz.RpzError as exc:
            raise PolicyLoadError(f"{path}: {exc}") from exc
        return zone
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        what = "no such file" if isinstance(exc, FileNotFoundError) else exc.strerror
        hint = " (has the feed been synced yet? run: hotline-edge feed sync)" if "/feeds/" in path else ""
        raise PolicyLoadError(f"{path}: cannot read the zone: {what}{hint}") from exc
    try:
        return rpz.compile_text(data, path, z.origin)
    except rpz.RpzError as exc:
        raise PolicyLoadError(f"{path}: {exc}") from exc


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
            if rej:
                for r in list(cz.rejections)[:20]:
                    log("warning", "record_rejected", zone=load.name, where=f"{r.source}:{r.line}",
                        owner=r.owner, reason=r.reason)
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
