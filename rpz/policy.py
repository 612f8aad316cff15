"""Policy evaluation: several compiled zones in order -> one Decision (draft sections 5 and 6).

Evaluation is pure: (client address, QNAME, QTYPE, and what the response revealed) -> Decision.

Precedence, in the draft's words (section 5): "Precedence rules are applied in the order listed
here; the comparison between two matching policy rules to choose the better match is determined
by the first dispositive precedence rule in this list. Note however that if the best match
selects a disabled rule ... then the next best match is used, and so on until a policy rule that
is not disabled is selected or no matches remain."

| rank | rule (draft section)           | how this module applies it                                        |
|------|--------------------------------|-------------------------------------------------------------------|
| 1    | CNAME/DNAME chain position 5.1 | outer loop over stages: the QNAME, then each CNAME/DNAME target   |
| 2    | RPZ ordering 5.2               | next loop over zones in configured order                          |
| 3    | trigger type 5.4               | inner order CLIENT-IP > QNAME > IP > NSDNAME > NSIP               |
| 4    | domain name matching 5.3       | NameTable.match: exact, else the closest encloser's wildcard      |
| 5    | name order 5.5                 | among NSDNAME matches, the NS name last in DNSSEC canonical order |
| 6    | prefix length 5.6              | PrefixTable: longest internal prefix (IPv4 length + 96)           |
| 7    | IP address order 5.7           | PrefixTable: then the smaller 128-bit address                     |

(5.3 before 5.4 in the draft's list only ever compares rules of one trigger type, so the order of
ranks 3 and 4 here changes no outcome.) Section 6: rules never apply to data RPZ synthesized; the
caller resolves a walled-garden target without asking this module again. A zone whose override is
DISABLED contributes its best match to ``Decision.disabled`` and evaluation goes on.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from . import names
from .actions import RR, T_ANY, T_CNAME, T_DNAME, Action, ActionKind
from .errors import PolicyConfigError
from .index import NameLookup
from .triggers import SUFFIX_OF, Prefix, TriggerKind, address_value
from .zone import CompiledZone

if TYPE_CHECKING:
    from .batch import BatchState, QnameDecisions


class Override(Enum):
    """Per-zone action overrides (section 6.1)."""

    GIVEN = "given"
    DISABLED = "disabled"
    PASSTHRU = "passthru"
    DROP = "drop"
    TCP_ONLY = "tcp-only"
    NXDOMAIN = "nxdomain"
    NODATA = "nodata"
    CNAME = "cname"


EDE_CODES = {15: "Blocked", 16: "Censored", 17: "Filtered"}
TEMPLATE_FIELDS = frozenset({"order_ref", "zone", "serial", "trigger", "owner", "action", "qname"})


@dataclass(frozen=True, slots=True)
class ZoneSettings:
    """How one configured zone is applied."""

    name: str = ""
    override: Override = Override.GIVEN
    cname_target: bytes = b""
    max_policy_ttl: int = 60
    ede_code: int | None = None
    ede_text: str = ""
    long_cname_fallback: ActionKind = ActionKind.NXDOMAIN

    def __post_init__(self) -> None:
        if self.ede_code is not None and self.ede_code not in EDE_CODES:
            raise PolicyConfigError(f"EDE code {self.ede_code} is not one of 15 (Blocked), 16 (Censored), "
                                    "17 (Filtered)")
        if self.max_policy_ttl < 0:
            raise PolicyConfigError("max_policy_ttl must be >= 0")
        if self.override is Override.CNAME and not self.cname_target:
            raise PolicyConfigError("override 'cname' needs a target name")
        if self.long_cname_fallback not in (ActionKind.NXDOMAIN, ActionKind.NODATA, ActionKind.DROP):
            raise PolicyConfigError("long_cname_fallback must be nxdomain, nodata or drop")
        for _, fname, _, _ in string.Formatter().parse(self.ede_text):
            if fname is not None and fname not in TEMPLATE_FIELDS:
                raise PolicyConfigError(f"unknown field {{{fname}}} in ede_text; known: "
                                        + ", ".join(sorted(TEMPLATE_FIELDS)))


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage of resolution (section 5.1): the name asked at this stage and what the response
    showed for it. Stage 0 is the QNAME; later stages are CNAME/DNAME targets."""

    name: bytes
    addresses: tuple[bytes, ...] = ()
    ns_names: tuple[bytes, ...] = ()
    ns_addresses: tuple[bytes, ...] = ()


@dataclass(slots=True)
class Decision:
    """The rule that rewrites the response, and everything needed to answer and to log it.

    Text forms (``owner``, ``trigger_value``) are computed on demand: the data plane needs the
    action and records per query, the log and the CLI need the text once per hit.

    Treat it as immutable (decisions are cached and shared between queries; change one with
    ``dataclasses.replace``). It is not ``frozen=True`` only because a frozen dataclass of this
    many fields costs about 6 us to build against 0.7 us, on the path of every first sighting of a
    name (docs/decisions/0002-policy-core.md).
    """

    action: ActionKind
    zone: str
    zone_index: int
    serial: int
    trigger: TriggerKind
    position: int
    qname: bytes
    records: tuple[RR, ...] = ()
    cname_target: bytes = b""
    order_ref: str | None = None
    ede_code: int | None = None
    ede_text: str = ""
    soa_owner: bytes = b""
    soa: RR | None = None
    ttl_cap: int = 0
    note: str = ""
    disabled: tuple[Decision, ...] = field(default=())
    rule_key: bytes = b""  # QNAME/NSDNAME: the matched table key ("*." first for a wildcard)
    prefix: Prefix | None = None  # CLIENT-IP/IP/NSIP: the matched trigger prefix
    matched: bytes = b""  # NSDNAME: the name server name; IP/NSIP/CLIENT-IP: the packed address

    @property
    def rewrites(self) -> bool:
        """True when the response differs from the truth (not PASSTHRU, not log-only)."""
        return self.action not in (ActionKind.PASSTHRU, ActionKind.DISABLED)

    @property
    def owner(self) -> str:
        """The policy zone owner name of the winning rule (BIND logs it as "via")."""
        if self.prefix is not None:
            return f"{self.prefix.owner_labels()}.{SUFFIX_OF[self.trigger].decode()}.{names.to_text(self.soa_owner)}"
        rel = self.rule_key
        if self.trigger is TriggerKind.NSDNAME:
            rel = rel[:-1] + b"\x0brpz-nsdname\x00"
        full = names.concat(rel, self.soa_owner)
        return names.to_text(full if full is not None else rel)

    @property
    def trigger_value(self) -> str:
        """What matched: the name at this stage, the name server name, or the address."""
        if self.trigger is TriggerKind.QNAME:
            return names.to_text(self.qname)
        if self.trigger is TriggerKind.NSDNAME:
            return names.to_text(self.matched)
        if self.matched:
            return str(ipaddress.ip_address(self.matched))
        return str(self.prefix)


class _NeedResponse:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_RESPONSE"


NEED_RESPONSE = _NeedResponse()
"""Returned when the outcome depends on response data not given yet (an earlier zone has IP or NS
triggers that could outrank the match found so far)."""

Outcome = Decision | _NeedResponse | None


@dataclass(frozen=True, slots=True)
class PolicyZone:
    zone: CompiledZone
    settings: ZoneSettings


class Policy:
    """An ordered list of zones with their settings; immutable apart from its decision cache.

    ``evaluate_query`` answers repeated questions from a bounded cache of decisions, so a busy
    resolver pays for a table walk once per distinct (name, type) per policy version; a new
    Policy object (a swap) starts with an empty cache. Client-dependent outcomes are never cached.
    """

    CACHE_SIZE = 1 << 18

    def __init__(self, zones: Sequence[PolicyZone]) -> None:
        if len(zones) > 64:
            raise PolicyConfigError(f"{len(zones)} policy zones configured; at most 64 are supported")
        self.zones = tuple(zones)
        self.has_client_ip = any(z.zone.has_client_ip for z in self.zones)
        self.has_response_triggers = any(z.zone.has_response_triggers for z in self.zones)
        self._cache: dict[tuple[bytes, int], Outcome] = {}
        self._batch: BatchState | None = None

    def __len__(self) -> int:
        return len(self.zones)

    def serials(self) -> dict[str, int]:
        return {pz.settings.name or pz.zone.name: pz.zone.serial for pz in self.zones}

    # -- evaluation -------------------------------------------------------------------------
    def evaluate_query(self, client: str | bytes | None, qname: bytes, qtype: int) -> Outcome:
        """Before recursion: CLIENT-IP and QNAME, unless an earlier zone's IP/NS triggers could win.
        ``qname`` is canonical wire (lower case)."""
        key = (qname, qtype)
        if not self.has_client_ip or client is None or not self._client_matches(client):
            hit = self._cache.get(key, _MISS)
            if hit is not _MISS:
                return hit  # type: ignore[return-value]
            out = self.evaluate(None, qtype, (Stage(qname),), complete=False)
            if len(self._cache) >= self.CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = out
            return out
        return self.evaluate(client, qtype, (Stage(qname),), complete=False)

    def decide_qnames(self, qnames: Sequence[bytes], qtype: int = 1) -> QnameDecisions:
        """QNAME decisions for many names at once, vectorized (rpz.batch): for each name what
        ``evaluate(None, qtype, [Stage(name)], complete=False)`` decides (no client address, the
        QNAME stage only; NEED_RESPONSE where an earlier zone's IP/NS triggers could win). Names
        are canonical wire (lower case). The result holds arrays (zone, rule, wildcard, action
        kind, flags); ``.decision(i)`` builds row i's Decision on demand. DnsNameError when a
        name is not one wire name."""
        from .batch import decide_qnames
        return decide_qnames(self, qnames, qtype)

    def batch_state(self) -> BatchState:
        """Numpy views of the zones' tables for ``decide_qnames``, made on first use."""
        if self._batch is None:
            from .batch import BatchState
            self._batch = BatchState(self)
        return self._batch

    def _client_matches(self, client: str | bytes) -> bool:
        val = address_value(client)
        return any(pz.zone.has_client_ip and pz.zone.client_ip.match(*val) is not None for pz in self.zones)

    def evaluate(self, client: str | bytes | None, qtype: int, stages: Sequence[Stage],
                 complete: bool = True) -> Outcome:
        """The decision for a query (``complete=False``: only stage 0's name is known yet)."""
        if qtype in (T_ANY, T_CNAME, T_DNAME):
            stages = stages[:1]  # section 5.1 applies only to other query types
        disabled: list[Decision] = []
        client_val: tuple[bool, int] | None = None
        if client is not None and self.has_client_ip:
            client_val = address_value(client)
        for pos, st in enumerate(stages):
            for zi, pz in enumerate(self.zones):
                z = pz.zone
                d: Decision | None = None
                if pos == 0 and client_val is not None and z.has_client_ip:
                    hit = z.client_ip.match(*client_val)
                    if hit is not None:
                        d = self._decide(pz, zi, hit[0], TriggerKind.CLIENT_IP, st.name, pos, qtype,
                                         prefix=hit[1], matched=_packed(client) if client is not None else b"")
                if d is None:
                    qm = z.qname.match(st.name)
                    if qm is not None:
                        d = self._decide(pz, zi, qm[0], TriggerKind.QNAME, st.name, pos, qtype,
                                         key=_key(z.qname, qm))
                if d is None and z.has_response_triggers:
                    if not complete:
                        return NEED_RESPONSE
                    d = self._match_response(pz, zi, st, pos, qtype)
                if d is None:
                    continue
                if d.action is ActionKind.DISABLED:
                    disabled.append(d)
                    continue
                return dataclasses.replace(d, disabled=tuple(disabled)) if disabled else d
            if not complete:
                break
        if disabled:
            return dataclasses.replace(disabled[0], disabled=tuple(disabled))
        return None

    def _match_response(self, pz: PolicyZone, zi: int, st: Stage, pos: int, qtype: int) -> Decision | None:
        z = pz.zone
        if len(z.ip) and st.addresses:
            hit = z.ip.best((address_value(a), a) for a in st.addresses)
            if hit is not None:
                return self._decide(pz, zi, hit[0], TriggerKind.IP, st.name, pos, qtype, prefix=hit[1],
                                    matched=hit[2])
        if z.nsdname.size and st.ns_names:
            best: tuple[tuple[int, int, tuple[bytes, ...]], bytes, tuple[int, bytes, bool]] | None = None
            for ns in st.ns_names:
                m = z.nsdname.match(ns)
                if m is None:
                    continue
                # 5.3: exact beats wildcard, and the wildcard with more labels wins;
                # 5.5: then the NS name that is last in DNSSEC canonical order
                rank = (0, names.label_count(m[1]), names.canonical_key(ns)) if m[2] else \
                    (1, 0, names.canonical_key(ns))
                if best is None or rank > best[0]:
                    best = (rank, ns, m)
            if best is not None:
                return self._decide(pz, zi, best[2][0], TriggerKind.NSDNAME, st.name, pos, qtype,
                                    key=_key(z.nsdname, best[2]), matched=best[1])
        if len(z.nsip) and st.ns_addresses:
            hit = z.nsip.best((address_value(a), a) for a in st.ns_addresses)
            if hit is not None:
                return self._decide(pz, zi, hit[0], TriggerKind.NSIP, st.name, pos, qtype, prefix=hit[1],
                                    matched=hit[2])
        return None

    def _decide(self, pz: PolicyZone, zi: int, rule: int, kind: TriggerKind, name: bytes, pos: int, qtype: int,
                key: bytes = b"", prefix: Prefix | None = None, matched: bytes = b"") -> Decision:
        z = pz.zone
        s = pz.settings
        action = _effective(z.action_of(rule), s)
        akind = action.kind
        records: tuple[RR, ...] = ()
        cname_target = b""
        note = ""
        cap = s.max_policy_ttl
        if akind is ActionKind.LOCAL_DATA:
            records = tuple(RR(r.rdtype, min(r.ttl, cap), r.rdata) for r in action.select(qtype))
            if not records:
                akind = ActionKind.NODATA
                note = "local data has no record of the asked type"
            elif records[0].rdtype == T_CNAME and qtype != T_CNAME:
                cname_target = records[0].rdata
        elif akind is ActionKind.CNAME_WILDCARD:
            target = names.concat(name, action.garden)
            if target is None:
                akind = s.long_cname_fallback
                note = "walled-garden target longer than 255 octets"
            else:
                cname_target = target
                records = (RR(T_CNAME, min(action.ttl, cap), target),)
        d = Decision(
            action=akind, zone=s.name or z.name, zone_index=zi, serial=z.serial, trigger=kind, position=pos,
            qname=name, records=records, cname_target=cname_target, order_ref=z.ref_of(rule),
            soa_owner=z.origin, soa=z.soa_answer, ttl_cap=cap, note=note, rule_key=key, prefix=prefix,
            matched=matched)
        if s.ede_code is not None and akind not in (ActionKind.PASSTHRU, ActionKind.DISABLED):
            # set on the new, not yet shared object: cheaper than dataclasses.replace per decision
            object.__setattr__(d, "ede_code", s.ede_code)
            object.__setattr__(d, "ede_text", s.ede_text.format_map(_TemplateFields(d)) if s.ede_text else "")
        return d


_MISS = object()


def _key(table: NameLookup, m: tuple[int, bytes, bool]) -> bytes:
    return b"\x01*" + m[1] if m[2] else m[1]


def _packed(addr: str | bytes) -> bytes:
    return addr if isinstance(addr, bytes) else ipaddress.ip_address(addr).packed


def _effective(action: Action, s: ZoneSettings) -> Action:
    o = s.override
    if o is Override.GIVEN:
        return action
    if o is Override.CNAME:
        return Action(ActionKind.LOCAL_DATA, records=(RR(T_CNAME, s.max_policy_ttl, s.cname_target.lower()),))
    return _OVERRIDE_ACTIONS[o]


_OVERRIDE_ACTIONS = {
    Override.DISABLED: Action(ActionKind.DISABLED),
    Override.PASSTHRU: Action(ActionKind.PASSTHRU),
    Override.DROP: Action(ActionKind.DROP),
    Override.TCP_ONLY: Action(ActionKind.TCP_ONLY),
    Override.NXDOMAIN: Action(ActionKind.NXDOMAIN),
    Override.NODATA: Action(ActionKind.NODATA),
}


class _TemplateFields(dict[str, str]):
    """Template fields computed only when the template uses them."""

    __slots__ = ("d",)

    def __init__(self, d: Decision) -> None:
        super().__init__()
        self.d = d

    def __missing__(self, key: str) -> str:
        value = _FIELDS[key](self.d)
        self[key] = value
        return value


_FIELDS: dict[str, Callable[[Decision], str]] = {
    "order_ref": lambda d: d.order_ref or "-",
    "zone": lambda d: d.zone,
    "serial": lambda d: str(d.serial),
    "trigger": lambda d: d.trigger.label,
    "owner": lambda d: d.owner,
    "action": lambda d: d.action.label,
    "qname": lambda d: names.to_text(d.qname),
}
