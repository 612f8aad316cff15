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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import rpz
from rpz import NEED_RESPONSE, ActionKind, Decision, Stage, names

from .active import ActivePolicy, PolicyHolder
from .hits import HitRecord, HitSink, NullSink
from .synth import HitTemplate, hit_templates, is_garden
from .wire import T_CNAME, T_DNAME, ReplyRR, ede_option, walk_chain

T_SOA = 6
# flag bits of pythonmod's set_return_msg (PKT_*), not DNS header bits
PKT_QR, PKT_AA, PKT_TC, PKT_RD, PKT_CD, PKT_RA, PKT_AD = 1, 2, 4, 8, 16, 32, 64
RCODE_NOERROR, RCODE_SERVFAIL, RCODE_NXDOMAIN, RCODE_REFUSED = 0, 2, 3, 5


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


@dataclass(frozen=True, slots=True)
class Outcome:
    mode: Mode
    decision: Decision | None = None
    answer: Answer | None = None
    hits: tuple[HitTemplate, ...] = ()
    links: tuple[tuple[ReplyRR, ...], ...] = ((),)


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


def _soa(d: Decision) -> tuple[str, ...]:
    if d.soa is None:
        return ()
    ttl = min(d.soa.ttl, d.ttl_cap) if d.ttl_cap else d.soa.ttl
    return (rr_text(d.soa_owner, T_SOA, ttl, d.soa.rdata),)


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


class Counters:
    """Plain counters of the plugin, read by ``status`` and the metrics endpoint."""

    __slots__ = ("answers", "garden_fallbacks", "hits", "not_ready", "queries", "sink_errors")

    def __init__(self) -> None:
        self.queries = 0
        self.not_ready = 0
        self.garden_fallbacks = 0
        self.sink_errors = 0
        self.answers: dict[str, int] = {}
        self.hits: dict[tuple[str, str], int] = {}

    def as_dict(self) -> dict[str, Any]:
        return {"queries": self.queries, "not_ready": self.not_ready, "garden_fallbacks": self.garden_fallbacks,
                "sink_errors": self.sink_errors, "answers": dict(self.answers),
                "hits": {f"{z}|{a}": n for (z, a), n in self.hits.items()}}


@dataclass
class Engine:
    """Decisions and answers for one Unbound process; the policy behind one swappable reference."""

    sink: HitSink = field(default_factory=NullSink)
    wallclock: Callable[[], float] = time.time
    holder: PolicyHolder = field(default_factory=PolicyHolder)
    counters: Counters = field(default_factory=Counters)

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
             answer: Sequence[ReplyRR]) -> Outcome:
        """Every stage once the answer is known: the QNAME, each CNAME/DNAME target, their addresses."""
        chain = walk_chain(qname_lower, tuple(answer))
        stages = [Stage(n, a) for n, a in zip(chain.names, chain.addresses, strict=True)]
        d = active.policy.evaluate(client if active.client_dependent else None, qtype, stages, complete=True)
        return self._outcome(d if isinstance(d, Decision) else None, qtype, chain.links)

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
        if kind is ActionKind.DISABLED:
            if links is None:        # the complete evaluation reports these hits once
                return POST
            return Outcome(Mode.PASSTHRU, d, None, hit_templates(d, qtype), lk)
        hits = hit_templates(d, qtype)
        if kind is ActionKind.DROP:
            return Outcome(Mode.DROP, d, None, hits, lk)
        if kind is ActionKind.PASSTHRU:
            return Outcome(Mode.PASSTHRU, d, None, hits, lk)
        if kind is ActionKind.TCP_ONLY:
            return Outcome(Mode.TCP_ONLY, d, answer_for(d), hits, lk)
        if is_garden(d, qtype):
            return Outcome(Mode.GARDEN, d, None, hits, lk)
        return Outcome(Mode.ANSWER, d, answer_for(d, lk), hits, lk)

    # -- reporting -------------------------------------------------------------------------
    def emit(self, hits: Sequence[HitTemplate], clients: Sequence[Client]) -> None:
        """One HitRecord per rule and client to the sink (never blocks: the sink queues)."""
        if not hits:
            return
        c = self.counters
        for t in hits:
            key = (t[2], t[6])
            c.hits[key] = c.hits.get(key, 0) + len(clients)
        if isinstance(self.sink, NullSink):
            return
        now_ms = int(self.wallclock() * 1000)
        for cl in clients:
            for t in hits:
                try:
                    self.sink.submit(HitRecord(now_ms, cl.ip, cl.port, *t, cl.transport))
                except Exception:
                    c.sink_errors += 1

    def count_answer(self, label: str) -> None:
        self.counters.answers[label] = self.counters.answers.get(label, 0) + 1


def with_clients(out: Outcome, **changes: Any) -> Outcome:
    return dataclasses.replace(out, **changes)
