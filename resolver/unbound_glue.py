"""The policy engine of the Unbound plugin: the resolver's policy, applied to what Unbound's module
interface shows and answered in what it accepts.

Pure apart from loading the policy (files, through ``resolver.active``): no ``unboundmodule`` here.
``resolver.unbound_plugin`` turns Unbound's query states into the values below and back; this
module decides. The decisions and the answers are the data plane's own (``rpz.Policy``,
``resolver.synth`` semantics), spelled as presentation-format records for pythonmod's
``set_return_msg``:

| stage                  | when (module event)          | triggers                               |
|------------------------|------------------------------|----------------------------------------|
| ``pre``                | the query arrives (NEW)      | CLIENT-IP, QNAME                        |
| ``post``               | the answer came back (MODDONE)| CNAME/DNAME chain targets, rpz-ip       |
| ``garden``             | a garden target resolved     | none: section 6, no policy on what policy synthesized |

What each outcome asks of Unbound:

| mode      | Unbound does                                                                    |
|-----------|---------------------------------------------------------------------------------|
| PASS      | resolve; nothing to check afterwards (no chain, no response triggers)           |
| POST      | resolve, then ``post`` on the answer                                            |
| ANSWER    | answer ``Answer`` now (NXDOMAIN, NODATA, Local Data, TCP-Only over UDP)         |
| DROP      | no response                                                                     |
| TCP_ONLY  | over UDP: the TC=1 ``Answer``; over TCP: the truth (logged as a hit)           |
| PASSTHRU  | resolve and relay the truth; the hits are logged; no later stage is looked at   |
| GARDEN    | resolve the CNAME target (a sub-query), then answer with ``garden_answer``       |

Every record the policy supplies has its TTL capped by the zone's ``max_policy_ttl``; the policy
zone's SOA goes in the additional section; the zone's Extended DNS Error (RFC 8914) rides along as
an EDNS option that Unbound sends only to clients that used EDNS.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Protocol

import rpz
from rpz import NEED_RESPONSE, ActionKind, Decision, Stage, TriggerKind, names

from .active import ActivePolicy, PolicyHolder
from .errors import ResolverError
from .hits import HitRecord, HitSink, NullSink
from .synth import HitTemplate, hit_templates, is_garden
from .wire import T_CNAME, T_DNAME, ReplyRR, ede_option, walk_chain

T_SOA = 6
# flag bits of pythonmod's set_return_msg (PKT_*), not DNS header bits
PKT_QR, PKT_AA, PKT_TC, PKT_RD, PKT_CD, PKT_RA, PKT_AD = 1, 2, 4, 8, 16, 32, 64
RCODE_NOERROR, RCODE_SERVFAIL, RCODE_NXDOMAIN, RCODE_REFUSED = 0, 2, 3, 5


class PluginRefused(ResolverError):
    """Unbound is set up so that the plugin could not see every query (module order, CD=1 clients
    served from the cache, expired answers served): the plugin refuses to start, and Unbound with it."""


class Mode(IntEnum):
    PASS = 0
    POST = 1
    ANSWER = 2
    DROP = 3
    TCP_ONLY = 4
    PASSTHRU = 5
    GARDEN = 6


@dataclass(frozen=True, slots=True)
class Answer:
    """A synthesized response: rcode, PKT_* flags, records in presentation format, EDE payload."""

    rcode: int
    flags: int
    answer: tuple[str, ...] = ()
    additional: tuple[str, ...] = ()
    ede: bytes = b""      # INFO-CODE + EXTRA-TEXT (the option's data), or b"" for none
    question: str = ""    # the QNAME as text when known in advance (decisions on the QNAME itself)


@dataclass(frozen=True, slots=True)
class Outcome:
    mode: Mode
    decision: Decision | None = None
    answer: Answer | None = None
    hits: tuple[HitTemplate, ...] = ()
    links: tuple[tuple[ReplyRR, ...], ...] = ((),)
    label: str = ""       # the action's label, for counters
    cacheable: bool = False   # an answer Unbound may keep and repeat (NXDOMAIN/NODATA on the QNAME)


PASS = Outcome(Mode.PASS)
POST = Outcome(Mode.POST)


@dataclass(frozen=True, slots=True)
class Client:
    """One client a query state answers (Unbound joins identical questions into one state)."""

    ip: str
    port: int
    transport: str = "unknown"   # udp | tcp | unknown


def rr_text(owner: bytes, rtype: int, ttl: int, rdata: bytes) -> str:
    """One record for set_return_msg: the RFC 3597 generic form, so no RDATA format is re-parsed."""
    return f"{names.to_text(owner)} {max(0, ttl)} IN TYPE{rtype} \\# {len(rdata)} {rdata.hex()}".rstrip()


def _ede(d: Decision) -> bytes:
    return ede_option(d.ede_code, d.ede_text)[4:] if d.ede_code is not None else b""


_SOA_TEXT: dict[tuple[bytes, int, bytes], tuple[str, ...]] = {}


def _soa(d: Decision) -> tuple[str, ...]:
    """The policy zone's SOA record, TTL capped (the text is the same for every rule of a zone)."""
    if d.soa is None:
        return ()
    ttl = min(d.soa.ttl, d.ttl_cap) if d.ttl_cap else d.soa.ttl
    key = (d.soa_owner, ttl, d.soa.rdata)
    text = _SOA_TEXT.get(key)
    if text is None:
        if len(_SOA_TEXT) > 1024:
            _SOA_TEXT.clear()
        text = _SOA_TEXT[key] = (rr_text(d.soa_owner, T_SOA, ttl, d.soa.rdata),)
    return text


def chain_prefix(links: Sequence[tuple[ReplyRR, ...]], position: int) -> tuple[str, ...]:
    """The records of the truth that lead from the QNAME to stage ``position`` (TTLs as received)."""
    return tuple(rr_text(rr.owner, rr.rtype, rr.ttl, rr.rdata) for step in links[1 : position + 1] for rr in step)


def answer_for(d: Decision, links: Sequence[tuple[ReplyRR, ...]] = ((),)) -> Answer:
    """The response to a decision that needs nothing more from the network (resolver.synth's table)."""
    prefix = chain_prefix(links, d.position)
    kind = d.action
    if kind in (ActionKind.NXDOMAIN, ActionKind.NODATA):
        rcode = RCODE_NXDOMAIN if kind is ActionKind.NXDOMAIN else RCODE_NOERROR
        return Answer(rcode, PKT_QR | PKT_RA, prefix, _soa(d), _ede(d))
    if kind is ActionKind.LOCAL_DATA:
        own = tuple(rr_text(d.qname, r.rdtype, r.ttl, r.rdata) for r in d.records)
        return Answer(RCODE_NOERROR, PKT_QR | PKT_RA, prefix + own, _soa(d), _ede(d))
    if kind is ActionKind.TCP_ONLY:
        return Answer(RCODE_NOERROR, PKT_QR | PKT_RA | PKT_TC, (), (), _ede(d))
    raise ValueError(f"no answer for action {kind.label}")


def garden_answer(d: Decision, links: Sequence[tuple[ReplyRR, ...]], target_rcode: int,
                  target_answer: Sequence[ReplyRR]) -> Answer:
    """A walled-garden CNAME: the chain, the CNAME to the target, the target's answer as resolved
    (section 6: not filtered again, TTLs as received)."""
    prefix = chain_prefix(links, d.position)
    cname_ttl = min(d.records[0].ttl, d.ttl_cap) if d.records else d.ttl_cap
    cname = rr_text(d.qname, T_CNAME, cname_ttl, d.cname_target)
    rest = tuple(rr_text(rr.owner, rr.rtype, rr.ttl, rr.rdata) for rr in target_answer)
    rcode = target_rcode if target_rcode in (RCODE_NOERROR, RCODE_NXDOMAIN) else RCODE_SERVFAIL
    return Answer(rcode, PKT_QR | PKT_RA, (*prefix, cname, *rest), _soa(d), _ede(d))


def garden_fallback(d: Decision, links: Sequence[tuple[ReplyRR, ...]]) -> Answer:
    """The garden CNAME alone, for when the target cannot be resolved as a sub-query."""
    return garden_answer(d, links, RCODE_NOERROR, ())


def has_chain(rrs: Sequence[ReplyRR]) -> bool:
    return any(rr.rtype in (T_CNAME, T_DNAME) for rr in rrs)


Key = tuple[bytes, int, int]      # (QNAME lowered, QTYPE, QCLASS): how Unbound's message cache files an answer
# A policy answer kept in Unbound's cache: (generation, hit templates, EDE option data as the
# bytearray pythonmod's edns_opt_list_append takes, or None, tally key for Engine.tally). A plain
# tuple: the cache callback unpacks it on every such answer.
Stored = tuple[int, tuple[HitTemplate, ...], bytearray | None, int]
VET_LIMIT = 200_000
SYNTH_LIMIT = 200_000
FLUSH_ZONE = "flush.hotline-edge."   # never resolved: the plugin answers it (REFUSED); not a default local zone


class Vetting:
    """Which answers Unbound may serve from its own cache without asking the plugin.

    Unbound answers a query from its message cache before any module sees it, when the cached
    answer has been validated. The plugin keeps every answer unvalidated in that cache (so each
    query comes back to it), except answers it has *vetted*: the policy hits nothing in them (no
    rewrite, nothing to log) for any client. Those are served at Unbound's own speed.

    A new policy may hit what the old one did not. Before it takes effect (``begin_swap``), every
    vetted answer is evaluated against it, and those it would hit are handed to Unbound to be expired
    (``take``); only then is the policy reference swapped. Vetting is off while any zone has CLIENT-IP
    rules (an answer would differ per client), for answers the incoming policy of a swap in progress
    would hit, and for answers decided on a policy that is no longer the active one.

    The validator stores a vetted answer after the plugin decided, possibly much later (it may wait
    for keys). ``stored`` is called when Unbound replies with it, after the store: if the policy
    changed meanwhile, the answer is judged again (``recheck``) and expired if the new policy hits it.
    Check-and-add and the start of a swap hold one lock (short: no evaluation inside it).
    """

    def __init__(self, limit: int = VET_LIMIT) -> None:
        self.limit = limit
        self.entries: dict[Key, tuple[float, tuple[Stage, ...]]] = {}
        self.inflight: dict[int, tuple[Key, int, tuple[Stage, ...]]] = {}   # query state -> vetted on gen
        self.pending: rpz.Policy | None = None
        self.queue: list[Key] = []
        self.vetted = 0
        self.invalidated = 0
        self.rechecked = 0
        self.lock = threading.Lock()
        # policy answers kept in Unbound's cache, looked up by the cache callback on every answer
        # Unbound serves from its cache: QNAME -> {(QTYPE, QCLASS): Stored}. By name first, so an
        # answer that is not a policy answer costs one lookup (and one read of Unbound's query_info)
        self.synth: dict[bytes, dict[tuple[int, int], Stored]] = {}
        self.synth_count = 0
        self.synth_limit = SYNTH_LIMIT

    def synthesized(self, active: ActivePolicy, current: ActivePolicy | None, key: Key, stored: Stored) -> bool:
        """Record a policy answer about to be stored in Unbound's cache; False when it must not be."""
        if active.client_dependent:
            return False
        with self.lock:
            if current is not active or self.pending is not None or self.synth_count >= self.synth_limit:
                return False
            by_type = self.synth.get(key[0])
            if by_type is None:
                by_type = self.synth[key[0]] = {}
            if (key[1], key[2]) not in by_type:
                self.synth_count += 1
            by_type[(key[1], key[2])] = stored
        return True

    def stored_answer(self, key: Key) -> Stored | None:
        by_type = self.synth.get(key[0])
        return by_type.get((key[1], key[2])) if by_type is not None else None

    def vet(self, active: ActivePolicy, current: ActivePolicy | None, state: int, key: Key,
            stages: tuple[Stage, ...], expires: float) -> bool:
        """Record ``key`` as vetted (decided on ``active``) unless that is not safe; True when recorded."""
        if active.client_dependent:
            return False
        with self.lock:
            pending = self.pending
            if current is not active or len(self.entries) >= self.limit:
                return False
            if pending is not None and (pending.has_client_ip or
                                        pending.evaluate(None, key[1], stages, complete=True) is not None):
                return False
            self.entries[key] = (expires, stages)
            if len(self.inflight) < 100_000:
                self.inflight[state] = (key, active.generation, stages)
            self.vetted += 1
        return True

    def stored(self, state: int, current: ActivePolicy | None) -> Key | None:
        """Unbound replies with a vetted answer (the validator has stored it): the key to expire now
        when the policy changed since it was vetted and the new one hits it, else None."""
        got = self.inflight.pop(state, None)
        if got is None or current is None:
            return None
        key, generation, stages = got
        if generation == current.generation:
            return None
        self.rechecked += 1
        if current.client_dependent or current.policy.evaluate(None, key[1], stages, complete=True) is not None:
            self.entries.pop(key, None)
            return key
        return None

    def forget(self, state: int) -> None:
        self.inflight.pop(state, None)

    def begin_swap(self, new: rpz.Policy, now: float) -> int:
        """Stop vetting what ``new`` hits; queue the vetted answers it hits for expiry. Returns how many."""
        with self.lock:
            self.pending = new
            snapshot = list(self.entries.items())
        if new.has_client_ip:
            hit = [k for k, _v in snapshot]
        else:
            hit = [k for k, (exp, stages) in snapshot
                   if exp > now and new.evaluate(None, k[1], stages, complete=True) is not None]
        with self.lock:
            for k in hit:
                self.entries.pop(k, None)
            self.queue.extend(hit)
            # every stored policy answer: its SOA serial and hits change
            stored = [(n, t, c) for n, by_type in self.synth.items() for (t, c) in by_type]
            self.synth.clear()             # (cleared in place: the cache callback holds this dict)
            self.synth_count = 0
            self.queue.extend(stored)
        return len(hit) + len(stored)

    def end_swap(self) -> None:
        with self.lock:
            self.pending = None

    def take(self, n: int) -> list[Key]:
        with self.lock:
            out, self.queue = self.queue[:n], self.queue[n:]
        self.invalidated += len(out)
        return out

    def prune(self, now: float) -> None:
        """Forget answers whose TTL ran out (Unbound no longer serves them from its cache)."""
        with self.lock:
            self.entries = {k: v for k, v in self.entries.items() if v[0] > now}
            if len(self.inflight) > 50_000:
                self.inflight.clear()


class Counters:
    """Plain counters of the plugin, read by ``status`` and the metrics endpoint.

    ``answers`` and ``hits`` are counted by the module's events as they happen; ``cached_answers``
    and ``cached_hits`` (policy answers Unbound served from its cache) only by ``Engine.count_served``,
    so each dict has one writer."""

    __slots__ = ("answers", "cache_answers", "cached_answers", "cached_hits", "garden_fallbacks", "hits", "not_ready",
                 "queries", "sink_errors")

    def __init__(self) -> None:
        self.queries = 0
        self.cache_answers = 0
        self.not_ready = 0
        self.garden_fallbacks = 0
        self.sink_errors = 0
        self.answers: dict[str, int] = {}
        self.hits: dict[tuple[str, str], int] = {}
        self.cached_answers: dict[str, int] = {}
        self.cached_hits: dict[tuple[str, str], int] = {}

    def total_hits(self) -> int:
        return sum(self.hits.values()) + sum(self.cached_hits.values())

    def as_dict(self) -> dict[str, Any]:
        answers = dict(self.answers)
        for label, n in list(self.cached_answers.items()):
            answers[label] = answers.get(label, 0) + n
        hits = dict(self.hits)
        for key, n in list(self.cached_hits.items()):
            hits[key] = hits.get(key, 0) + n
        return {"queries": self.queries, "cache_answers": self.cache_answers, "not_ready": self.not_ready,
                "garden_fallbacks": self.garden_fallbacks,
                "sink_errors": self.sink_errors, "answers": answers,
                "hits": {f"{z}|{a}": n for (z, a), n in hits.items()}}


class BatchSink(Protocol):
    """A sink that takes the hits of one query as templates (docs/contracts.md, ``submit_hits``):
    the blocked-lookup log's writer and ShippingSink."""

    def submit_hits(self, time_ms: int, ip: str, port: int, templates: tuple[HitTemplate, ...],
                    transport: str) -> None: ...


@dataclass
class Engine:
    """Decisions and answers for one Unbound process; the policy behind one swappable reference."""

    sink: HitSink | BatchSink = field(default_factory=NullSink)
    wallclock: Callable[[], float] = time.time
    holder: PolicyHolder = field(default_factory=PolicyHolder)
    counters: Counters = field(default_factory=Counters)
    vetting: Vetting = field(default_factory=Vetting)
    flush_token: str = field(default_factory=lambda: secrets.token_hex(8))
    # the question the runtime sends Unbound to get queued answers expired (a worker thread must
    # do it, from inside a query)
    flush_name: bytes = field(init=False, default=b"")
    # policy answers Unbound served from its cache, as tally keys (``tally_key``): the cache callback
    # appends (one cheap call per answer), ``count_served`` folds them into the counters
    served: list[int] = field(default_factory=list)
    tallies: list[tuple[str, tuple[tuple[str, str], ...]]] = field(default_factory=list)
    _tally_ids: dict[tuple[str, tuple[tuple[str, str], ...]], int] = field(default_factory=dict)
    _fold_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.flush_name = names.from_text(f"{self.flush_token}.{FLUSH_ZONE}").lower()

    # -- policy answers Unbound serves from its cache ---------------------------------------
    def stored(self, active: ActivePolicy, out: Outcome) -> Stored:
        """What the cache callback needs for a policy answer Unbound keeps: its hits, its EDE, and
        what to count when Unbound serves it (the label is the applied rule's action, as the
        cache callback has always counted it)."""
        assert out.answer is not None
        hits = out.hits
        label = hits[-1][6] if hits else "cached"
        return (active.generation, hits, bytearray(out.answer.ede) if out.answer.ede else None,
                self.tally_key(label, hits))

    def tally_key(self, label: str, hits: Sequence[HitTemplate]) -> int:
        """A small number standing for (answer label, (zone, action) of every hit); a few per policy."""
        k = (label, tuple((t[2], t[6]) for t in hits))
        with self._fold_lock:
            i = self._tally_ids.get(k)
            if i is None:
                i = self._tally_ids[k] = len(self.tallies)
                self.tallies.append(k)
        return i

    def count_served(self) -> int:
        """Fold the answers the cache callback reported since the last call into the counters (a
        runtime thread calls this every few hundred ms, and ``status`` before it reads them)."""
        with self._fold_lock:
            served = self.served
            n = len(served)
            if n == 0:
                return 0
            batch = served[:n]
            del served[:n]          # one operation: appends made meanwhile stay for the next call
            c = self.counters
            answers, hits = c.cached_answers, c.cached_hits
            for k, m in Counter(batch).items():
                label, pairs = self.tallies[k]
                answers[label] = answers.get(label, 0) + m
                for pair in pairs:
                    hits[pair] = hits.get(pair, 0) + m
            c.cache_answers += n
        return n

    @property
    def active(self) -> ActivePolicy | None:
        return self.holder.active

    def swap(self, policy: rpz.Policy, generation: int, loaded_at: float, sources: tuple[str, ...] = ()) -> None:
        self.holder.swap(policy, generation, loaded_at, sources)

    # -- deciding --------------------------------------------------------------------------
    def pre(self, active: ActivePolicy, qname_lower: bytes, qtype: int, client: str | None) -> Outcome:
        """CLIENT-IP and QNAME when the query arrives (remembered per name and type when no rule
        depends on the client)."""
        if active.client_dependent:
            return self._outcome(active.policy.evaluate_query(client, qname_lower, qtype), qtype, None)
        key = (qname_lower, qtype)
        out: Outcome | None = active.memo.get(key)
        if out is None:
            out = self._outcome(active.policy.evaluate_query(None, qname_lower, qtype), qtype, None)
            active.remember(key, out)
        return out

    def post(self, active: ActivePolicy, qname_lower: bytes, qtype: int, client: str | None,
             answer: Sequence[ReplyRR]) -> tuple[Outcome, tuple[Stage, ...]]:
        """Every stage once the answer is known: the QNAME, each CNAME/DNAME target, their addresses.
        Also returns the stages (what a later policy needs to judge this answer again)."""
        chain = walk_chain(qname_lower, tuple(answer))
        stages = tuple(Stage(n, a) for n, a in zip(chain.names, chain.addresses, strict=True))
        d = active.policy.evaluate(client if active.client_dependent else None, qtype, stages, complete=True)
        return self._outcome(d if isinstance(d, Decision) else None, qtype, chain.links), stages

    @staticmethod
    def stages(qname_lower: bytes, answer: Sequence[ReplyRR]) -> tuple[Stage, ...]:
        chain = walk_chain(qname_lower, tuple(answer))
        return tuple(Stage(n, a) for n, a in zip(chain.names, chain.addresses, strict=True))

    def needs_post(self, active: ActivePolicy, pre: Outcome, answer: Sequence[ReplyRR]) -> bool:
        """Whether the answer can change the outcome (response triggers, or a chain to walk)."""
        return pre.mode is Mode.POST or active.response_triggers or has_chain(answer)

    def _outcome(self, d: Any, qtype: int, links: tuple[tuple[ReplyRR, ...], ...] | None) -> Outcome:
        if d is None:
            return PASS
        if d is NEED_RESPONSE:
            return POST
        assert isinstance(d, Decision)
        kind = d.action
        lk = links if links is not None else ((),)
        label = kind.label
        if kind is ActionKind.DISABLED:
            if links is None:        # the complete evaluation reports these hits once
                return POST
            return Outcome(Mode.PASSTHRU, d, None, hit_templates(d, qtype), lk, label)
        hits = hit_templates(d, qtype)
        if kind is ActionKind.DROP:
            return Outcome(Mode.DROP, d, None, hits, lk, label)
        if kind is ActionKind.PASSTHRU:
            return Outcome(Mode.PASSTHRU, d, None, hits, lk, label)
        if kind is ActionKind.TCP_ONLY:
            return Outcome(Mode.TCP_ONLY, d, answer_for(d), hits, lk, label)
        if is_garden(d, qtype):
            return Outcome(Mode.GARDEN, d, None, hits, lk, label)
        answer = answer_for(d, lk)
        cacheable = False
        if links is None:            # on the QNAME: the question is known, remember its text
            answer = dataclasses.replace(answer, question=names.to_text(d.qname))
            # only records of the policy zone's SOA: nothing in Unbound's cache but its own name
            cacheable = kind in (ActionKind.NXDOMAIN, ActionKind.NODATA) and d.trigger is not TriggerKind.CLIENT_IP
        return Outcome(Mode.ANSWER, d, answer, hits, lk, label, cacheable)

    # -- reporting -------------------------------------------------------------------------
    @property
    def wants_records(self) -> bool:
        """False when hits are only counted (no sink): the clients need not be looked at."""
        return not isinstance(self.sink, NullSink)

    def count_hits(self, hits: Sequence[HitTemplate], clients: int) -> None:
        c = self.counters.hits
        for t in hits:
            key = (t[2], t[6])
            c[key] = c.get(key, 0) + clients

    def emit(self, hits: Sequence[HitTemplate], clients: Sequence[Client]) -> None:
        """One HitRecord per rule and client to the sink (never blocks: the sink queues)."""
        if not hits:
            return
        self.count_hits(hits, len(clients))
        self.record(hits, clients)

    def record(self, hits: Sequence[HitTemplate], clients: Sequence[Client]) -> None:
        """The hits to the sink, not counted (``emit`` counts; the cache callback's are counted by
        ``count_served``)."""
        if not self.wants_records:
            return
        c = self.counters
        now_ms = int(self.wallclock() * 1000)
        sink = self.sink
        submit_hits = getattr(sink, "submit_hits", None)
        if submit_hits is not None:      # the blocked-lookup log: one call per client, no record objects
            templates = tuple(hits)
            for cl in clients:
                try:
                    submit_hits(now_ms, cl.ip, cl.port, templates, cl.transport)
                except Exception:
                    c.sink_errors += 1
            return
        assert isinstance(sink, HitSink)
        for cl in clients:
            for t in hits:
                try:
                    sink.submit(HitRecord(now_ms, cl.ip, cl.port, *t, cl.transport))
                except Exception:
                    c.sink_errors += 1

    def count_answer(self, label: str) -> None:
        self.counters.answers[label] = self.counters.answers.get(label, 0) + 1
