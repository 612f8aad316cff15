"""The blocked-lookup hook (docs/contracts.md, "Blocked-lookup hook").

Every policy hit the data plane applies or merely logs (PASSTHRU, DISABLED log-only zones
included) becomes one ``HitRecord`` handed to a ``HitSink``. ``submit`` is called on the query
path, so an implementation must never block: the blocklog writer puts records on a bounded queue
and counts what a full queue refuses.

    sink = CountingSink()
    sink.submit(HitRecord(time_ms=..., client_ip="192.0.2.7", client_port=53124,
                          qname="csam-site.test.", qtype=1, zone="hotline.rpz.test.",
                          serial=2026112201, trigger="QNAME", rule_owner="csam-site.test.hotline.rpz.test.",
                          action="nxdomain", order_ref="TW-2026-0042", transport="udp"))
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class HitRecord:
    """One policy hit: who asked what, and which rule of which zone version answered."""

    time_ms: int            # UTC epoch milliseconds
    client_ip: str
    client_port: int
    qname: str              # presentation format, lowered, absolute ("bad.example.test.")
    qtype: int
    zone: str               # the policy zone's configured name (default: its origin)
    serial: int             # the zone version that matched
    trigger: str            # CLIENT-IP | QNAME | IP | NSDNAME | NSIP
    rule_owner: str         # the matched rule's owner name in the policy zone
    action: str             # nxdomain | nodata | passthru | drop | tcp-only | local-data | cname-wildcard | disabled
    order_ref: str | None   # the legal order behind the rule (TXT "order=...") if any
    transport: str          # udp | tcp


@runtime_checkable
class HitSink(Protocol):
    """Where hits go. ``submit`` must return at once (never wait on disk or network)."""

    def submit(self, hit: HitRecord) -> None: ...


class NullSink:
    """Discards every hit (metrics still count them)."""

    __slots__ = ()

    def submit(self, hit: HitRecord) -> None:
        return None


class CountingSink:
    """Counts hits by (zone, action) and keeps the last ``keep`` records, for tests and the demo."""

    __slots__ = ("by_zone_action", "recent", "total")

    def __init__(self, keep: int = 1000) -> None:
        self.total = 0
        self.by_zone_action: dict[tuple[str, str], int] = {}
        self.recent: collections.deque[HitRecord] = collections.deque(maxlen=keep)

    def submit(self, hit: HitRecord) -> None:
        self.total += 1
        key = (hit.zone, hit.action)
        self.by_zone_action[key] = self.by_zone_action.get(key, 0) + 1
        self.recent.append(hit)


class PackedHits:
    """Where the batched UDP reader leaves the hits of its receive batches for a sink that takes
    them so (``sink.packed_hits``; docs/contracts.md): no object per hit, no call per batch.

    ``names``      the sender-address slots of every batch with hits, as the kernel wrote them
                   (``resolver.mmsg.NAME_SIZE`` bytes each), batch after batch
    ``at``         per answer with hits, its slot within its batch (one byte)
    ``templates``  per answer with hits, its tuple of hit templates (the remembered one)
    ``batches``    per batch: (time_ms, transport, family, slots, answers)

    One producer thread appends a batch under ``lock`` (``add`` is the readable version of what
    the reader does inline, holding references to the four containers: they are emptied, never
    replaced); the sink's consumer takes everything under ``lock`` (``take``). A
    batch that would take it past ``limit`` answers is refused whole and its hits are counted in
    ``dropped`` (never silent).
    """

    __slots__ = ("at", "batches", "dropped", "limit", "lock", "names", "templates")

    def __init__(self, limit: int) -> None:
        self.lock = threading.Lock()
        self.names = bytearray()
        self.at = bytearray()
        self.templates: list[Any] = []
        self.batches: list[tuple[int, str, int, int, int]] = []
        self.limit = limit
        self.dropped = 0

    def __len__(self) -> int:
        """Answers with hits held."""
        return len(self.templates)

    def add(self, time_ms: int, transport: str, family: int, names: bytes, slots: int, at: bytes | list[int],
            templates: list[Any]) -> bool:
        """One receive batch's hits (``names``: its first ``slots`` address slots); False when refused."""
        with self.lock:
            if len(self.templates) + len(at) > self.limit:
                self.dropped += sum(map(len, templates))
                return False
            self.names += names
            self.at.extend(at)
            self.templates.extend(templates)
            self.batches.append((time_ms, transport, family, slots, len(at)))
            return True

    def take(self) -> tuple[list[tuple[int, str, int, int, int]], bytes, bytes, list[Any]]:
        """Everything held, as (batches, names, at, templates); empties it."""
        with self.lock:
            out = (self.batches[:], bytes(self.names), bytes(self.at), self.templates[:])
            self.batches.clear()
            self.names.clear()
            self.at.clear()
            self.templates.clear()
        return out
