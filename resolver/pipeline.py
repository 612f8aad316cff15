"""The query pipeline: named stages in a fixed order (CoreDNS style), each owning its counters.

    acl -> parse -> policy-pre -> cache/forward -> policy-post -> synthesize/relay -> hit-hook

| stage             | does                                                                  | counters          |
|-------------------|-----------------------------------------------------------------------|-------------------|
| acl               | clients outside ``allow`` get REFUSED (never an open resolver)        | refused{acl}      |
| parse             | header + question + OPT by hand (wire.parse_query); FORMERR/NOTIMP    | malformed{reason} |
| policy-pre        | CLIENT-IP and QNAME triggers before any upstream traffic               | -                 |
| cache/forward     | the answer cache of upstream truth; misses go to the upstreams         | cache, upstream   |
| policy-post       | CNAME/DNAME targets (QNAME triggers) and A/AAAA addresses (rpz-ip)     | -                 |
| synthesize/relay  | policy answers from precomputed pieces, or the upstream truth         | responses{rcode}  |
| hit-hook          | one HitRecord per applied or logged rule to the HitSink               | hits{zone,action} |

``handle`` runs every stage it can without waiting and returns the response bytes, None (no
response: DROP, or a message not worth answering), or a ``Pending`` for ``resolve`` when the
upstream must be asked. The policy generation is read once per query, so a query in flight finishes
on the policy it started with.

NSDNAME and NSIP triggers are not evaluated in this forwarding data plane: a forwarder never sees
the delegations its upstream followed. Zones may carry such rules (they load and count), but they
never match here; the Unbound plugin mode evaluates them from what the iterator sees.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import rpz
from rpz import NEED_RESPONSE, ActionKind, Decision, Stage

from .active import ActivePolicy, PolicyHolder
from .cache import AnswerCache, CacheEntry, Key
from .config import ResolverConfig
from .errors import UpstreamError, WireError
from .hits import HitRecord, HitSink, NullSink, PackedHits, TemplateNumbers
from .mmsg import NAME_SIZE, buffer_address, decode_sockaddr
from .synth import HitTemplate, garden_pieces, hit_templates, is_garden, pieces
from .upstream import UpstreamClient
from .wire import (
    C_IN,
    T_AXFR,
    T_IXFR,
    Pieces,
    Query,
    Rcode,
    ReplyRR,
    assemble,
    ede_option,
    error_response,
    header_error,
    parse_query,
    relay,
)

UDP = "udp"
TCP = "tcp"
STAGES = ("acl", "parse", "policy-pre", "cache/forward", "policy-post", "synthesize/relay", "hit-hook")

# what policy-pre concluded, per (QNAME, QTYPE) and generation
NO_MATCH = 0        # nothing at stage 0: forward; evaluate later stages only if the answer has a chain
NEED_POST = 1       # outcome depends on the response (IP triggers, or only DISABLED matches so far)
ANSWER = 2          # answer from pieces now
DROP = 3
TCP_ONLY = 4
PASSTHRU = 5
GARDEN = 6


MISS = object()       # Pipeline.fast: nothing remembered for these bytes
FAST_LIMIT = 200_000  # remembered answers per transport; the table is emptied when full


class Verdict(NamedTuple):
    mode: int
    decision: Decision | None = None
    pieces: Pieces | None = None
    hits: tuple[HitTemplate, ...] = ()


_NO_MATCH = Verdict(NO_MATCH)
_NEED_POST = Verdict(NEED_POST)


class Pending(NamedTuple):
    """A query that waits for the upstream."""

    q: Query
    ip: str
    port: int
    transport: str
    active: ActivePolicy | None
    verdict: Verdict


class Acl:
    """Customer prefixes; the answer per client address is remembered (bounded)."""

    __slots__ = ("memo", "nets")

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        self.nets = [ipaddress.ip_network(p) for p in prefixes]
        self.memo: dict[str, bool] = {}

    def allows(self, ip: str) -> bool:
        ok = self.memo.get(ip)
        if ok is None:
            try:
                addr = ipaddress.ip_address(ip.split("%", 1)[0])
            except ValueError:
                return False
            mapped = getattr(addr, "ipv4_mapped", None)
            if mapped is not None:
                addr = mapped
            ok = any(addr in n for n in self.nets if n.version == addr.version)
            if len(self.memo) > 65_536:
                self.memo.clear()
            self.memo[ip] = ok
        return ok


class StageCounters:
    """Per-process counters, plain ints on the hot path; exported by resolver.metrics.

    Responses and hits are list slots indexed by small ints, so the hot path pays one list
    increment instead of hashing a key: ``response_slot(transport, rcode)`` and ``hit_slot(zone,
    action)`` give the index, ``responses()`` and ``hits()`` the labelled totals.
    """

    __slots__ = ("cache_hits", "cache_misses", "dnssec_skipped", "hit_keys", "hit_slots", "hitc", "malformed",
                 "refused", "resp", "send_errors")

    def __init__(self) -> None:
        self.resp = [0] * (2 * RESP_STRIDE)                  # [transport * 17 + (rcode or 16: none sent)]
        self.refused: dict[str, int] = {}                   # acl | not_ready | class | transfer
        self.malformed: dict[str, int] = {}
        self.hitc: list[int] = []
        self.hit_slots: dict[tuple[str, str], int] = {}
        self.hit_keys: list[tuple[str, str]] = []
        self.cache_hits = 0
        self.cache_misses = 0
        self.dnssec_skipped = 0
        self.send_errors = 0

    def bump(self, table: dict[Any, int], key: Any) -> None:
        table[key] = table.get(key, 0) + 1

    def hit_slot(self, zone: str, action: str) -> int:
        key = (zone, action)
        i = self.hit_slots.get(key)
        if i is None:
            i = self.hit_slots[key] = len(self.hitc)
            self.hitc.append(0)
            self.hit_keys.append(key)
        return i

    def responses(self) -> dict[tuple[str, int], int]:
        """(transport, rcode or -1 when no response was sent) -> count."""
        out = {}
        for i, n in enumerate(self.resp):
            if n:
                t, r = divmod(i, RESP_STRIDE)
                out[(TRANSPORTS[t], -1 if r == 16 else r)] = n
        return out

    def hits(self) -> dict[tuple[str, str], int]:
        return {k: n for k, n in zip(self.hit_keys, self.hitc, strict=True) if n}


RESP_STRIDE = 17
TRANSPORTS = ("udp", "tcp")


def response_slot(transport: str, response: bytes | None) -> int:
    return (0 if transport == "udp" else RESP_STRIDE) + (response[3] & 0xF if response is not None else 16)


def _malformed_key(reason: str) -> str:
    for word, key in (("shorter", "short"), ("questions", "qdcount"), ("compress", "compression"),
                      ("truncated", "truncated"), ("runs past", "truncated"), ("opcode", "opcode"),
                      ("OPT", "opt"), ("after the last", "trailing"), ("response", "response"),
                      ("answer or authority", "sections"), ("255", "name_length"), ("label", "label")):
        if word in reason:
            return key
    return "other"


class Pipeline:
    def __init__(self, cfg: ResolverConfig, holder: PolicyHolder, cache: AnswerCache, upstream: UpstreamClient,
                 sink: HitSink, *, counters: StageCounters | None = None,
                 clock: Callable[[], float] = time.monotonic, wallclock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.holder = holder
        self.cache = cache
        self.upstream = upstream
        self.sink = sink
        self.c = counters or StageCounters()
        self.clock = clock
        self.wallclock = wallclock
        self.acl = Acl(cfg.allow)
        self.udp_size = cfg.edns_udp_size
        self.not_ready = Rcode.SERVFAIL if cfg.not_ready_rcode == "servfail" else Rcode.REFUSED
        self.inflight: dict[Key, asyncio.Future[Any]] = {}
        self.null_sink = isinstance(sink, NullSink)
        # a sink may take a query's hits as they are (docs/contracts.md): no HitRecord per hit
        self.submit_hits: Callable[..., None] | None = getattr(sink, "submit_hits", None)
        self.submit_many: Callable[..., None] | None = getattr(sink, "submit_many", None)
        self.sink_packed: Callable[..., None] | None = getattr(sink, "submit_packed", None)
        self.packed_hits: PackedHits | None = getattr(sink, "packed_hits", None)   # the batched reader fills it
        # the numbers of the hit templates remembered answers report (the batched reader's tags)
        self.numbers: TemplateNumbers | None = (None if self.null_sink else self.packed_hits.numbers
                                                if self.packed_hits is not None else TemplateNumbers())
        self.tagging = False       # a batched UDP reader reads the tags (it sets this; UdpListener)
        self.qname_text = not self.null_sink   # hit records need the QNAME as text; metrics do not
        self.fast_udp: dict[bytes, tuple[Any, ...]] = {}
        self.fast_tcp: dict[bytes, tuple[Any, ...]] = {}

    # -- the synchronous part -----------------------------------------------------------------
    def fast(self, data: bytes, ip: str, port: int, transport: str) -> bytes | object | None:
        """The answer remembered for exactly these query bytes (ID aside), or MISS.

        Remembered answers belong to one policy generation, and relayed upstream answers to one
        second (their TTLs age); nothing is remembered when the policy has CLIENT-IP triggers.
        Counts the response and reports the hits, as ``handle`` would have. (UdpServer inlines
        this same logic on its hot path.)
        """
        f = (self.fast_udp if transport == UDP else self.fast_tcp).get(data[2:])
        if f is None or (f[0] and f[0] != int(self.clock())):
            return MISS
        if not self.acl.allows(ip):
            return MISS
        self.replay_counts(f, ip, port, transport)
        body: bytes | None = f[1]
        if body is None:
            return None
        return data[:2] + body

    def replay_counts(self, f: tuple[Any, ...], ip: str, port: int, transport: str) -> None:
        """Count a remembered response and report its hits (FAST tuple: see ``_remember``)."""
        self.c.resp[f[3]] += 1
        hitc = self.c.hitc
        for i in f[4]:
            hitc[i] += 1
        if f[2] and not self.null_sink:
            self.submit(f[2], ip, port, transport)

    def swap(self, policy: rpz.Policy, generation: int, loaded_at: float, sources: tuple[str, ...] = ()) -> None:
        """Make ``policy`` active. Answers remembered for the old one are forgotten in the same step
        (no await in between), so the next query is answered by the new policy."""
        self.holder.swap(policy, generation, loaded_at, sources)
        self.fast_udp.clear()
        self.fast_tcp.clear()
        if self.numbers is not None and self.numbers.tuples:   # the old policy's templates: not hit again
            self.numbers.restart()

    def restart_numbers(self) -> None:
        """Number hit templates from 0 again, the remembered answers (whose tags refer to the old
        numbers) forgotten in the same step. The batched reader calls it between two receive
        batches once ``numbers.full``; in between, answers with hits are not remembered."""
        self.fast_udp.clear()
        self.fast_tcp.clear()
        if self.numbers is not None:
            self.numbers.restart()

    def _remember(self, data: bytes, transport: str, active: ActivePolicy, second: int, *, out: bytes | None,
                  hits: tuple[HitTemplate, ...]) -> None:
        """Remember ``out`` for these query bytes: (second or 0, response without ID, hit templates,
        response counter slot, hit counter slots, address and length of the response without ID
        for the batched UDP sender, the hits' tag for the batched UDP reader or None: the number of
        the hit templates in ``numbers`` << 8). A relayed upstream answer is good for the second
        it was built in (its TTLs age); a policy answer until the next swap, which empties the table.
        Tags are given only to UDP answers, and only while a batched reader reads them
        (``tagging``); an answer with hits is then not remembered while ``numbers`` is full
        (see ``restart_numbers``).
        """
        if active.client_dependent:
            return
        tag = None
        if hits and transport == UDP and self.tagging and self.numbers is not None:
            tag = self.numbers.tag(hits)
            if tag is None:
                return
        table = self.fast_udp if transport == UDP else self.fast_tcp
        if len(table) >= FAST_LIMIT:
            table.clear()
        c = self.c
        body = out[2:] if out is not None else None
        table[data[2:]] = (second, body, hits, response_slot(transport, out),
                           tuple(c.hit_slot(t[2], t[6]) for t in hits),
                           buffer_address(body) if body is not None else 0, len(body) if body is not None else 0, tag)

    def handle(self, data: bytes, ip: str, port: int, transport: str) -> bytes | Pending | None:
        c = self.c
        allowed = self.acl.allows(ip)                                   # acl
        try:                                                            # parse
            q = parse_query(data)
        except WireError as exc:
            c.bump(c.malformed, _malformed_key(exc.reason))
            if exc.rcode is None or not allowed:
                return None
            return header_error(data, exc.rcode)
        if not allowed:
            c.bump(c.refused, "acl")
            return error_response(q, Rcode.REFUSED, self.udp_size, ra=False)
        if q.edns_version:
            return error_response(q, Rcode.BADVERS, self.udp_size)
        if q.qclass != C_IN:
            c.bump(c.refused, "class")
            return error_response(q, Rcode.REFUSED, self.udp_size)
        if q.qtype in (T_AXFR, T_IXFR):
            c.bump(c.refused, "transfer")
            return error_response(q, Rcode.REFUSED, self.udp_size)
        active = self.holder.active
        if active is None:
            if not self.cfg.serve_without_policy:
                c.bump(c.refused, "not_ready")
                return error_response(q, self.not_ready, self.udp_size)
            return Pending(q, ip, port, transport, None, _NO_MATCH)
        verdict = self.pre(active, q, ip)                               # policy-pre
        mode = verdict.mode
        if mode in (ANSWER, DROP) or (mode == TCP_ONLY and transport == UDP):
            if q.do and not self.cfg.break_dnssec:
                return Pending(q, ip, port, transport, active, verdict)  # signed? ask upstream first
            self.emit(verdict.hits, ip, port, transport)                 # hit-hook
            out = None
            if mode != DROP:
                assert verdict.pieces is not None
                out = assemble(q, verdict.pieces, self.udp_size, self._limit(q, transport))
            self._remember(data, transport, active, 0, out=out, hits=verdict.hits)
            return out
        if mode != GARDEN:                                              # cache
            now = int(self.clock())
            e = self.cache.get((q.qname_lower, q.qtype, q.qclass, q.do, bool(q.flags & 0x10)), now)
            if e is not None:
                c.cache_hits += 1
                if mode in (PASSTHRU, TCP_ONLY):                        # TCP_ONLY over TCP: the truth
                    hits = verdict.hits
                    out = self._relay(q, e, now, self._limit(q, transport))
                else:
                    res, hits = self.answer_from(active, q, ip, transport, verdict=verdict, e=e, now=now)
                    if isinstance(res, Pending):
                        return res
                    out = res
                self.emit(hits, ip, port, transport)
                self._remember(data, transport, active, now, out=out, hits=hits)
                return out
            c.cache_misses += 1
        return Pending(q, ip, port, transport, active, verdict)

    def _relay(self, q: Query, e: CacheEntry, now: int, limit: int | None) -> bytes:
        return relay(q, e.flags, e.rcode, e.body_at(now), counts=(e.an, e.ns, e.ar), edns_udp_size=self.udp_size,
                     limit=limit)

    def _limit(self, q: Query, transport: str) -> int | None:
        if transport != UDP:
            return None
        return min(q.udp_size, self.udp_size) if q.edns else 512

    def pre(self, active: ActivePolicy, q: Query, ip: str) -> Verdict:
        if active.client_dependent:
            return self._verdict(active.policy.evaluate_query(ip, q.qname_lower, q.qtype), q.qtype)
        key = (q.qname_lower, q.qtype)
        v: Verdict | None = active.memo.get(key)
        if v is None:
            v = self._verdict(active.policy.evaluate_query(None, q.qname_lower, q.qtype), q.qtype)
            active.remember(key, v)
        return v

    def _verdict(self, d: Any, qtype: int, links: tuple[tuple[ReplyRR, ...], ...] | None = None) -> Verdict:
        """What to do about decision ``d``: before the response (``links`` None) or after it."""
        if d is None:
            return _NO_MATCH
        if d is NEED_RESPONSE:
            return _NEED_POST
        assert isinstance(d, Decision)
        kind = d.action
        if kind is ActionKind.DISABLED:
            if links is None:      # wait for the complete evaluation, which reports these hits once
                return _NEED_POST
            return Verdict(PASSTHRU, d, None, hit_templates(d, qtype, self.qname_text))  # log only: the truth
        hits = hit_templates(d, qtype, self.qname_text)
        if kind is ActionKind.DROP:
            return Verdict(DROP, d, None, hits)
        if kind is ActionKind.PASSTHRU:
            return Verdict(PASSTHRU, d, None, hits)
        if kind is ActionKind.TCP_ONLY:
            return Verdict(TCP_ONLY, d, pieces(d), hits)
        if is_garden(d, qtype):
            return Verdict(GARDEN, d, None, hits)
        return Verdict(ANSWER, d, pieces(d, links or ((),)), hits)

    def emit(self, hits: tuple[HitTemplate, ...], ip: str, port: int, transport: str) -> None:
        """The hit-hook stage: count every hit, and hand one HitRecord per hit to the sink."""
        if not hits:
            return
        c = self.c
        for t in hits:
            c.hitc[c.hit_slot(t[2], t[6])] += 1
        if not self.null_sink:
            self.submit(hits, ip, port, transport)

    def submit_batch(self, batch: list[tuple[str, int, tuple[HitTemplate, ...]]], transport: str) -> None:
        """The hits of a batch of answers, as (ip, port, templates), stamped with one time: one
        call into a sink that takes batches (``submit_many``), else one ``submit`` per query."""
        if self.submit_many is not None:
            self.submit_many(int(self.wallclock() * 1000), batch, transport)
            return
        for ip, port, hits in batch:
            self.submit(hits, ip, port, transport)

    def submit_packed(self, family: int, names: Any, at: Sequence[int], templates: list[tuple[HitTemplate, ...]],
                      transport: str) -> None:
        """The hits of a batch of UDP answers as the batched reader holds them: ``names`` the batch's
        sender address slots as the kernel wrote them (``mmsg.NAME_SIZE`` bytes each, a buffer the
        next batch overwrites), ``at`` the slots answered with hits (each < 256) and ``templates``
        their hit templates, stamped with one time. A sink that takes them so (``submit_packed``)
        gets copies of both buffers and decodes the addresses in its own time; any other gets
        (ip, port, templates) per answer through ``submit_batch``."""
        if self.sink_packed is not None:
            self.sink_packed(int(self.wallclock() * 1000), family, bytes(names), bytes(at), templates, transport)
            return
        self.submit_batch([(*decode_sockaddr(bytes(names[i * NAME_SIZE:(i + 1) * NAME_SIZE]), family)[:2], t)
                           for i, t in zip(at, templates, strict=True)], transport)

    def submit(self, hits: tuple[HitTemplate, ...], ip: str, port: int, transport: str) -> None:
        now_ms = int(self.wallclock() * 1000)
        if self.submit_hits is not None:
            self.submit_hits(now_ms, ip, port, hits, transport)
            return
        submit = self.sink.submit
        for t in hits:
            submit(HitRecord(now_ms, ip, port, *t, transport))

    # -- answers from an upstream entry (cached or fresh) -------------------------------------
    def answer_from(self, active: ActivePolicy | None, q: Query, ip: str, transport: str, *, verdict: Verdict,
                    e: CacheEntry, now: int) -> tuple[bytes | Pending | None, tuple[HitTemplate, ...]]:
        """The response for ``q`` from upstream entry ``e`` and the hits to report with it
        (a Pending when a walled-garden target must be resolved first; it reports its own hits)."""
        v = self.post(active, q, ip, verdict, e)                         # policy-post
        mode = v.mode
        if mode <= NEED_POST or mode == PASSTHRU or (mode == TCP_ONLY and transport == TCP):
            return self._relay(q, e, now, self._limit(q, transport)), v.hits
        if mode == DROP:
            return None, v.hits
        if mode == GARDEN:
            return Pending(q, ip, 0, transport, active, v), ()
        assert v.pieces is not None
        return assemble(q, v.pieces, self.udp_size, self._limit(q, transport)), v.hits

    def post(self, active: ActivePolicy | None, q: Query, ip: str, verdict: Verdict, e: CacheEntry) -> Verdict:
        """The verdict once the response is known (memoized per entry and policy generation)."""
        if active is None:
            return _NO_MATCH
        chain = e.chain
        if verdict.mode == NO_MATCH and len(chain.names) == 1:
            return _NO_MATCH
        if not active.client_dependent and e.post_gen == active.generation:
            return e.post  # type: ignore[no-any-return]
        stages = [Stage(n, a) for n, a in zip(chain.names, chain.addresses, strict=True)]
        client = ip if active.client_dependent else None
        d = active.policy.evaluate(client, q.qtype, stages, complete=True)
        v = self._verdict(d if isinstance(d, Decision) else None, q.qtype, chain.links)
        if not active.client_dependent:
            e.post_gen = active.generation
            e.post = v
        return v

    # -- the asynchronous part ----------------------------------------------------------------
    async def resolve(self, p: Pending) -> bytes | None:
        q = p.q
        v = p.verdict
        try:
            if v.mode == GARDEN:
                return await self._garden(p, v, None)
            e = await self.lookup(q.qname_lower, q.qtype, q.qclass, q.do, bool(q.flags & 0x10))
        except UpstreamError:
            return error_response(q, Rcode.SERVFAIL, self.udp_size, ede=ede_option(22, "no upstream answered"))
        now = int(self.clock())
        if v.mode in (ANSWER, DROP) or (v.mode == TCP_ONLY and p.transport == UDP):
            # deferred only to see whether the data is signed (break_dnssec = false, DO = 1)
            if e.signed:
                self.c.dnssec_skipped += 1
                return self._relay(q, e, now, self._limit(q, p.transport))
            self.emit(v.hits, p.ip, p.port, p.transport)
            if v.mode == DROP:
                return None
            assert v.pieces is not None
            return assemble(q, v.pieces, self.udp_size, self._limit(q, p.transport))
        if v.mode in (PASSTHRU, TCP_ONLY):
            self.emit(v.hits, p.ip, p.port, p.transport)
            return self._relay(q, e, now, self._limit(q, p.transport))
        if p.active is None:   # serve_without_policy before the first policy: unfiltered by choice
            return self._relay(q, e, now, self._limit(q, p.transport))
        out, hits = self.answer_from(p.active, q, p.ip, p.transport, verdict=v, e=e, now=now)
        if isinstance(out, Pending):
            try:
                return await self._garden(p, out.verdict, e)
            except UpstreamError:
                return error_response(q, Rcode.SERVFAIL, self.udp_size, ede=ede_option(22, "no upstream answered"))
        self.emit(hits, p.ip, p.port, p.transport)
        return out

    async def _garden(self, p: Pending, v: Verdict, chain_entry: CacheEntry | None) -> bytes | None:
        """A CNAME rewrite: the target is resolved upstream and not filtered again (section 6)."""
        q = p.q
        d = v.decision
        assert d is not None
        if q.do and not self.cfg.break_dnssec and chain_entry is None:
            own = await self.lookup(q.qname_lower, q.qtype, q.qclass, q.do, bool(q.flags & 0x10))
            if own.signed:
                self.c.dnssec_skipped += 1
                now = int(self.clock())
                return self._relay(q, own, now, self._limit(q, p.transport))
        t = await self.lookup(d.cname_target, q.qtype, q.qclass, q.do, bool(q.flags & 0x10))
        self.emit(v.hits, p.ip, p.port, p.transport)
        links = chain_entry.chain.links if chain_entry is not None else ((),)
        return assemble(q, garden_pieces(d, links, t.rcode, t.answer), self.udp_size, self._limit(q, p.transport))

    async def lookup(self, qname_lower: bytes, qtype: int, qclass: int, do: bool, cd: bool) -> CacheEntry:
        """The upstream truth for a question: from the cache, else asked once however many wait."""
        key = (qname_lower, qtype, qclass, do, cd)
        e = self.cache.get(key, int(self.clock()))
        if e is not None:
            return e
        fut = self.inflight.get(key)
        if fut is not None:
            result = await asyncio.shield(fut)
        else:
            fut = asyncio.get_running_loop().create_future()
            self.inflight[key] = fut
            try:
                reply, data = await self.upstream.resolve(qname_lower, qtype, qclass, do, cd)
                result = self.cache.store(key, reply, data, int(self.clock()))
            except UpstreamError as exc:
                result = exc
            except BaseException as exc:
                fut.set_result(UpstreamError(f"lookup interrupted: {exc!r}"))
                raise
            finally:
                self.inflight.pop(key, None)
            if not fut.done():
                fut.set_result(result)
        if isinstance(result, UpstreamError):
            # one exception per waiter, none kept here: the raised one's traceback holds this
            # frame, which must not hold the shared one (a cycle only the collector would free)
            why = str(result)
            del result, fut
            raise UpstreamError(why)
        assert isinstance(result, CacheEntry)
        return result

    # -- used by the adapters -----------------------------------------------------------------
    def count(self, transport: str, response: bytes | None) -> None:
        self.c.resp[response_slot(transport, response)] += 1
