"""Getting hits from every data-plane process into ONE hash chain without the data plane waiting on disk.

    worker process (N of them)                        supervisor process
    batched UDP reader -> ShippingSink.packed_hits    BlocklogWriter thread:
    other producers -> ShippingSink.submit_hits       poll() the unix socket <runtime_dir>/blocklog.sock
      flusher thread, every flush/4 -----------------> (SOCK_SEQPACKET: one message per batch part),
      marshal((2, pid, dropped, records, batches,      decodes addresses and templates, every flush/4:
      slots, at, numbers, definitions)), one           BlocklogStore.write_batch (seal, chain, insert,
      SOCK_SEQPACKET message per <= 4096 answers       aggregates, commit + fsync)
      (and no larger than the socket takes)

The batched UDP reader leaves the hits of each receive batch in the sink's ``packed_hits``
(resolver.hits.PackedHits) as they are, one tuple per batch appended without a call: the batch's
sender-address slots as the kernel wrote them and per answer with hits one int, its tag (its slot,
and the number its templates were given when the answer was remembered: resolver.hits.TemplateNumbers).
The flusher takes them as flat buffers and splits the tags with numpy. The data plane builds no
object per hit; the writer turns the address slots into (ip, port) on its own core. Other producers (the
TCP path, the pipeline's full path, Unbound's plugin threads) append one tuple per query to ``q``
(``submit_hits``). A full queue refuses the hits and counts them; the count travels with every
message, so the writer's metrics and its audit chain see every worker's drops, and the worker logs
them itself once per interval (never silent). A record is on disk at most about flush_interval after
the hit: the worker ships every flush/4, the writer commits every flush/4, and a commit of what
arrives in flush/4 takes a fraction of that at the rates the writer sustains
(bench/blocklog_bench.py).

Message (protocol 2): ``(2, pid, dropped_so_far, records, batches, slots, at, numbers, definitions)``:

    records      [(time_ms, ip, port, templates, transport), ...]   one per query, templates inline
    batches      [(time_ms, transport, family, slots, answers), ...] one per receive batch with hits
    slots        bytes: the batches' address slots (``mmsg.NAME_SIZE`` bytes each), batch after batch
    at           bytes: per answer with hits, its slot within its batch
    numbers      array('I') bytes: per answer with hits, its tuple of templates as a number in this
                 connection's template table
    definitions  None, or (base, [templates, ...]): the tuples numbered base, base + 1, ... (new to
                 the table); base 0 starts the table again (a new connection, or the data plane's
                 numbering started again: a policy swap, or past TABLE_MAX)

The connection's table follows the data plane's numbering (TemplateNumbers), so a tuple of
templates travels once per connection and numbering however often it is hit; the writer checks
each definition once. A message may carry definitions only (a long run after a new connection).
Protocol 1 (``(1, pid, dropped, records)``) is still accepted.

The socket is the service's own (mode 0600 in the runtime directory) and the writer accepts only
peers of its own uid (SO_PEERCRED), so marshal (fast, but not for untrusted input) is acceptable;
every decoded message is still checked field by field. ``submit_hits`` works from any thread of any
process (Unbound's plugin threads too): ``deque.append`` is atomic. ``packed_hits`` has one
producer thread (the event loop's); it is bounded in batches there (a stopped flusher) and in
answers by the flusher (what does not fit while the writer is away is counted).
"""

from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import functools
import marshal
import operator
import os
import select
import socket
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from .blocklog import Columns, Raw, Template, columns_from_raws
from .blocklog_config import BlocklogConfig
from .blocklog_seal import ADDR_W
from .errors import BlocklogError
from .hits import HitRecord, PackedHits, TemplateNumbers, flatten, hits_of
from .metrics import BLOCKLOG_PREFIX
from .mmsg import NAME_SIZE, decode_sockaddr

decode_packed: Callable[[list[Any], Any, Any], tuple[bytes, bytes, bytes | None] | None] | None
try:     # packed batches decoded in one pass (resolver/_packed.c, an optional extension)
    from ._packed import decode_packed
    PACKED_DECODING = "c"
except ImportError:   # built without a compiler: numpy does it (_packed_columns)
    decode_packed = None
    PACKED_DECODING = "numpy"

PROTOCOL = 2
PROTOCOLS = frozenset({1, 2})
MESSAGE_RECORDS = 512           # records per message when each carries its templates (tens of KB)
MESSAGE_ANSWERS = 4096          # answers per message of packed batches (their templates by reference)
# A message must fit the socket's send buffer in one piece (SOCK_SEQPACKET; EMSGSIZE otherwise):
# twice wmem_max, 416 KiB on a stock kernel. Packed batches carry every address slot up to their
# last answer with hits, so where hits are sparse a message is bounded by its slots' bytes first.
MESSAGE_BYTES = 192 << 10       # a message of packed batches at most (slots, batches, answers; without definitions)
BATCH_OVERHEAD = 48             # a batch's (time_ms, transport, family, slots, answers) marshalled, at most
TABLE_MAX = 65_536              # templates a connection's table holds before it starts again
SEND_BUFFER = 4 << 20          # the shipping socket's send buffer asked for (the kernel caps it at wmem_max)
MESSAGE_DEFINITIONS = 2048     # template definitions per message when a long run is sent (a new connection)
RECV_BYTES = 1 << 20
LOG_INTERVAL_S = 10.0
BATCH_MAX = 20_000              # records per commit at most (a backlog is written in several)
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
TRANSPORTS = frozenset({"udp", "tcp"})
FAMILIES = frozenset({socket.AF_INET, socket.AF_INET6})
MAX_SLOTS = 256                 # ``at`` holds one byte per answer
# one receive batch's hits (submit_packed): time_ms, transport, family, address slots, slots with hits,
# one tuple of hit templates per slot with hits
Packed = tuple[int, str, int, bytes, bytes, list[tuple[Template, ...]]]
Log = Callable[..., None]


_AT = operator.itemgetter(3)                 # of a PackedHits batch (time_ms, family, names, tags, tuples): tags
_NAMES = operator.itemgetter(2)              # ... and its address slots
UDP = "udp"
# batched hits as PackedHits.take_batches gives them: the batches as the reader added them (time_ms,
# family, slots, tags, tuples), and the numbering their tags (number << 8 | slot) belong to
Held = tuple[list[tuple[int, int, bytes, list[int], list[Any]]], list[tuple[Template, ...]]]


def _nolog(level: str, event: str, **fields: Any) -> None:
    return None


class ShippingSink:
    """The HitSink of a data-plane process: bounded queues emptied every ``interval_s`` by a
    flusher that ships their contents to the writer over the unix socket. The batched UDP reader
    leaves its hits in ``packed_hits`` (resolver.hits.PackedHits); every other producer appends
    one tuple per query to ``q``.

    The flusher is a thread of its own, or, given ``loop``, a timer on that event loop (the data
    plane's: no second thread taking the GIL from the reader, no thread switches). On the loop the
    socket is non-blocking: when the writer's socket is full, what was not sent waits (bounded, as
    when the writer is away) for the next turn, and the loop never waits on the writer."""

    def __init__(self, socket_path: str, *, queue_size: int = 100_000, interval_s: float = 0.05,
                 log: Log = _nolog, clock: Callable[[], float] = time.monotonic,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.path = socket_path
        self.q: collections.deque[Raw] = collections.deque()      # one entry per query
        self.packed_hits = PackedHits(queue_size, NAME_SIZE, TemplateNumbers(TABLE_MAX))   # the batched reader's
        self.limit = queue_size    # queries each queue holds before it refuses more (counted)
        self.interval = interval_s
        self.shipped = 0           # queries whose hits were handed to the writer
        self.log = log
        self.clock = clock
        self._dropped = 0          # hits ``q`` refused (written by its producers)
        self._unshippable = 0      # hits that could not be encoded (written by the flusher)
        self._held: list[Held] = []   # batched hits taken but not sent yet (the writer was away)
        self._sock: socket.socket | None = None
        self._logged_drops = 0
        self._last_log = -LOG_INTERVAL_S
        self._unreachable_since: float | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()    # serializes shipping (the flusher thread vs close)
        # this connection's template table follows a TemplateNumbers list: which one, and how many of
        # its tuples the writer has (the writer keeps the same list per connection)
        self._tuples: list[tuple[Template, ...]] | None = None
        self._sent = 0
        self._room = 1 << 20       # the largest message the connection's socket takes (set on connect)
        self.deferred = 0          # flushes that found the writer's socket full (on the loop; cumulative)
        self._loop = loop
        self._thread: threading.Thread | None = None
        if loop is None:
            self._thread = threading.Thread(target=self._run, name="blocklog-shipper", daemon=True)
            self._thread.start()
        else:
            loop.call_later(interval_s, self._tick)

    @property
    def dropped(self) -> int:
        """Hits not shipped because a queue was full or they could not be encoded (cumulative)."""
        p = self.packed_hits
        return self._dropped + self._unshippable + p.dropped + p.trimmed

    def shipping_stats(self) -> dict[str, int]:
        """For the worker's metrics (resolver.metrics): ``deferred`` flushes so far, and the hits
        ``held`` now (waiting to be shipped). From the producer's thread (the event loop's)."""
        return {"deferred": self.deferred, "held": self.queued()}

    # -- called on the query path -----------------------------------------------------------------
    def queued(self) -> int:
        """Queries whose hits wait in this process."""
        return (len(self.q) + sum(map(len, map(_AT, list(self.packed_hits.batches))))
                + self._held_answers())

    def submit_hits(self, time_ms: int, ip: str, port: int, templates: tuple[Template, ...], transport: str) -> None:
        """The hits of one query. Never blocks: a full deque counts the hits as dropped."""
        q = self.q
        if len(q) < self.limit:
            q.append((time_ms, ip, port, templates, transport))
        else:
            self._dropped += len(templates)

    def submit_packed(self, time_ms: int, family: int, names: bytes, at: bytes,
                      templates: list[tuple[Template, ...]], transport: str) -> None:
        """The hits of one receive batch answered at ``time_ms`` (resolver.pipeline.Pipeline.submit_packed;
        the batched reader does the same inline, with the templates numbered when the answer was
        remembered). Never blocks. From the producer thread of ``packed_hits`` only."""
        numbers = self.packed_hits.numbers
        tags = [numbers.tag(t) for t in templates] if transport == UDP else []
        if transport != UDP or None in tags:   # numbers full: the pipeline starts them again, not a sink
            self.submit_many(time_ms, [(ip, port, t) for (ip, port), t in
                                       zip(addresses(family, names, at), templates, strict=True)], transport)
            return
        self.packed_hits.add(time_ms, family, names, [t | a for t, a in zip(tags, at, strict=True)],  # type: ignore[operator]
                             numbers.tuples)

    def submit_many(self, time_ms: int, hits: list[tuple[str, int, tuple[Template, ...]]], transport: str) -> None:
        """The hits of a batch of queries answered at ``time_ms`` as (ip, port, templates): one
        extend of the deque. Never blocks: what does not fit is counted as dropped."""
        q = self.q
        room = self.limit - len(q)
        if room < len(hits):
            self._dropped += sum(len(h[2]) for h in hits[max(room, 0):])
            hits = hits[:max(room, 0)]
        q.extend([(time_ms, ip, port, templates, transport) for ip, port, templates in hits])

    def submit(self, hit: HitRecord) -> None:
        """resolver.hits.HitSink: one HitRecord (the slower, general entry point)."""
        self.submit_hits(hit.time_ms, hit.client_ip, hit.client_port,
                         ((hit.qname, hit.qtype, hit.zone, hit.serial, hit.trigger, hit.rule_owner, hit.action,
                           hit.order_ref),), hit.transport)

    # -- the flusher thread -------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._flush_guarded()

    def _tick(self) -> None:
        if self._stop.is_set() or self._loop is None:
            return
        self._flush_guarded()
        self._loop.call_later(self.interval, self._tick)

    def _flush_guarded(self) -> None:
        """``flush``, and an unexpected error logged instead of ending the flusher."""
        try:
            self.flush()
        except Exception as exc:   # the flusher must outlive a bug: hits keep queueing, bounded
            self.log("error", "blocklog_flush_failed", error=repr(exc),
                     hint="the flusher will try again; this is a bug, please report it")

    def flush(self) -> int:
        """Ship what is queued now; returns how many queries' hits were handed over. What could
        not be sent is kept (the per-query ones at the front of their deque, the batched ones held
        aside within the bound, what does not fit counted) and tried again next time."""
        with self._lock:
            room = self.limit - self._held_answers()
            for _ in range(8):      # one take per numbering of the templates (a restart is rare)
                taken = self.packed_hits.take_batches(max(room, 0))
                if not taken[0]:
                    break
                self._held.append(taken)
                room -= sum(map(len, map(_AT, taken[0])))
            n = len(self.q)
            if n == 0 and not self._held and self.dropped == self._logged_drops:
                return 0
            items = [self.q.popleft() for _ in range(n)]
            sent = 0
            held = self._held_answers()
            try:
                sock = self._connect()
                while sent < n:
                    sent += self._send_fitting(sock, functools.partial(self._records_message, items, sent),
                                               min(MESSAGE_RECORDS, n - sent))
                while self._held:
                    self._send_held(sock)
                if n == 0 and not held:        # nothing queued: the drop count alone
                    sock.send(marshal.dumps((PROTOCOL, os.getpid(), self.dropped, [], [], b"", b"", b"", None)))
                self._unreachable_since = None
            except BlockingIOError:      # the writer's socket is full (on the loop): the rest waits
                self.q.extendleft(reversed(items[sent:]))
                self.deferred += 1
            except OSError as exc:
                self._close_socket()
                self.q.extendleft(reversed(items[sent:]))
                self._note_unreachable(exc)
            except (ValueError, TypeError) as exc:   # not marshallable (a producer's bug): counted, never silent
                left = self._held_answers()
                lost = sum(len(r[3]) for r in items[sent:]) + sum(hits_of(e[3], h[1]) for h in self._held for e in h[0])
                self._held.clear()
                held -= left             # what was sent of the held before the error
                self._unshippable += lost
                self.log("error", "blocklog_unshippable", error=str(exc), dropped=lost,
                         hint="hits that cannot be encoded were counted as dropped; this is a bug, please report it")
                self._close_socket()     # the template table may have numbers the writer never got
            handed = sent + held - self._held_answers()
            self.shipped += handed
            self._log_drops()
            return handed

    def _records_message(self, items: list[Raw], start: int, k: int) -> bytes:
        return marshal.dumps((PROTOCOL, os.getpid(), self.dropped, items[start:start + k], [], b"", b"", b"", None))

    def _held_answers(self) -> int:
        return sum(len(e[3]) for h in self._held for e in h[0])

    def _send_held(self, sock: socket.socket) -> int:
        """Send the oldest held batched hits, whole batches, about MESSAGE_ANSWERS answers a
        message, each message's slots and tags run together only for it; what is sent leaves
        ``_held`` as it goes (an error leaves the rest there). Returns how many answers' hits
        were sent."""
        entries, tuples = self._held[0]
        k = len(entries)
        answers = np.fromiter(map(len, map(_AT, entries)), dtype=np.int64, count=k)
        answers_upto = np.zeros(k + 1, dtype=np.int64)
        np.cumsum(answers, out=answers_upto[1:])
        # what each batch adds to a message at most: its slots, its tuple in ``batches``, 5 bytes an answer
        bytes_upto = np.zeros(k + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, map(_NAMES, entries)), dtype=np.int64, count=k) + BATCH_OVERHEAD + 5 * answers,
                  out=bytes_upto[1:])
        budget = min(MESSAGE_BYTES, self._room // 2)
        bsent = 0
        while bsent < k:
            end = min(int(np.searchsorted(answers_upto, answers_upto[bsent] + MESSAGE_ANSWERS, side="right")),
                      int(np.searchsorted(bytes_upto, bytes_upto[bsent] + budget, side="right"))) - 1
            end = min(max(end, bsent + 1), k)
            try:
                self._send_packed(sock, *flatten(entries[bsent:end], NAME_SIZE), tuples)
            except BaseException:
                self._held[0] = (entries[bsent:], tuples)
                raise
            bsent = end
        self._held.pop(0)
        return int(answers_upto[-1])

    def _send_packed(self, sock: socket.socket, batches: list[tuple[int, str, int, int, int]], names: bytes,
                     tags: array.array[int], tuples: list[tuple[Template, ...]]) -> None:
        """One message of packed batches: per answer its slot (one byte) and its number in the
        connection's template table (4 bytes), split from the tags by numpy; the table follows
        ``tuples`` (the numbering the tags belong to), so the tuples the writer does not have yet
        are the ones from ``_sent`` up to the highest number in the message: they are defined in
        it (a long run, after a new connection, in messages of their own first). No Python code
        per batch or per answer."""
        t = np.frombuffer(tags, dtype=np.uint32)
        numbers = t >> 8
        top = int(numbers.max()) + 1
        if tuples is not self._tuples:       # a new connection, or the numbering started again
            self._tuples, self._sent = tuples, 0
        pid, defs = os.getpid(), None
        if top > self._sent or not self._sent:
            while top - self._sent > MESSAGE_DEFINITIONS:
                self._define(sock, pid, tuples, MESSAGE_DEFINITIONS)
            defs = (self._sent, tuples[self._sent:top])
        at, nums = (t & 0xFF).astype(np.uint8).tobytes(), numbers.tobytes()
        data = marshal.dumps((PROTOCOL, pid, self.dropped, [], batches, names, at, nums, defs))
        if defs is not None and len(data) > self._room:     # long names: the definitions go first, on their own
            while self._sent < top:
                self._define(sock, pid, tuples, top - self._sent)
            data = marshal.dumps((PROTOCOL, pid, self.dropped, [], batches, names, at, nums, None))
        sock.send(data)
        self._sent = max(self._sent, top)

    def _define(self, sock: socket.socket, pid: int, tuples: list[tuple[Template, ...]], most: int) -> None:
        """One message defining up to ``most`` of the tuples the writer does not have yet (fewer
        when they would not fit the socket)."""
        start = self._sent
        self._sent += self._send_fitting(sock, lambda k: marshal.dumps(
            (PROTOCOL, pid, self.dropped, [], [], b"", b"", b"", (start, tuples[start:start + k]))), most)

    def _send_fitting(self, sock: socket.socket, encode: Callable[[int], bytes], most: int) -> int:
        """Send ``encode(k)`` for the largest k <= ``most`` (halving) whose message fits the
        socket; returns k. ValueError when even one item does not fit (counted as unshippable)."""
        k = most
        data = encode(k)
        while len(data) > self._room:
            if k == 1:
                raise ValueError(f"a message of {len(data)} bytes does not fit the socket's {self._room}")
            k //= 2
            data = encode(k)
        sock.send(data)
        return k

    def _connect(self) -> socket.socket:
        if self._sock is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            # on the loop nothing waits for the writer (a full socket is BlockingIOError: the rest
            # waits for the next turn), except the last flushes of close()
            s.settimeout(0.0 if self._loop is not None and not self._stop.is_set() else 2.0)
            with contextlib.suppress(OSError):     # room for a few turns' messages (capped by wmem_max)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
            # the largest message it takes (the kernel refuses one above its send buffer less a
            # header); half of it, so that a message always has a second one's room beside it
            self._room = max(s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2, 4096)
            try:
                s.connect(self.path)
            except OSError:
                s.close()
                raise
            self._sock = s
        return self._sock

    def _close_socket(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
        self._tuples, self._sent = None, 0     # a new connection starts with an empty table on both ends

    def _note_unreachable(self, exc: OSError) -> None:
        now = self.clock()
        if self._unreachable_since is None:
            self._unreachable_since = now
            self.log("warning", "blocklog_writer_unreachable", socket=self.path, error=str(exc),
                     queued=len(self.q), hint="hits wait in this process's queue (bounded by "
                     "[blocklog] queue_size) until the resolver's main process accepts them again")

    def _log_drops(self) -> None:
        now = self.clock()
        if self.dropped > self._logged_drops and now - self._last_log >= LOG_INTERVAL_S:
            self.log("warning", "blocklog_queue_full", dropped=self.dropped - self._logged_drops,
                     dropped_total=self.dropped, queue_size=self.limit,
                     hint="hits were not logged: the writer does not keep up (disk?) or is unreachable; "
                          "see hotline_edge_blocklog_dropped_total")
            self._logged_drops = self.dropped
            self._last_log = now

    def close(self, timeout: float = 5.0) -> None:
        """Stop the flusher and ship what is left (within ``timeout``; on the loop, the socket
        waits for the writer now: this is the end)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        # the loop's timer is not cancelled here: close() may run on another thread (the resolver's
        # executor), and a timer handle belongs to its loop's thread; once stopped, _tick does nothing
        if self._sock is not None:
            self._sock.settimeout(2.0)
        deadline = self.clock() + timeout
        while (self.q or self.packed_hits.batches or self._held) and self.clock() < deadline:
            if not self.flush():
                time.sleep(0.05)
        self._log_drops()
        self._close_socket()


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


V4_SLOT = struct.Struct(">2xH4s20x")    # struct sockaddr_in in a 28-byte slot: port, address (network order)


def _check_templates(tpls: Any, seen: tuple[set[int], set[int]]) -> None:
    """ValueError unless ``tpls`` is a tuple of well-formed hit templates. ``seen``: the ids of the
    tuples and of the templates already checked in this message (they are shared objects)."""
    tuples, templates = seen
    if id(tpls) in tuples:
        return
    if type(tpls) is not tuple:
        raise ValueError(f"bad hit templates {tpls!r:.200}")
    for t in tpls:
        if id(t) in templates:
            continue
        if not (type(t) is tuple and len(t) == 8 and type(t[0]) is str and type(t[1]) is int
                and type(t[2]) is str and type(t[3]) is int and type(t[4]) is str and type(t[5]) is str
                and type(t[6]) is str and (t[7] is None or type(t[7]) is str)):
            raise ValueError(f"bad hit template {t!r:.200}")
        templates.add(id(t))
    tuples.add(id(tpls))


def addresses(family: int, names: bytes, at: bytes) -> list[tuple[str, int]]:
    """(ip, port) of each slot in ``at``, from address slots as the kernel wrote them (as
    ``recvfrom`` would have presented them: resolver.mmsg.decode_sockaddr)."""
    if family == socket.AF_INET:
        slots = list(V4_SLOT.iter_unpack(names))
        ips = {a: socket.inet_ntop(socket.AF_INET, a) for a in {slots[i][1] for i in at}}
        return [(ips[a], port) for port, a in map(slots.__getitem__, at)]
    return [decode_sockaddr(names[i * NAME_SIZE:(i + 1) * NAME_SIZE], family)[:2] for i in at]


def unpack(packed: Packed) -> list[Raw]:
    """One receive batch's hits as records (time_ms, ip, port, templates, transport)."""
    t_ms, transport, family, names, at, templates = packed
    if family == socket.AF_INET:      # the common case in one pass
        slots = list(V4_SLOT.iter_unpack(names))
        ips = {a: socket.inet_ntop(socket.AF_INET, a) for a in {slots[i][1] for i in at}}
        return [(t_ms, ips[a], port, tpls, transport)
                for (port, a), tpls in zip(map(slots.__getitem__, at), templates, strict=True)]
    return [(t_ms, ip, port, tpls, transport)
            for (ip, port), tpls in zip(addresses(family, names, at), templates, strict=True)]


class TemplateTable(list[tuple[Template, ...]]):
    """A connection's template table (the tuples of templates, by number, as ``decode`` keeps it)
    that also keeps, while every tuple holds one template, those templates by the same numbers
    (``firsts``): then a message's records refer to it as they are. ``firsts`` is replaced, never
    emptied, when the table starts again (records still pending refer to the old one)."""

    __slots__ = ("firsts", "single")

    def __init__(self) -> None:
        super().__init__()
        self.firsts: list[Template] = []
        self.single = True

    def sync(self) -> None:
        if len(self.firsts) > len(self):               # started again
            self.firsts, self.single = [], True
        for tpls in self[len(self.firsts):]:
            if len(tpls) != 1:
                self.single = False
            self.firsts.append(tpls[0] if tpls else ("", 0, "", 0, "", "", "", None))


def _message(data: bytes, table: list[tuple[Template, ...]] | None
             ) -> tuple[int, int, list[Raw], list[Any], bytes, bytes, np.ndarray, list[tuple[Template, ...]]]:
    """One message checked, the template definitions it carries applied to ``table``: (pid, dropped,
    records, batches, address slots, slots with hits, template numbers, table). ValueError when it
    is not well formed (the batches themselves are checked by ``_spans``)."""
    try:
        msg = marshal.loads(data)  # noqa: S302 (peers run as our own uid, SO_PEERCRED; checked below)
    except (EOFError, ValueError, TypeError) as exc:
        raise ValueError(f"not a message: {exc}") from None
    if not (type(msg) is tuple and len(msg) in (4, 9) and msg[0] in PROTOCOLS and len(msg) == (4 if msg[0] == 1 else 9)
            and type(msg[1]) is int and type(msg[2]) is int and type(msg[3]) is list
            and (msg[0] == 1 or (type(msg[4]) is list and type(msg[5]) is bytes and type(msg[6]) is bytes
                                 and type(msg[7]) is bytes and (msg[8] is None or type(msg[8]) is tuple)))):
        raise ValueError("not a protocol 1 or 2 message (version, pid, dropped, records[, batches, address slots, "
                         "slots with hits, template numbers, template definitions])")
    records: list[Raw] = msg[3]
    seen: tuple[set[int], set[int]] = (set(), set())
    for r in records:
        if not (type(r) is tuple and len(r) == 5 and type(r[0]) is int and type(r[1]) is str
                and type(r[2]) is int and r[4] in TRANSPORTS):
            raise ValueError(f"bad record {r!r:.200}")
        _check_templates(r[3], seen)
    if table is None:
        table = []
    if msg[0] == 1:
        return msg[1], msg[2], records, [], b"", b"", np.zeros(0, dtype=np.uint32), table
    batches, names, at, numbers_raw, defs = msg[4:]
    if defs is not None:
        if not (len(defs) == 2 and type(defs[0]) is int and type(defs[1]) is list):
            raise ValueError(f"bad template definitions {defs!r:.200}")
        if defs[0] != len(table) and defs[0] != 0:
            raise ValueError(f"template definitions start at {defs[0]}, the table holds {len(table)}")
        for tpls in defs[1]:
            _check_templates(tpls, seen)
        if defs[0] == 0:
            table.clear()
            if isinstance(table, TemplateTable):
                table.firsts, table.single = [], True
        table.extend(defs[1])
        if isinstance(table, TemplateTable):
            table.sync()
    if len(numbers_raw) != 4 * len(at):
        raise ValueError(f"{len(numbers_raw) // 4} template numbers for {len(at)} answers")
    numbers = np.frombuffer(numbers_raw, dtype=np.uint32)
    if len(numbers) and (top := int(numbers.max())) >= len(table):
        raise ValueError(f"packed batches refer to template {top}, the table holds {len(table)}")
    return msg[1], msg[2], records, batches, names, at, numbers, table


_I64 = (-(1 << 63), 1 << 63)


def _bad_batch(batches: list[Any], names: bytes, at: bytes) -> ValueError:
    """The error naming the first packed batch that is not well formed (or, when each is, that
    together they do not cover the slots and answers exactly): the slow path of ``_spans``."""
    slot = answer = 0
    for b in batches:
        if not (type(b) is tuple and len(b) == 5 and type(b[0]) is int and _I64[0] <= b[0] < _I64[1]
                and type(b[1]) is str and b[1] in TRANSPORTS and type(b[2]) is int and b[2] in FAMILIES
                and type(b[3]) is int and type(b[4]) is int
                and 0 < b[3] <= MAX_SLOTS and b[4] > 0
                and (slot + b[3]) * NAME_SIZE <= len(names) and answer + b[4] <= len(at)):
            return ValueError(f"bad packed batch {b!r:.200} (at slot {slot}, answer {answer})")
        slot += b[3]
        answer += b[4]
    return ValueError(f"packed batches cover {slot} slots and {answer} answers of {len(names) // NAME_SIZE} "
                      f"and {len(at)}")


class Spans(NamedTuple):
    """Where a message's packed batches lie, and what each answer takes from its batch."""
    firsts: np.ndarray      # per batch: its first slot
    answers: np.ndarray     # per batch: its first answer
    which: np.ndarray       # per answer: its batch
    at: np.ndarray          # per answer: its slot within its batch (uint8)
    times: np.ndarray       # per batch: time_ms (int64)
    v4: np.ndarray          # per batch: AF_INET (else AF_INET6)
    tcp: np.ndarray | None  # per batch: 1 for tcp; None when every batch is udp


def _spans(batches: list[Any], names: bytes, at: bytes) -> Spans:
    """The packed batches by column; ValueError unless every batch is a well-formed (time_ms,
    transport, family, slots, answers), each answer's slot is one of its batch's and together
    the batches cover the slots and answers exactly. Checked a column at a time (a receive batch
    holds ~10 answers under load, so per-batch Python code would cost as much as the answers);
    a message that fails is walked batch by batch to name the first bad one."""
    nb = len(batches)
    if not (set(map(type, batches)) <= {tuple} and set(map(len, batches)) <= {5}):
        raise _bad_batch(batches, names, at)
    t_col, tr_col, fam_col, slot_col, ans_col = zip(*batches, strict=True) if nb else ((),) * 5
    if not (set(map(type, t_col)) <= {int} and set(map(type, slot_col)) <= {int} and set(map(type, ans_col)) <= {int}
            and set(map(type, tr_col)) <= {str} and set(tr_col) <= TRANSPORTS
            and set(map(type, fam_col)) <= {int} and set(fam_col) <= FAMILIES):
        raise _bad_batch(batches, names, at)
    try:                     # an int past int64 (time) or far past the bounds (slots, answers)
        times = np.array(t_col, dtype=np.int64)
        slots = np.array(slot_col, dtype=np.int64)
        counts = np.array(ans_col, dtype=np.int64)
    except OverflowError:
        raise _bad_batch(batches, names, at) from None
    if (nb and (int(slots.min()) <= 0 or int(slots.max()) > MAX_SLOTS or int(counts.min()) <= 0
                or int(counts.max()) > len(at))) or \
            int(slots.sum()) * NAME_SIZE != len(names) or int(counts.sum()) != len(at):   # (no sum can wrap)
        raise _bad_batch(batches, names, at)
    firsts = np.cumsum(slots) - slots
    answers = np.cumsum(counts) - counts
    which = np.repeat(np.arange(nb), counts)
    at_arr = np.frombuffer(at, dtype=np.uint8)
    outside = at_arr >= slots[which]
    if outside.any():
        k = int(which[np.argmax(outside)])
        raise ValueError(f"bad packed batch {batches[k]!r:.200} (at slot {int(firsts[k])}, answer "
                         f"{int(answers[k])}): an answer's slot is not one of the batch's")
    v4 = np.array(fam_col, dtype=np.int64) == socket.AF_INET
    tcp = np.fromiter(map("tcp".__eq__, tr_col), dtype=np.uint8, count=nb) if "tcp" in tr_col else None
    return Spans(firsts, answers, which, at_arr, times, v4, tcp)


def decode(data: bytes, table: list[tuple[Template, ...]] | None = None) -> tuple[int, int, list[Raw]]:
    """(pid, dropped, records) of one message; ValueError when it is not a well-formed message.
    ``table``: the connection's template table (packed batches refer to it by number; a message
    defines the templates new to it), updated in place; None for a message on its own. (The
    writer reads messages by column: ``decode_columns``.)"""
    pid, dropped, records, batches, names, at, numbers, table = _message(data, table)
    templates = list(map(table.__getitem__, numbers.tolist()))
    sp = _spans(batches, names, at) if batches else None
    firsts, answers = (sp.firsts.tolist(), sp.answers.tolist()) if sp is not None else ([], [])
    for b, slot, answer in zip(batches, firsts, answers, strict=True):
        records.extend(unpack((b[0], b[1], b[2], names[slot * NAME_SIZE:(slot + b[3]) * NAME_SIZE],
                               at[answer:answer + b[4]], templates[answer:answer + b[4]])))
    return pid, dropped, records


def _packed_columns(batches: list[Any], names: bytes, at: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Per answer of packed batches: its time, its address slot (``blocklog_seal.pack_address``'s
    layout) and its transport (None: all udp), by numpy; ValueError naming the first bad batch.
    (What resolver/_packed.c does in one pass, and what it leaves to this path: a bad message.)"""
    sp = _spans(batches, names, at)
    which = sp.which
    n = len(at)
    slots = np.frombuffer(names, dtype=np.uint8).reshape(-1, NAME_SIZE)[sp.firsts[which] + sp.at]
    addrs = np.zeros((n, ADDR_W), dtype=np.uint8)
    addrs[:, 17:19] = slots[:, 2:4]                         # the port, network order in both families
    v4 = sp.v4[which]
    if v4.all():
        addrs[:, 0] = 4
        addrs[:, 1:5] = slots[:, 4:8]                       # sockaddr_in: sin_addr
    else:
        addrs[:, 0] = np.where(v4, 4, 6)
        addrs[v4, 1:5] = slots[v4, 4:8]
        addrs[~v4, 1:17] = slots[~v4, 8:24]                 # sockaddr_in6: sin6_addr
    return sp.times[which], addrs, sp.tcp[which] if sp.tcp is not None else None


def decode_columns(data: bytes, table: list[tuple[Template, ...]] | None = None) -> tuple[int, int, Columns]:
    """(pid, dropped, records by column) of one message, as ``decode`` checks it; packed batches
    without Python code per answer (in one pass in C, or numpy over the address slots; numpy over
    the template numbers), the per-query records of the message first. ValueError when it is not a
    well-formed message."""
    pid, dropped, records, batches, names, at, numbers, table = _message(data, table)
    parts = [columns_from_raws(records)] if records else []
    if batches:
        n = len(at)
        fast = decode_packed(batches, names, at) if decode_packed is not None else None
        if fast is not None:
            times = np.frombuffer(fast[0], dtype=np.int64)
            addrs = np.frombuffer(fast[1], dtype=np.uint8).reshape(n, ADDR_W)
            tcp = np.frombuffer(fast[2], dtype=np.uint8) if fast[2] is not None else None
        else:
            times, addrs, tcp = _packed_columns(batches, names, at)
        nums = numbers
        if isinstance(table, TemplateTable) and table.single:   # one hit per answer: the common case
            parts.append(Columns(times, nums, tcp, addrs, table.firsts, stable=True))
        else:                                                   # an answer with k hits is k records
            uniq, inverse = np.unique(nums, return_inverse=True)
            tuples = [table[k] for k in uniq.tolist()]
            lens = np.array([len(t) for t in tuples], dtype=np.int64)
            per = lens[inverse]
            rep = np.repeat(np.arange(n), per)
            within = np.arange(int(per.sum())) - np.repeat(np.cumsum(per) - per, per)
            starts = np.cumsum(lens) - lens
            parts.append(Columns(times[rep], starts[inverse][rep] + within, None if tcp is None else tcp[rep],
                                 addrs[rep], [t for tpls in tuples for t in tpls]))
    if not parts:
        return pid, dropped, columns_from_raws([])
    return pid, dropped, Columns.concat(parts)


class WriterStats:
    """What the writer did, for metrics and status (read from other threads; plain ints)."""

    def __init__(self) -> None:
        self.records = 0
        self.batches = 0
        self.write_errors = 0
        self.bad_messages = 0
        self.rejected_peers = 0
        self.dropped_writer = 0
        self.dropped_workers: dict[int, int] = {}
        self.pending = 0
        self.head_seq = 0
        self.last_commit = 0.0
        self.batch_hist = [0] * (len(BATCH_BUCKETS) + 1)
        self.batch_sum = 0.0

    def observe(self, seconds: float) -> None:
        i = next((k for k, b in enumerate(BATCH_BUCKETS) if seconds <= b), len(BATCH_BUCKETS))
        self.batch_hist[i] += 1
        self.batch_sum += seconds

    @property
    def dropped(self) -> int:
        return self.dropped_writer + sum(self.dropped_workers.values())


class BlocklogWriter:
    """The one writer: accepts the workers' messages on the unix socket, writes a batch every
    flush/4 (BlocklogStore.write_batch), counts and audits drops. Runs in its own thread."""

    def __init__(self, cfg: BlocklogConfig, log: Log = _nolog, *, clock: Callable[[], float] = time.time,
                 listen: bool = True) -> None:
        self.cfg = cfg
        self.log = log
        self.clock = clock
        self.listen = listen
        self.stats = WriterStats()
        self.inbox: collections.deque[Raw] = collections.deque()   # in-process producers (tests, bench)
        self.tick = cfg.flush_interval_ms / 4000
        self._pending: list[Columns] = []      # records received, by column, one entry per message
        self._pending_n = 0                    # records in _pending
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._server: socket.socket | None = None
        self._clients: dict[int, socket.socket] = {}
        self._tables: dict[int, TemplateTable] = {}                 # template table per connection
        self._thread = threading.Thread(target=self._run, name="blocklog-writer", daemon=True)
        self._logged = {"dropped": 0, "errors": 0, "bad": 0}
        self._last_log = {"dropped": -LOG_INTERVAL_S, "errors": -LOG_INTERVAL_S, "bad": -LOG_INTERVAL_S}

    def start(self) -> BlocklogWriter:
        """Bind the socket and open the database (in the writer thread); BlocklogError on failure."""
        if self.listen:
            self._server = _bind(self.cfg.socket_path)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._close_server()
            raise BlocklogError(str(self._error)) from self._error
        return self

    def submit_hits(self, time_ms: int, ip: str, port: int, templates: tuple[Template, ...], transport: str) -> None:
        """A producer in this process (the same contract as ShippingSink.submit_hits)."""
        if len(self.inbox) < self.cfg.queue_size:
            self.inbox.append((time_ms, ip, port, templates, transport))
        else:
            self.stats.dropped_writer += len(templates)

    def submit_packed(self, time_ms: int, family: int, names: bytes, at: bytes,
                      templates: list[tuple[Template, ...]], transport: str) -> None:
        """A receive batch's hits from a producer in this process (as ShippingSink.submit_packed)."""
        self.submit_many(time_ms, [(ip, port, t) for (ip, port), t in
                                   zip(addresses(family, names, at), templates, strict=True)], transport)

    def submit_many(self, time_ms: int, hits: list[tuple[str, int, tuple[Template, ...]]], transport: str) -> None:
        """A batch of queries' hits from a producer in this process (as ShippingSink.submit_many)."""
        inbox = self.inbox
        room = self.cfg.queue_size - len(inbox)
        if room < len(hits):
            self.stats.dropped_writer += sum(len(h[2]) for h in hits[max(room, 0):])
            hits = hits[:max(room, 0)]
        inbox.extend([(time_ms, ip, port, templates, transport) for ip, port, templates in hits])

    def submit(self, hit: HitRecord) -> None:
        """resolver.hits.HitSink: one HitRecord from a producer in this process."""
        self.submit_hits(hit.time_ms, hit.client_ip, hit.client_port,
                         ((hit.qname, hit.qtype, hit.zone, hit.serial, hit.trigger, hit.rule_owner, hit.action,
                           hit.order_ref),), hit.transport)

    def close(self, timeout: float = 5.0) -> None:
        """Read what the workers still send (until they hang up or ``timeout``), write it, stop."""
        self._stopping.set()
        self._thread.join(timeout + 5)

    # -- the writer thread --------------------------------------------------------------------------
    def _run(self) -> None:
        from .blocklog import BlocklogStore
        try:
            store = BlocklogStore(self.cfg.path, self.cfg.node)
            self.stats.head_seq = store.head()[0]
        except BlocklogError as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        poll = select.poll()
        if self._server is not None:
            poll.register(self._server.fileno(), select.POLLIN)
        next_flush = time.monotonic() + self.tick
        stop_deadline: float | None = None
        try:
            while True:
                wait = max(0.0, next_flush - time.monotonic())
                for fd, ev in poll.poll(wait * 1000):
                    if self._server is not None and fd == self._server.fileno():
                        self._accept(poll)
                    else:
                        self._read(poll, fd, ev)
                now = time.monotonic()
                if self.inbox and self._pending_n < self.cfg.queue_size:
                    self._take_inbox()
                if now >= next_flush or self._pending_n >= BATCH_MAX:
                    self._flush(store)
                    next_flush = now + self.tick
                if self._stopping.is_set():
                    stop_deadline = stop_deadline or now + 5.0
                    if (not self._clients and not self.inbox) or now >= stop_deadline:
                        self._flush(store)
                        break
        finally:
            for s in list(self._clients.values()):
                s.close()
            self._clients.clear()
            self._close_server()
            store.close()

    def _accept(self, poll: select.poll) -> None:
        assert self._server is not None
        while True:
            try:
                conn, _ = self._server.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if _peer_uid(conn) not in (os.getuid(), 0):
                self.stats.rejected_peers += 1
                conn.close()
                continue
            conn.setblocking(False)
            self._clients[conn.fileno()] = conn
            self._tables[conn.fileno()] = TemplateTable()
            poll.register(conn.fileno(), select.POLLIN)

    def _read(self, poll: select.poll, fd: int, ev: int) -> None:
        conn = self._clients.get(fd)
        if conn is None:
            return
        while True:
            try:
                data = conn.recv(RECV_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                poll.unregister(fd)
                del self._clients[fd]
                self._tables.pop(fd, None)
                conn.close()
                return
            try:
                pid, dropped, cols = decode_columns(data, self._tables.setdefault(fd, TemplateTable()))
            except ValueError as exc:
                self.stats.bad_messages += 1
                self._log_once("bad", self.stats.bad_messages, "blocklog_bad_message", error=str(exc))
                continue
            except Exception as exc:    # a bug in the decoder must not end the writer: the message is lost, counted
                self.stats.bad_messages += 1
                self._log_once("bad", self.stats.bad_messages, "blocklog_bad_message", error=repr(exc),
                               hint="the decoder failed on this message; this is a bug, please report it")
                continue
            self.stats.dropped_workers[pid] = dropped
            self._add_pending(cols)

    def _add_pending(self, cols: Columns) -> None:
        room = max(self.cfg.queue_size - self._pending_n, 0)
        if len(cols) > room:
            self.stats.dropped_writer += len(cols) - room
            cols = cols.part(0, room)
        if len(cols):
            self._pending.append(cols)
            self._pending_n += len(cols)

    def _take_inbox(self) -> None:
        """The in-process producers' hits, by column (a record whose address is not an IP address is
        counted as dropped, as a bad message would be)."""
        raws = [self.inbox.popleft() for _ in range(min(len(self.inbox), self.cfg.queue_size - self._pending_n))]
        try:
            self._add_pending(columns_from_raws(raws))
        except ValueError:
            good = []
            for r in raws:
                try:
                    columns_from_raws([r])
                except ValueError:
                    self.stats.dropped_writer += len(r[3])
                else:
                    good.append(r)
            self._add_pending(columns_from_raws(good))

    def _flush(self, store: Any) -> None:
        """Write what is pending, BATCH_MAX records a batch at most; what the database refuses stays
        pending (bounded) and is tried again."""
        while self._pending:
            parts, n = [], 0
            while self._pending and n < BATCH_MAX:
                p = self._pending.pop(0)
                if n + len(p) > BATCH_MAX:
                    self._pending.insert(0, p.part(BATCH_MAX - n, len(p)))
                    p = p.part(0, BATCH_MAX - n)
                parts.append(p)
                n += len(p)
            t0 = time.perf_counter()
            try:
                written = store.write_columns(parts, now_ms=int(self.clock() * 1000),
                                              public_key=self.cfg.compliance_public_key)
            except BlocklogError as exc:
                self.stats.write_errors += 1
                self._pending[:0] = parts
                self._log_once("errors", self.stats.write_errors, "blocklog_write_failed", error=str(exc),
                               pending=self._pending_n, hint="kept in memory (bounded by queue_size) and tried again")
                break
            self._pending_n -= n
            self.stats.observe(time.perf_counter() - t0)
            self.stats.records += written
            self.stats.batches += 1
            self.stats.head_seq = store.written_seq
            self.stats.last_commit = self.clock()
        self.stats.pending = self._pending_n
        self._audit_drops(store)

    def _audit_drops(self, store: Any) -> None:
        """Drops go on the log's own audit chain (and the log) once per interval."""
        total = self.stats.dropped
        now = time.monotonic()
        if total <= self._logged["dropped"] or now - self._last_log["dropped"] < LOG_INTERVAL_S:
            return
        delta = total - self._logged["dropped"]
        self._last_log["dropped"] = now
        self._logged["dropped"] = total
        self.log("warning", "blocklog_records_dropped", dropped=delta, dropped_total=total,
                 by_worker={str(k): v for k, v in self.stats.dropped_workers.items()},
                 writer=self.stats.dropped_writer, queue_size=self.cfg.queue_size)
        with contextlib.suppress(BlocklogError, sqlite3.Error):
            store.append_audit("dropped", int(self.clock() * 1000), {"dropped": delta, "dropped_total": total})

    def _log_once(self, key: str, value: int, event: str, **fields: Any) -> None:
        now = time.monotonic()
        if value > self._logged[key] and now - self._last_log[key] >= LOG_INTERVAL_S:
            self._logged[key] = value
            self._last_log[key] = now
            self.log("error", event, count=value, **fields)

    def _close_server(self) -> None:
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.close()
            with contextlib.suppress(OSError):
                os.unlink(self.cfg.socket_path)
            self._server = None


def _bind(path: str) -> socket.socket:
    try:
        os.makedirs(os.path.dirname(path), mode=0o750, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        old = os.umask(0o177)
        try:
            s.bind(path)
        finally:
            os.umask(old)
        s.listen(256)
        s.setblocking(False)
        return s
    except OSError as exc:
        raise BlocklogError(f"{path}: cannot open the blocked-lookup log's socket: {exc.strerror or exc} "
                            "(is [node] runtime_dir writable?)") from exc


class BlocklogCollector:
    """prometheus-client collector over a writer's stats (the resolver's /metrics)."""

    PREFIX = BLOCKLOG_PREFIX

    def __init__(self, stats: WriterStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
        s, p = self.stats, self.PREFIX
        yield CounterMetricFamily(p + "records", "Records written to the blocked-lookup log", value=s.records)
        yield CounterMetricFamily(p + "batches", "Batches committed (each with its chain head)", value=s.batches)
        d = CounterMetricFamily(p + "dropped", "Hits not logged because a queue was full, by where",
                                labels=["stage"])
        d.add_metric(["worker"], sum(s.dropped_workers.values()))
        d.add_metric(["writer"], s.dropped_writer)
        yield d
        yield CounterMetricFamily(p + "write_errors", "Batches the database refused (kept and retried)",
                                  value=s.write_errors)
        yield CounterMetricFamily(p + "bad_messages", "Messages on the writer socket that were not well formed "
                                  "or that the decoder failed on (logged; their records are lost)",
                                  value=s.bad_messages)
        yield GaugeMetricFamily(p + "queue_depth", "Records received and not yet written", value=s.pending)
        yield GaugeMetricFamily(p + "head_seq", "Chain position of the newest record written", value=s.head_seq)
        yield GaugeMetricFamily(p + "last_commit_timestamp_seconds", "When the last batch was committed "
                                "(Unix time; 0 before the first)", value=s.last_commit)
        h = HistogramMetricFamily(p + "batch_seconds", "Time to seal, chain, write and commit one batch")
        acc, buckets = 0, []
        for b, n in zip(BATCH_BUCKETS, s.batch_hist, strict=False):
            acc += n
            buckets.append((repr(b), acc))
        buckets.append(("+Inf", acc + s.batch_hist[-1]))
        h.add_metric([], buckets, sum_value=s.batch_sum)
        yield h


METRIC_NAMES = tuple(BlocklogCollector.PREFIX + n for n in (
    "records_total", "batches_total", "dropped_total", "write_errors_total", "bad_messages_total", "queue_depth",
    "head_seq", "last_commit_timestamp_seconds", "batch_seconds",
    "shipping_deferred_total", "worker_held"))     # (the last two from the workers: resolver.metrics)
