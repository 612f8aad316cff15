"""Hotline verification (did each order take effect here?) and legal holds on the blocked-lookup log.

Routes (every one declares its permission; none returns personal data: no client address or port
reaches them, and the response models below are the whole of what they can say):

    GET  /hotline/orders/{order_ref}          hotline:read   in force now? since when (feed, serial, time)?
                                                             hits per day, last hit
    POST /hotline/orders/{order_ref}/probe    hotline:read   a real DNS query for the order's target to this
                                                             node's resolver: expected vs actual, a verdict
    GET  /hotline/receipts?feed=&since=       hotline:read   feedsync's signed apply receipts
    POST /blocklog/holds                      blocklog:hold  a legal hold (compliance)
    GET  /blocklog/holds                      blocklog:holds:read
    POST /blocklog/holds/{hold_id}/release    blocklog:hold

``NodeView`` is the adapter to this node's state: the policy zones the resolver loads (resolver
config, rpz), feedsync's state database (order spans, receipts), the blocked-lookup log (daily
aggregates, holds) and the resolver's listen address (the probe). The verdict is ``probe.judge``.

    view = NodeView.from_doc(config_doc)
    app = create_app(api_config, blocklog=SqliteBlocklog(view.blocklog.path), routers=routers(view))
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

import rpz
from resolver.blocklog_config import BlocklogConfig, load_blocklog
from rpz import names

from .app import need
from .errors import Conflict, NotFound, StoreError
from .probe import Expected, Observed, Outcome, expected_for, judge
from .roles import Permission
from .tokens import Principal

PROBE_LABEL = "hotline-probe"        # the name asked for a wildcard-only order: hotline-probe.<base>
OrderRef = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$",
                               description="the order reference, as in the feed (TXT \"order=...\")")]


def _iso(epoch_s: float | None) -> str | None:
    if epoch_s is None:
        return None
    ms = round(epoch_s * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


# -- response and request models (the whole vocabulary of these routes) ------------------------------

class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RuleOut(_Out):
    zone: str = Field(description="policy zone as the resolver names it")
    serial: int = Field(description="zone serial loaded now")
    feed: str | None = Field(description="the feed the zone comes from, if any")
    trigger: str = Field(description="QNAME, IP (an address in the answer), NSDNAME or NSIP")
    name: str = Field(description="the rule's name ('*.' for everything below), or the address block")
    action: str


class SpanOut(_Out):
    feed: str
    serial: int = Field(description="first feed serial that held the order")
    zone_serial: int | None
    applied_at: str
    last_serial: int
    ended_serial: int | None = Field(description="first serial without it (null: still in force)")
    ended_at: str | None
    action: str
    rules: int


class DayOut(_Out):
    day: str
    node: str
    zone: str
    action: str
    hits: int
    last_hit: str


class OrderStatusOut(_Out):
    order_ref: str
    node: str
    active: bool = Field(description="the policy this node loads now has a rule carrying the order")
    rules: list[RuleOut]
    since: SpanOut | None = Field(description="first applied feed version that held the order")
    current: SpanOut | None = Field(description="the span in force now")
    history: list[SpanOut]
    hits_per_day: list[DayOut]
    hits_total: int
    last_hit: str | None
    policy_error: str | None = None


class EdeOut(_Out):
    code: int
    text: str


class ExpectedOut(_Out):
    action: str | None
    rcode: str | None
    ede: int | None
    ede_text: str | None
    answer: list[str] | None
    first_cname: str | None
    truncated: bool
    no_response: bool
    order_ref: str | None = Field(description="the order of the rule that decides this name")


class ActualOut(_Out):
    answered: bool
    rcode: str | None
    ede: list[EdeOut]
    answer: list[str]
    truncated: bool
    error: str


class ProbeOut(_Out):
    order_ref: str
    node: str
    qname: str
    qtype: str
    resolver: str = Field(description="the node's resolver that was asked (its own listen address)")
    expected: ExpectedOut
    actual: ActualOut
    verdict: str
    differences: list[str]
    probed_at: str


class ReceiptOut(_Out):
    id: int
    feed: str
    serial: int
    applied_at: str
    receipt: dict[str, Any]
    body: str = Field(description="the signed bytes (canonical JSON)")
    signature: str = Field(description="base64 Ed25519 signature over body by the node key")
    key_id: str


class ReceiptsOut(_Out):
    node: str
    public_key_pem: str | None = Field(description="the node key that signs receipts (node.pub)")
    receipts: list[ReceiptOut]


class LegalHoldIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_ref: Annotated[str | None, Field(max_length=128)] = None
    start: AwareDatetime | None = Field(None, description="window start (with end); records hit inside it are held")
    end: AwareDatetime | None = None
    reason: Annotated[str, Field(min_length=1, max_length=500, description="the case, order or request it serves")]
    until: AwareDatetime = Field(description="when the hold ends")


class ReleaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Annotated[str, Field(max_length=2000)] = ""


class HoldOut(_Out):
    id: int
    order_ref: str | None
    start: str | None
    end: str | None
    reason: str
    until: str
    created_by: str
    created_at: str
    released_by: str | None
    released_at: str | None
    active: bool


# -- the order's rules in a compiled zone -----------------------------------------------------------

def _ref_index(z: rpz.CompiledZone, ref: str) -> int:
    """Index of ``ref`` in the zone's order-reference table (0: absent)."""
    offs = np.asarray(z.refs.offs, dtype=np.int64)
    blob = bytes(z.refs.blob)
    enc = ref.encode("utf-8")
    at = blob.find(enc)
    while at >= 0:
        i = int(np.searchsorted(offs, at, side="right")) - 1
        if offs[i] == at and offs[i + 1] == at + len(enc):
            return i
        at = blob.find(enc, at + 1)
    return 0


def rules_for_order(z: rpz.CompiledZone, ref: str) -> list[tuple[str, str, str]]:
    """(trigger, name relative to the zone or address block, action label) of every rule of ``z``
    carrying ``ref``: QNAME and NSDNAME names over the base tables and any change overlay (feedsync's
    delta snapshots), IP and NSIP blocks. CLIENT-IP rules are left out: they name clients."""
    idx = _ref_index(z, ref)
    ids = set(np.nonzero(np.asarray(z.rule_ref, dtype=np.int64) == idx)[0].tolist()) if idx else set()
    ids |= {z.base_rules + i for i, (_a, r) in enumerate(z.ext_rules) if r == ref}
    if not ids:
        return []
    out: list[tuple[str, str, str]] = []
    for trigger, table, lookup in (("QNAME", z.base_qname, z.qname), ("NSDNAME", z.base_nsdname, z.nsdname)):
        for name, rule in _names_with_rules(table, getattr(lookup, "nodes", {}), ids):
            if (trigger, name, z.action_of(rule).kind.label) not in out:
                out.append((trigger, name, z.action_of(rule).kind.label))
    for trigger, prefixes in (("IP", z.ip), ("NSIP", z.nsip)):
        out.extend((trigger, str(p), z.action_of(r).kind.label) for p, r in prefixes.entries if r in ids)
    return out


def _names_with_rules(table: Any, overlay: dict[bytes, tuple[int, int, int]], ids: set[int]) -> list[tuple[str, int]]:
    want = np.fromiter(ids, dtype=np.int64)
    found: list[tuple[bytes, bool, int]] = []
    for wild, arr in ((False, table.rule), (True, table.wrule)):
        col = np.asarray(arr, dtype=np.int64)
        for row in np.nonzero(np.isin(col, want))[0].tolist():
            key = table.key(row)
            if key not in overlay:
                found.append((key, wild, int(col[row])))
    for key, (rule, wrule, _kids) in overlay.items():
        if rule in ids:
            found.append((key, False, rule))
        if wrule in ids:
            found.append((key, True, wrule))
    out = []
    for key, wild, rule in sorted(found, key=lambda f: (f[1], f[0])):
        text = names.to_text(key, omit_final_dot=True) if key != b"\x00" else ""
        out.append(("*." + text if wild else text, rule))
    return out


def probe_name(rule_name: str) -> str:
    """The name to ask for a rule: itself, or hotline-probe.<base> under a wildcard."""
    return (PROBE_LABEL + rule_name[1:] if rule_name.startswith("*.") else rule_name) + "."


# -- this node ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class LoadedZone:
    name: str
    serial: int
    feed: str | None
    zone: rpz.CompiledZone


class NodeView:
    """The node's state the hotline and hold routes read. Thread-safe (routes run in a thread pool)."""

    def __init__(self, *, blocklog: BlocklogConfig, state_dir: str, resolver_config: Any | None,
                 clock: Callable[[], float] = time.time, probe_timeout: float = 2.0) -> None:
        self.blocklog = blocklog
        self.node = blocklog.node
        self.state_dir = state_dir
        self.resolver_config = resolver_config
        self.clock = clock
        self.probe_timeout = probe_timeout
        self._lock = threading.Lock()
        self._policy_key: tuple[Any, ...] | None = None
        self._policy: tuple[rpz.Policy, list[LoadedZone]] | None = None

    @classmethod
    def from_doc(cls, doc: Any, **kw: Any) -> NodeView:
        """From the node's configuration: ``[node]``, ``[blocklog]`` and, on a resolver node, the
        ``[resolver]`` and ``[[policy.zone]]`` the resolver loads. ConfigErrors when they are wrong."""
        import copy

        from rpz.tomlconf import ConfigDoc
        bl = load_blocklog(doc)
        doc.raise_collected()
        resolver_cfg = None
        if "resolver" in doc.data:
            from resolver.config import validate
            resolver_cfg = validate(ConfigDoc(doc.file, copy.deepcopy(doc.data), dict(doc.lines)))
        node = doc.data.get("node", {})
        state_dir = node.get("state_dir") if isinstance(node, dict) else None
        return cls(blocklog=bl, state_dir=str(state_dir or "/var/lib/hotline-edge"), resolver_config=resolver_cfg,
                   **kw)

    # -- policy (what the resolver loads) ----------------------------------------------------------
    def policy(self) -> tuple[rpz.Policy, list[LoadedZone]]:
        """The policy of the node's configuration, loaded like the resolver loads it (cached until a
        zone file changes). StoreError when this node has no resolver or a zone does not load."""
        cfg = self.resolver_config
        if cfg is None:
            raise StoreError("this node runs no resolver ([resolver] is not configured here)")
        from resolver.active import build_policy
        from resolver.errors import PolicyLoadError
        key = tuple(_stat(cfg.zone_path(z)) for z in cfg.zones)
        with self._lock:
            if self._policy is None or key != self._policy_key:
                try:
                    policy, loads = build_policy(cfg)
                except PolicyLoadError as exc:
                    raise StoreError(f"the node's policy does not load: {exc}") from exc
                zones = [LoadedZone(ld.name, ld.serial, z.path if z.source == "feed" else None, pz.zone)
                         for z, ld, pz in zip(cfg.zones, loads, policy.zones, strict=True)]
                self._policy, self._policy_key = (policy, zones), key
            return self._policy

    def rules(self, order_ref: str) -> tuple[list[RuleOut], str | None]:
        try:
            _policy, zones = self.policy()
        except StoreError as exc:
            return [], str(exc)
        out = [RuleOut(zone=z.name, serial=z.serial, feed=z.feed, trigger=trigger, name=name, action=action)
               for z in zones for trigger, name, action in rules_for_order(z.zone, order_ref)]
        return out, None

    # -- feedsync's state ---------------------------------------------------------------------------
    def _statedb(self) -> Any:
        from feedsync.errors import StateError
        from feedsync.statedb import StateDB
        path = os.path.join(self.state_dir, "feeds", "feedsync.db")
        if not os.path.exists(path):
            return None
        try:
            return StateDB(path)
        except StateError as exc:
            raise StoreError(str(exc)) from exc

    def spans(self, order_ref: str) -> list[SpanOut]:
        db = self._statedb()
        if db is None:
            return []
        try:
            rows = db.order_history(order_ref)
        finally:
            db.close()
        return [SpanOut(feed=r["feed"], serial=r["serial"], zone_serial=r["zone_serial"],
                        applied_at=_iso(r["applied_at"]) or "", last_serial=r["last_serial"],
                        ended_serial=r["ended_serial"], ended_at=_iso(r["ended_at"]), action=r["action"],
                        rules=r["rules"]) for r in rows]

    def span_targets(self, order_ref: str) -> list[str]:
        db = self._statedb()
        if db is None:
            return []
        try:
            return [t for r in reversed(db.order_history(order_ref)) for t in r["targets"]]
        finally:
            db.close()

    def receipts(self, feed: str | None, since: float | None) -> ReceiptsOut:
        db = self._statedb()
        rows = []
        if db is not None:
            try:
                rows = db.receipts(feed, since)
            finally:
                db.close()
        pem = None
        with contextlib.suppress(OSError), open(os.path.join(self.state_dir, "node.pub"), encoding="ascii") as f:
            pem = f.read()
        return ReceiptsOut(node=self.node, public_key_pem=pem, receipts=[
            ReceiptOut(id=r["id"], feed=r["feed"], serial=r["serial"], applied_at=_iso(r["applied_at"]) or "",
                       receipt=r["receipt"], body=r["body"], signature=r["signature"], key_id=r["key_id"])
            for r in rows])

    # -- the blocked-lookup log -------------------------------------------------------------------
    def store(self, readonly: bool = True) -> Any:
        from resolver.blocklog import BlocklogStore
        from resolver.errors import BlocklogError
        if readonly and not os.path.exists(self.blocklog.path):
            return None
        try:
            return BlocklogStore(self.blocklog.path, self.node, readonly=readonly)
        except BlocklogError as exc:
            raise StoreError(str(exc)) from exc

    def days(self, order_ref: str) -> list[DayOut]:
        store = self.store()
        if store is None:
            return []
        try:
            rows = store.daily(order_ref)
        finally:
            store.close()
        return [DayOut(day=r["day"], node=r["node"], zone=r["zone"], action=r["action"], hits=r["hits"],
                       last_hit=_iso(r["last_ms"] / 1000) or "") for r in rows]

    # -- routes' work -------------------------------------------------------------------------------
    def status(self, order_ref: str) -> OrderStatusOut:
        rules, error = self.rules(order_ref)
        spans = self.spans(order_ref)
        days = self.days(order_ref)
        if not rules and not spans and not days and error is None:
            raise NotFound(f"order known on node {self.node} (no rule in its policy, no feed version ever held "
                           "it, no hit):", order_ref)
        current = next((s for s in reversed(spans) if s.ended_serial is None), None)
        last = max((d.last_hit for d in days), default=None)
        return OrderStatusOut(order_ref=order_ref, node=self.node, active=bool(rules), rules=rules,
                              since=spans[0] if spans else None, current=current, history=spans,
                              hits_per_day=days, hits_total=sum(d.hits for d in days), last_hit=last,
                              policy_error=error)

    def probe(self, order_ref: str) -> ProbeOut:
        rules, error = self.rules(order_ref)
        if error is not None:
            raise StoreError(error)
        cfg = self.resolver_config
        assert cfg is not None
        names_ = [r.name for r in rules if r.trigger == "QNAME"] or ([] if rules else self.span_targets(order_ref))
        if not names_ and rules:
            raise Conflict(f"order {order_ref} is enforced here by {', '.join(f'{r.trigger} {r.name}' for r in rules)}"
                           ": a probe asks for names, and these rules match what answers contain")
        if not names_:
            raise NotFound(f"name to ask for on node {self.node}: no rule and no feed version names one for order",
                           order_ref)
        qname = probe_name(sorted(names_, key=lambda n: n.startswith("*."))[0])
        policy, _zones = self.policy()
        exp = self._expected(policy, qname)
        ep = cfg.resolver.listen[0]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(ep.host, ep.host)  # noqa: S104 (a literal to map, not bound)
        obs = ask(host, ep.port, qname, timeout=self.probe_timeout)
        outcome: Outcome = judge(bool(rules), exp, obs)
        return ProbeOut(order_ref=order_ref, node=self.node, qname=qname, qtype="A", resolver=str(ep),
                        expected=ExpectedOut(action=exp.action, rcode=exp.rcode, ede=exp.ede, ede_text=exp.ede_text,
                                             answer=list(exp.answer) if exp.answer is not None else None,
                                             first_cname=exp.first_cname, truncated=exp.truncated,
                                             no_response=exp.no_response, order_ref=exp.order_ref),
                        actual=ActualOut(answered=obs.answered, rcode=obs.rcode,
                                         ede=[EdeOut(code=c, text=t) for c, t in obs.ede], answer=list(obs.answer),
                                         truncated=obs.truncated, error=obs.error),
                        verdict=outcome.verdict.value, differences=list(outcome.differences),
                        probed_at=_iso(self.clock()) or "")

    @staticmethod
    def _expected(policy: rpz.Policy, qname: str) -> Expected:
        d = policy.evaluate_query(None, names.from_text(qname).lower(), 1)
        if not isinstance(d, rpz.Decision) or not d.rewrites:
            return expected_for(None)
        if d.action is rpz.ActionKind.DISABLED:
            return expected_for(None, order_ref=d.order_ref)
        records = tuple(_rr_text(qname, rr) for rr in d.records if rr.rdtype in (1, 5))
        target = names.to_text(d.cname_target) if d.cname_target else None
        return expected_for(d.action.label, ede=d.ede_code, ede_text=d.ede_text, records=records,
                            cname_target=target, order_ref=d.order_ref)


def _stat(path: str) -> tuple[str, int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (path, 0, -1)
    return (path, st.st_mtime_ns, st.st_size)


def _rr_text(owner: str, rr: rpz.RR) -> str:
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype
    rdtype = dns.rdatatype.RdataType.make(rr.rdtype)
    rd = dns.rdata.from_wire(dns.rdataclass.IN, rdtype, rr.rdata, 0, len(rr.rdata))
    return f"{owner} {dns.rdatatype.to_text(rdtype)} {rd.to_text()}"


def ask(host: str, port: int, qname: str, *, timeout: float) -> Observed:
    """One real query (UDP, EDNS0 so EDE can come back) to the node's resolver."""
    import dns.edns
    import dns.exception
    import dns.flags
    import dns.message
    import dns.query
    import dns.rcode
    import dns.rdatatype
    q = dns.message.make_query(qname, "A", use_edns=0, payload=1232)
    try:
        r = dns.query.udp(q, host, port=port, timeout=timeout, ignore_trailing=True, raise_on_truncation=False)
    except dns.exception.Timeout:
        return Observed(False, error=f"no response from {host}:{port} within {timeout}s")
    except (OSError, dns.exception.DNSException) as exc:
        return Observed(False, error=f"{host}:{port}: {exc}")
    ede = tuple((int(o.code), str(o.text or "")) for o in r.options if o.otype == dns.edns.EDE)
    answer = tuple(f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} {rd.to_text()}"
                   for rrset in r.answer for rd in rrset)
    return Observed(True, dns.rcode.to_text(r.rcode()), ede, answer, bool(r.flags & dns.flags.TC))


# -- routes -----------------------------------------------------------------------------------------

# What each route declares: "the caller holds this permission" (roles.py decides which roles do).
AsHotline = Annotated[Principal, Depends(need(Permission.HOTLINE_READ))]
AsHolder = Annotated[Principal, Depends(need(Permission.BLOCKLOG_HOLD))]
AsHoldReader = Annotated[Principal, Depends(need(Permission.BLOCKLOG_HOLDS_READ))]


def routers(view: NodeView) -> list[APIRouter]:
    """The hotline routes and the legal-hold routes, for ``create_app(routers=...)``."""
    hotline = APIRouter(prefix="/hotline", tags=["hotline"])

    @hotline.get("/orders/{order_ref}", response_model=OrderStatusOut,
                 summary="is the order enforced on this node, since when, hits per day (no personal data)")
    def order_status(order_ref: OrderRef, who: AsHotline) -> OrderStatusOut:
        return view.status(order_ref)

    @hotline.post("/orders/{order_ref}/probe", response_model=ProbeOut,
                  summary="ask this node's resolver for the order's target: expected vs actual, a verdict")
    def order_probe(order_ref: OrderRef, who: AsHotline) -> ProbeOut:
        return view.probe(order_ref)

    @hotline.get("/receipts", response_model=ReceiptsOut, summary="feedsync's signed apply receipts")
    def receipts(who: AsHotline,
                 feed: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")] = None,
                 since: Annotated[AwareDatetime | None, Query(description="ISO 8601 with a zone")] = None
                 ) -> ReceiptsOut:
        return view.receipts(feed, since.timestamp() if since is not None else None)

    holds = APIRouter(prefix="/blocklog", tags=["legal holds"])

    @holds.post("/holds", response_model=HoldOut, status_code=201,
                summary="a legal hold: matching blocked-lookup records are not purged until it ends")
    def create_hold(body: LegalHoldIn, who: AsHolder) -> Any:
        from resolver.errors import HoldError
        store = view.store(readonly=False)
        try:
            h = store.add_hold(order_ref=body.order_ref or None, start_ms=_ms(body.start), end_ms=_ms(body.end),
                               reason=body.reason, until_ms=_ms(body.until) or 0, actor=who.subject,
                               now_ms=int(view.clock() * 1000))
        except HoldError as exc:
            return JSONResponse({"error": "INVALID_HOLD", "detail": str(exc)}, status_code=422)
        finally:
            store.close()
        return _hold_out(h, view.clock())

    @holds.get("/holds", response_model=list[HoldOut], summary="legal holds on the blocked-lookup log")
    def list_holds(who: AsHoldReader,
                   active: Annotated[bool, Query(description="only holds in force now")] = False) -> list[HoldOut]:
        store = view.store()
        if store is None:
            return []
        try:
            now = view.clock()
            return [_hold_out(h, now) for h in store.holds(int(now * 1000) if active else None)]
        finally:
            store.close()

    @holds.post("/holds/{hold_id}/release", response_model=HoldOut, summary="end a legal hold now")
    def release_hold(hold_id: Annotated[int, Path(ge=1, le=2**62)], body: ReleaseIn,
                     who: AsHolder) -> HoldOut:
        from resolver.errors import HoldError
        store = view.store(readonly=False)
        try:
            h = store.release_hold(hold_id, actor=who.subject, now_ms=int(view.clock() * 1000),
                                   note=body.note)
        except HoldError as exc:
            if "no legal hold" in str(exc):
                raise NotFound("legal hold", str(hold_id)) from exc
            raise Conflict(str(exc)) from exc
        finally:
            store.close()
        return _hold_out(h, view.clock())

    return [hotline, holds]


def _ms(t: datetime | None) -> int | None:
    return int(t.timestamp() * 1000) if t is not None else None


def _hold_out(h: Any, now: float) -> HoldOut:
    def at(ms: int | None) -> str | None:
        return _iso(ms / 1000) if ms is not None else None
    return HoldOut(id=h.id, order_ref=h.order_ref, start=at(h.start_ms), end=at(h.end_ms), reason=h.reason,
                   until=at(h.until_ms) or "", created_by=h.created_by, created_at=at(h.created_ms) or "",
                   released_by=h.released_by, released_at=at(h.released_ms), active=h.active(int(now * 1000)))

