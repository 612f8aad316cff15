"""Getting hits from every data-plane process into ONE hash chain without the data plane waiting on disk.

    worker process (N of them)                        supervisor process
    ShippingSink.submit_packed -> bounded deques      BlocklogWriter thread:
      flusher thread, every flush/4 -----------------> poll() the unix socket <runtime_dir>/blocklog.sock
      marshal((2, pid, dropped, records, batches,      (SOCK_SEQPACKET: one message per batch part),
      template numbers, new templates)), one           decodes addresses and templates, every flush/4:
      SOCK_SEQPACKET message per <= 1024 answers       BlocklogStore.write_batch (seal, chain, insert,
                                                       aggregates, commit + fsync)

The batched UDP reader hands the hits of one receive batch as they are (``submit_packed``): the
batch's sender-address slots as the kernel wrote them (one bytes copy), which slots were answered
with hits (one byte each) and their hit templates (the remembered tuples). The data plane builds no
object per hit; the writer turns the address slots into (ip, port) on its own core. Other producers
(the TCP path, Unbound's plugin threads) append one tuple per query (``submit_hits``). A full queue
refuses the hits and counts them; the count travels with every message, so the writer's metrics
and its audit chain see every worker's drops, and the worker logs them itself once per interval
(never silent). A record is on disk at most about flush_interval after the hit: the worker ships
every flush/4, the writer commits every flush/4, and a commit of what arrives in flush/4 takes a
fraction of that at the rates the writer sustains (bench/blocklog_bench.py).

Message (protocol 2): ``(2, pid, dropped_so_far, records, batches, numbers, definitions)``:

    records      [(time_ms, ip, port, templates, transport), ...]   one per query, templates inline
    batches      [(time_ms, transport, family, names, at), ...]     one per receive batch: ``names``
                 the address slots (``mmsg.NAME_SIZE`` bytes each), ``at`` one byte per answer with hits
    numbers      array('I') bytes: per answer of ``batches``, in order, its tuple of hit templates as
                 a number in this connection's template table
    definitions  None, or (base, [templates, ...]): the tuples numbered base, base + 1, ... (new to
                 the table); base 0 starts the table again (a new connection, or past TABLE_MAX)

A tuple of templates thus travels once per connection however often it is hit (the sink keeps the
tuples it numbered alive, so their ids stay theirs); the writer checks each definition once.
Protocol 1 (``(1, pid, dropped, records)``) is still accepted.

The socket is the service's own (mode 0600 in the runtime directory) and the writer accepts only
peers of its own uid (SO_PEERCRED), so marshal (fast, but not for untrusted input) is acceptable;
every decoded message is still checked field by field. ``submit_hits`` works from any thread of any
process (Unbound's plugin threads too): ``deque.append`` is atomic. ``submit_packed`` is called
from one thread (the event loop's): it alone counts what it queued.
"""

from __future__ import annotations

import array
import bisect
import collections
import contextlib
import itertools
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
from typing import Any

from .blocklog import Raw, Template
from .blocklog_config import BlocklogConfig
from .errors import BlocklogError
from .hits import HitRecord
from .mmsg import NAME_SIZE, decode_sockaddr

PROTOCOL = 2
PROTOCOLS = frozenset({1, 2})
MESSAGE_RECORDS = 512           # records per message when each carries its templates (tens of KB)
MESSAGE_ANSWERS = 1024          # answers per message of packed batches (their templates by reference)
TABLE_MAX = 65_536              # templates a connection's table holds before it starts again
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


_AT = operator.itemgetter(4)                 # a packed batch's slots with hits
_TEMPLATES = operator.itemgetter(5)          # ... their templates
_BATCH = operator.itemgetter(0, 1, 2, 3, 4)  # ... all but the templates, as a message carries it


def _nolog(level: str, event: str, **fields: Any) -> None:
    return None


class ShippingSink:
    """The HitSink of a data-plane process: a bounded deque emptied by a flusher thread that ships
    its contents to the writer over the unix socket."""

    def __init__(self, socket_path: str, *, queue_size: int = 100_000, interval_s: float = 0.05,
                 log: Log = _nolog, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = socket_path
        self.q: collections.deque[Raw] = collections.deque()           # one entry per query
        self.pq: collections.deque[Packed] = collections.deque()       # one entry per receive batch
        self.packed_in = 0         # answers put on pq (written only by submit_packed's one thread)
        self.packed_out = 0        # answers taken off pq (written only under the shipping lock)
        self.limit = queue_size    # queries (answers with hits) both deques hold together
        self.interval = interval_s
        self.dropped = 0           # hits refused because the deque was full (cumulative)
        self.shipped = 0           # queries whose hits were handed to the writer
        self.log = log
        self.clock = clock
        self._sock: socket.socket | None = None
        self._logged_drops = 0
        self._last_log = -LOG_INTERVAL_S
        self._unreachable_since: float | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()    # serializes shipping (the flusher thread vs close)
        # this connection's template table: the tuples of hit templates shipped so far (kept alive,
        # so their ids stay theirs) and their numbers; the writer keeps the same list per connection
        self._tindex: dict[int, int] = {}
        self._tkeep: list[tuple[Template, ...]] = []
        self._thread = threading.Thread(target=self._run, name="blocklog-shipper", daemon=True)
        self._thread.start()

    # -- called on the query path -----------------------------------------------------------------
    def queued(self) -> int:
        """Queries whose hits wait in this process (both deques)."""
        return len(self.q) + self.packed_in - self.packed_out

    def submit_hits(self, time_ms: int, ip: str, port: int, templates: tuple[Template, ...], transport: str) -> None:
        """The hits of one query. Never blocks: a full deque counts the hits as dropped."""
        q = self.q
        if len(q) + self.packed_in - self.packed_out < self.limit:
            q.append((time_ms, ip, port, templates, transport))
        else:
            self.dropped += len(templates)

    def submit_packed(self, time_ms: int, family: int, names: bytes, at: bytes,
                      templates: list[tuple[Template, ...]], transport: str) -> None:
        """The hits of one receive batch answered at ``time_ms`` (resolver.pipeline.Pipeline.submit_packed):
        one append, no object per hit. Never blocks: answers that do not fit are counted as dropped
        hits. Called from one thread only (it alone writes ``packed_in``)."""
        k = len(at)
        if len(self.q) + self.packed_in - self.packed_out + k > self.limit:
            room = self.limit - self.queued()
            self.dropped += sum(map(len, templates[max(room, 0):]))
            if room <= 0:
                return
            at, templates, k = at[:room], templates[:room], room
        self.pq.append((time_ms, transport, family, names, at, templates))
        self.packed_in += k

    def submit_many(self, time_ms: int, hits: list[tuple[str, int, tuple[Template, ...]]], transport: str) -> None:
        """The hits of a batch of queries answered at ``time_ms`` as (ip, port, templates): one
        extend of the deque. Never blocks: what does not fit is counted as dropped."""
        q = self.q
        room = self.limit - self.queued()
        if room < len(hits):
            self.dropped += sum(len(h[2]) for h in hits[max(room, 0):])
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
            self.flush()

    def flush(self) -> int:
        """Ship what is queued now; returns how many queries' hits were handed over. Unsent ones go
        back to the front of their deque (to be tried again; the bound still holds for new hits)."""
        with self._lock:
            n, m = len(self.q), len(self.pq)
            if n == 0 and m == 0 and self.dropped == self._logged_drops:
                return 0
            items = [self.q.popleft() for _ in range(n)]
            packed = [self.pq.popleft() for _ in range(m)]
            upto = list(itertools.accumulate(map(len, map(_AT, packed))))    # answers up to each batch
            answers = upto[-1] if upto else 0
            self.packed_out += answers
            sent = psent = 0
            try:
                sock = self._connect()
                for start in range(0, n, MESSAGE_RECORDS):
                    part = items[start:start + MESSAGE_RECORDS]
                    sock.send(marshal.dumps((PROTOCOL, os.getpid(), self.dropped, part, [], b"", None)))
                    sent += len(part)
                while psent < m:           # whole batches, about MESSAGE_ANSWERS answers per message
                    done = upto[psent - 1] if psent else 0
                    end = max(bisect.bisect_left(upto, done + MESSAGE_ANSWERS, psent), psent + 1)
                    sock.send(self._packed_message(packed[psent:end]))
                    psent = min(end, m)
                if n == 0 and m == 0:      # nothing queued: the drop count alone
                    sock.send(marshal.dumps((PROTOCOL, os.getpid(), self.dropped, [], [], b"", None)))
                self._unreachable_since = None
            except OSError as exc:
                self._close_socket()
                self.q.extendleft(reversed(items[sent:]))
                self.pq.extendleft(reversed(packed[psent:]))
                self.packed_out -= answers - (upto[psent - 1] if psent else 0)
                self._note_unreachable(exc)
            except (ValueError, TypeError) as exc:   # not marshallable (a producer's bug): counted, never silent
                lost = sum(len(r[3]) for r in items[sent:]) + sum(sum(map(len, p[5])) for p in packed[psent:])
                self.dropped += lost
                self.log("error", "blocklog_unshippable", error=str(exc), dropped=lost,
                         hint="hits that cannot be encoded were counted as dropped; this is a bug, please report it")
                self._close_socket()     # the template table may have numbers the writer never got
            handed = sent + (upto[psent - 1] if psent else 0)
            self.shipped += handed
            self._log_drops()
            return handed

    def _packed_message(self, chunk: list[Packed]) -> bytes:
        """One message of packed batches, built in a few passes over the whole chunk (no Python
        code per batch or per answer): each batch without its templates, then one number per
        answer in this connection's template table (4 bytes each), the templates new to the table
        defined once."""
        tindex, keep = self._tindex, self._tkeep
        if len(keep) >= TABLE_MAX:           # start again: the writer drops its table on base 0
            tindex.clear()
            keep.clear()
        base = len(keep)
        new: list[tuple[Template, ...]] = []
        templates = list(itertools.chain.from_iterable(map(_TEMPLATES, chunk)))
        try:
            numbers = array.array("I", map(tindex.__getitem__, map(id, templates)))
        except KeyError:                     # some are new to the table
            for tpls in templates:
                if id(tpls) not in tindex:
                    tindex[id(tpls)] = len(keep)
                    keep.append(tpls)
                    new.append(tpls)
            numbers = array.array("I", map(tindex.__getitem__, map(id, templates)))
        return marshal.dumps((PROTOCOL, os.getpid(), self.dropped, [], list(map(_BATCH, chunk)), numbers.tobytes(),
                              (base, new) if new or not base else None))

    def _connect(self) -> socket.socket:
        if self._sock is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.settimeout(2.0)
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
        self._tindex.clear()          # a new connection starts with an empty table on both ends
        self._tkeep.clear()

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
        """Stop the flusher and ship what is left (within ``timeout``)."""
        self._stop.set()
        self._thread.join(timeout)
        deadline = self.clock() + timeout
        while (self.q or self.pq) and self.clock() < deadline:
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


def decode(data: bytes, table: list[tuple[Template, ...]] | None = None) -> tuple[int, int, list[Raw]]:
    """(pid, dropped, records) of one message; ValueError when it is not a well-formed message.
    ``table``: the connection's template table (packed batches refer to it by number; a message
    defines the templates new to it), updated in place; None for a message on its own."""
    try:
        msg = marshal.loads(data)  # noqa: S302 (peers run as our own uid, SO_PEERCRED; checked below)
    except (EOFError, ValueError, TypeError) as exc:
        raise ValueError(f"not a message: {exc}") from None
    if not (type(msg) is tuple and len(msg) in (4, 7) and msg[0] in PROTOCOLS and len(msg) == 1 + 3 * msg[0]
            and type(msg[1]) is int and type(msg[2]) is int and type(msg[3]) is list
            and (msg[0] == 1 or (type(msg[4]) is list and type(msg[5]) is bytes and len(msg[5]) % 4 == 0
                                 and (msg[6] is None or type(msg[6]) is tuple)))):
        raise ValueError("not a protocol 1 or 2 message (version, pid, dropped, records[, packed batches, "
                         "template numbers, template definitions])")
    records: list[Raw] = msg[3]
    seen: tuple[set[int], set[int]] = (set(), set())
    for r in records:
        if not (type(r) is tuple and len(r) == 5 and type(r[0]) is int and type(r[1]) is str
                and type(r[2]) is int and r[4] in TRANSPORTS):
            raise ValueError(f"bad record {r!r:.200}")
        _check_templates(r[3], seen)
    if msg[0] == 1:
        return msg[1], msg[2], records
    if table is None:
        table = []
    defs = msg[6]
    if defs is not None:
        if not (len(defs) == 2 and type(defs[0]) is int and type(defs[1]) is list):
            raise ValueError(f"bad template definitions {defs!r:.200}")
        if defs[0] == 0:
            table.clear()
        if defs[0] != len(table):
            raise ValueError(f"template definitions start at {defs[0]}, the table holds {len(table)}")
        for tpls in defs[1]:
            _check_templates(tpls, seen)
        table.extend(defs[1])
    numbers = array.array("I", msg[5])
    if numbers and max(numbers) >= len(table):
        raise ValueError(f"packed batches refer to template {max(numbers)}, the table holds {len(table)}")
    templates = list(map(table.__getitem__, numbers))
    used = 0
    for p in msg[4]:
        if not (type(p) is tuple and len(p) == 5 and type(p[0]) is int and p[1] in TRANSPORTS and p[2] in FAMILIES
                and type(p[3]) is bytes and type(p[4]) is bytes and len(p[3]) % NAME_SIZE == 0
                and (not p[4] or max(p[4]) < len(p[3]) // NAME_SIZE)):
            raise ValueError(f"bad packed batch {p!r:.200}")
        if used + len(p[4]) > len(templates):
            raise ValueError(f"{len(templates)} template numbers for more answers")
        records.extend(unpack((*p, templates[used:used + len(p[4])])))
        used += len(p[4])
    if used != len(templates):
        raise ValueError(f"{len(templates)} template numbers for {used} answers")
    return msg[1], msg[2], records


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
        self._pending: list[Raw] = []
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._server: socket.socket | None = None
        self._clients: dict[int, socket.socket] = {}
        self._tables: dict[int, list[tuple[Template, ...]]] = {}    # template table per connection
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
                while self.inbox and len(self._pending) < self.cfg.queue_size:
                    self._pending.append(self.inbox.popleft())
                if now >= next_flush or len(self._pending) >= BATCH_MAX:
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
            self._tables[conn.fileno()] = []
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
                pid, dropped, records = decode(data, self._tables.setdefault(fd, []))
            except ValueError as exc:
                self.stats.bad_messages += 1
                self._log_once("bad", self.stats.bad_messages, "blocklog_bad_message", error=str(exc))
                continue
            self.stats.dropped_workers[pid] = dropped
            room = self.cfg.queue_size - len(self._pending)
            if len(records) > room:
                self.stats.dropped_writer += sum(len(r[3]) for r in records[max(room, 0):])
                records = records[:max(room, 0)]
            self._pending.extend(records)

    def _flush(self, store: Any) -> None:
        pending = self._pending
        while pending:
            part, rest = pending[:BATCH_MAX], pending[BATCH_MAX:]
            t0 = time.perf_counter()
            try:
                n = store.write_batch(part, now_ms=int(self.clock() * 1000), public_key=self.cfg.compliance_public_key)
            except BlocklogError as exc:
                self.stats.write_errors += 1
                self._log_once("errors", self.stats.write_errors, "blocklog_write_failed", error=str(exc),
                               pending=len(pending), hint="kept in memory (bounded by queue_size) and tried again")
                self._pending = pending
                break
            self.stats.observe(time.perf_counter() - t0)
            self.stats.records += n
            self.stats.batches += 1
            self.stats.head_seq = store.written_seq
            self.stats.last_commit = self.clock()
            pending = rest
        self._pending = pending
        self.stats.pending = len(pending)
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

    PREFIX = "hotline_edge_blocklog_"

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
        yield CounterMetricFamily(p + "bad_messages", "Messages on the writer socket that were not well formed",
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
    "head_seq", "last_commit_timestamp_seconds", "batch_seconds"))
