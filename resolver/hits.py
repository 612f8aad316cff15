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

import array
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


class TemplateNumbers:
    """Numbers for the tuples of hit templates the pipeline remembers answers with, so that the
    batched reader reports an answer's hits as one int: its tag, ``number << 8 | slot``.

    ``tuples[n]`` is the tuple numbered n. Tuples are numbered by identity (the policy memo shares
    one tuple per (QNAME, QTYPE)) and kept alive here, so an id stays theirs. At most ``limit`` are
    numbered: past that ``tag`` refuses (None) and sets ``full``, and the pipeline starts again at
    its next safe point (``restart``: a new ``tuples`` list, the remembered answers forgotten in
    the same step, so no remembered tag refers to the old list). Readers of tags hold on to the
    ``tuples`` list their tags belong to; the consumer sees a restart as a different list.
    """

    __slots__ = ("full", "index", "limit", "tuples")

    def __init__(self, limit: int = 65_536) -> None:
        if not 0 < limit < 1 << 24:
            raise ValueError(f"limit {limit}: between 1 and {(1 << 24) - 1} (a tag keeps 24 bits for the number)")
        self.limit = limit
        self.tuples: list[Any] = []
        self.index: dict[int, int] = {}
        self.full = False

    def tag(self, templates: tuple[Any, ...]) -> int | None:
        """``templates``' number << 8 (an answer's tag without its slot), or None when full."""
        n = self.index.get(id(templates))
        if n is None:
            n = len(self.tuples)
            if n >= self.limit:
                self.full = True
                return None
            self.index[id(templates)] = n
            self.tuples.append(templates)
        return n << 8

    def restart(self) -> None:
        """Number from 0 again in a new list (tags handed out before refer to the old one)."""
        self.tuples = []
        self.index = {}
        self.full = False


def untag(tags: Any, tuples: list[Any]) -> tuple[bytes, list[Any]]:
    """(at, templates) of a run of tags: per answer its slot (one byte) and its tuple of templates."""
    return bytes(t & 0xFF for t in tags), [tuples[t >> 8] for t in tags]


class PackedHits:
    """Where the batched UDP reader leaves the hits of its receive batches for a sink that takes
    them so (``sink.packed_hits``; docs/contracts.md): no object per hit, no call per batch.

    ``batches`` holds one tuple per receive batch with hits, appended by the one producer thread
    (the event loop's; ``add`` is the readable version of what the reader does inline):

        (time_ms, family, names, tags, tuples)
        names      the batch's first sender-address slots as the kernel wrote them (``slot_size``
                   bytes each: resolver.mmsg.NAME_SIZE)
        tags       per answer with hits, ``number << 8 | slot`` (a list of ints): its slot in the
                   batch and its tuple of hit templates as numbered in ``tuples``
        tuples     the ``numbers.tuples`` list the tags belong to (TemplateNumbers)

    ``numbers`` is the producer's TemplateNumbers: the pipeline numbers the tuples it remembers
    answers with there and starts it again (never the consumer). The consumer (the sink's flusher)
    ``take``s batches as flat buffers, those of one ``tuples`` list at a time, and bounds them:
    what does not fit in its room is counted in ``trimmed``. The producer refuses a batch when
    ``limit`` batches wait (the consumer has stopped) and counts it in ``dropped``; never silent.
    """

    __slots__ = ("batches", "dropped", "limit", "numbers", "slot_size", "trimmed")

    def __init__(self, limit: int, slot_size: int = 28, numbers: TemplateNumbers | None = None) -> None:
        self.batches: collections.deque[tuple[int, int, bytes, list[int], list[Any]]] = collections.deque()
        self.limit = limit
        self.slot_size = slot_size
        self.numbers = numbers if numbers is not None else TemplateNumbers()
        self.dropped = 0      # hits the producer refused (written by the producer only)
        self.trimmed = 0      # hits the consumer had no room for (written by the consumer only)

    def add(self, time_ms: int, family: int, names: bytes, tags: list[int], tuples: list[Any]) -> bool:
        """One receive batch's hits; False when refused (counted)."""
        if len(self.batches) >= self.limit:
            self.dropped += hits_of(tags, tuples)
            return False
        self.batches.append((time_ms, family, names, tags, tuples))
        return True

    def take(self, room: int, transport: str = "udp") -> tuple[list[tuple[int, str, int, int, int]], bytes,
                                                               array.array[int], list[Any]]:
        """What waits, as (batches, names, tags, tuples): per batch (time_ms, transport, family,
        slots, answers), then the slots and the answers' tags (``array('I')``) each run together,
        and the list the tags are numbered in (``take_batches``, then ``flatten``)."""
        entries, tuples = self.take_batches(room)
        return (*flatten(entries, self.slot_size, transport), tuples)

    def take_batches(self, room: int) -> tuple[list[tuple[int, int, bytes, list[int], list[Any]]], list[Any]]:
        """The waiting batches as they were added, oldest first, and the list their tags are
        numbered in. Batches numbered in a later list stay for the next take; whole batches beyond
        ``room`` answers are left out and counted in ``trimmed``."""
        q = self.batches
        entries = [q.popleft() for _ in range(len(q))]     # the producer appends meanwhile: at the other end
        if not entries:
            return [], []
        tuples = entries[0][4]
        if entries[-1][4] is not tuples:                   # numbering started again: the rest waits
            cut = next(i for i, e in enumerate(entries) if e[4] is not tuples)
            q.extendleft(reversed(entries[cut:]))
            del entries[cut:]
        upto = list(itertools.accumulate(map(len, map(_TAGS, entries))))
        if upto[-1] > room:
            cut = bisect.bisect_right(upto, room)
            self.trimmed += sum(hits_of(e[3], tuples) for e in entries[cut:])
            del entries[cut:]
        return entries, tuples


def flatten(entries: list[tuple[int, int, bytes, list[int], list[Any]]], slot_size: int, transport: str = "udp"
            ) -> tuple[list[tuple[int, str, int, int, int]], bytes, array.array[int]]:
    """Batches as ``take_batches`` gives them run together: per batch (time_ms, transport,
    family, slots, answers), the slots, and the answers' tags (``array('I')``)."""
    batches = list(zip(map(_TIME, entries), itertools.repeat(transport), map(_FAMILY, entries),
                       map(slot_size.__rfloordiv__, map(len, map(_NAMES, entries))),
                       map(len, map(_TAGS, entries)), strict=False))
    tags: list[int] = []
    for e in entries:
        tags += e[3]
    return batches, b"".join(map(_NAMES, entries)), array.array("I", tags)


def hits_of(tags: Any, tuples: list[Any]) -> int:
    """How many hits a run of tags stands for (an answer may have several)."""
    return sum(len(tuples[t >> 8]) for t in tags)


_TIME, _FAMILY, _NAMES, _TAGS = (operator.itemgetter(i) for i in range(4))
