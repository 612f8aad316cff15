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

import bisect
import collections
import itertools
import operator
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

    ``batches`` holds one tuple per receive batch with hits, appended by the one producer thread
    (the event loop's; ``add`` is the readable version of what the reader does inline):

        (time_ms, family, names, at, templates)
        names      the batch's first sender-address slots as the kernel wrote them (``slot_size``
                   bytes each: resolver.mmsg.NAME_SIZE)
        at         per answer with hits, its slot (one byte each)
        templates  per answer with hits, its tuple of hit templates (the remembered one)

    The consumer (the sink's flusher) ``take``s them as four flat buffers and bounds them: what
    does not fit in its room is counted in ``trimmed``. The producer refuses a batch when
    ``limit`` batches wait (the consumer has stopped) and counts it in ``dropped``; never silent.
    """

    __slots__ = ("batches", "dropped", "limit", "slot_size", "trimmed")

    def __init__(self, limit: int, slot_size: int = 28) -> None:
        self.batches: collections.deque[tuple[int, int, bytes, bytes | bytearray, list[Any]]] = collections.deque()
        self.limit = limit
        self.slot_size = slot_size
        self.dropped = 0      # hits the producer refused (written by the producer only)
        self.trimmed = 0      # hits the consumer had no room for (written by the consumer only)

    def add(self, time_ms: int, family: int, names: bytes, at: bytes | bytearray, templates: list[Any]) -> bool:
        """One receive batch's hits; False when refused (counted)."""
        if len(self.batches) >= self.limit:
            self.dropped += sum(map(len, templates))
            return False
        self.batches.append((time_ms, family, names, at, templates))
        return True

    def take(self, room: int, transport: str = "udp") -> tuple[list[tuple[int, str, int, int, int]], bytes, bytes,
                                                               list[Any]]:
        """What waits, as (batches, names, at, templates): per batch (time_ms, transport, family,
        slots, answers), then the slots, the answers' slots and their templates, each run together.
        Whole batches beyond ``room`` answers are left out and counted in ``trimmed``."""
        q = self.batches
        entries = [q.popleft() for _ in range(len(q))]     # the producer appends meanwhile: at the other end
        upto = list(itertools.accumulate(map(len, map(_AT, entries))))
        if upto and upto[-1] > room:
            cut = bisect.bisect_right(upto, room)
            self.trimmed += sum(map(len, itertools.chain.from_iterable(map(_TEMPLATES, entries[cut:]))))
            del entries[cut:]
        batches = list(zip(map(_TIME, entries), itertools.repeat(transport), map(_FAMILY, entries),
                           map(self.slot_size.__rfloordiv__, map(len, map(_NAMES, entries))),
                           map(len, map(_AT, entries)), strict=False))
        return (batches, b"".join(map(_NAMES, entries)), b"".join(map(_AT, entries)),
                list(itertools.chain.from_iterable(map(_TEMPLATES, entries))))


_TIME, _FAMILY, _NAMES, _AT, _TEMPLATES = (operator.itemgetter(i) for i in range(5))
