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

import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from . import names
from .actions import RR, T_ANY, T_CNAME, T_DNAME, Action, ActionKind
from .errors import PolicyConfigError
from .triggers import Prefix, TriggerKind, address_value
from .zone import CompiledZone


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


@dataclass(frozen=True, slots=True)
class Decision:
    """The rule that rewrites the response, and everything needed to answer and to log it."""

    action: ActionKind
    zone: str
    zone_index: int
    serial: int
    trigger: TriggerKind
    trigger_value: str
    owner: str
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

    @property
    def rewrites(self) -> bool:
        """True when the response differs from the truth (not PASSTHRU, not log-only)."""
        return self.action not in (ActionKind.PASSTHRU, ActionKind.DISABLED)


class _NeedResponse:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_RESPONSE"


NEED_RESPONSE = _NeedResponse()
"""Returned when the outcome depends on response data not given yet (an earlier zone has IP or NS
triggers that could outrank the match found so far)."""


@dataclass(frozen=True, slots=True)
class PolicyZone:
    zone: CompiledZone
    settings: ZoneSettings


@dataclass(slots=True)
class _Match:
    zi: int
    kind: TriggerKind
    rule: int
    value: str
    owner: str


class Policy:
    """An ordered list of zones with their settings; immutable; cheap to share between threads."""

    def __init__(self, zones: Sequence[PolicyZone]) -> None:
        if len(zones) > 64:
            raise PolicyConfigError(f"{len(zones)} policy zones configured; at most 64 are supported")
        self.zones = tuple(zones)
        self.has_client_ip = any(z.zone.has_client_ip for z in self.zones)
        self.has_response_triggers = any(z.zone.has_response_triggers for z in self.zones)
        # zones before which no IP/NS trigger exists: a QNAME match there is final before recursion
        self._response_before = [any(z.zone.has_response_triggers for z in self.zones[:i])
                                 for i in range(len(self.zones) + 1)]

    def __len__(self) -> int:
        return len(self.zones)

    def serials(self) -> dict[str, int]:
        return {pz.settings.name or pz.zone.name: pz.zone.serial for pz in self.zones}

    # -- evaluation -------------------------------------------------------------------------
    def evaluate(self, client: str | bytes | None, qtype: int, stages: Sequence[Stage],
                 complete: bool = True) -> Decision | _NeedResponse | None:
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
                m = None
                if pos == 0 and client_val is not None and z.has_client_ip:
                    hit = z.client_ip.match(*client_val)
                    if hit is not None:
                        m = _Match(zi, TriggerKind.CLIENT_IP, hit[0], str(hit[1]),
                                   _ip_owner(z, TriggerKind.CLIENT_IP, hit[1]))
                if m is None:
                    m = self._match_name(zi, z, TriggerKind.QNAME, st.name)
                if m is None and z.has_response_triggers:
                    if not complete:
                        return NEED_RESPONSE
                    m = self._match_response(zi, z, st)
                if m is None:
                    continue
                d = self._decide(m, pz, st.name, pos, qtype)
                if d.action is ActionKind.DISABLED:
                    disabled.append(d)
                    continue
                if disabled:
                    return _with_disabled(d, disabled)
                return d
            if not complete:
                break
        if disabled:
            first = disabled[0]
            return _with_disabled(first, disabled)
        return None

    def evaluate_query(self, client: str | bytes | None, qname: bytes, qtype: int) -> Decision | _NeedResponse | None:
        """Before recursion: CLIENT-IP and QNAME, unless an earlier zone's IP/NS triggers could win."""
        return self.evaluate(client, qtype, (Stage(qname),), complete=False)

    def _match_name(self, zi: int, z: CompiledZone, kind: TriggerKind, name: bytes) -> _Match | None:
        table = z.qname if kind is TriggerKind.QNAME else z.nsdname
        hit = table.match(name)
        if hit is None:
            return None
        rule, row, wild = hit
        key = table.key(row)
        if wild:
            key = b"\x01*" + key
        rel = key if kind is TriggerKind.QNAME else key[:-1] + b"\x0brpz-nsdname\x00"
        full = names.concat(rel, z.origin)
        return _Match(zi, kind, rule, names.to_text(name), names.to_text(full if full else rel))

    def _match_response(self, zi: int, z: CompiledZone, st: Stage) -> _Match | None:
        if len(z.ip) and st.addresses:
            hit = z.ip.best(address_value(a) for a in st.addresses)
            if hit is not None:
                return _Match(zi, TriggerKind.IP, hit[0], _addr_text(st.addresses, hit[1]),
                              _ip_owner(z, TriggerKind.IP, hit[1]))
        if z.nsdname.size and st.ns_names:
            best: tuple[tuple[int, tuple[bytes, ...]], _Match] | None = None
            for ns in st.ns_names:
                m = self._match_name(zi, z, TriggerKind.NSDNAME, ns)
                if m is None:
                    continue
                hit2 = z.nsdname.match(ns)
                assert hit2 is not None
                # 5.3: exact beats wildcard, more labels win; 5.5: NS name last in canonical order
                rank = (0 if hit2[2] else 1, names.canonical_key(ns))
                if best is None or rank > best[0]:
                    best = (rank, m)
            if best is not None:
                return best[1]
        if len(z.nsip) and st.ns_addresses:
            hit = z.nsip.best(address_value(a) for a in st.ns_addresses)
            if hit is not None:
                return _Match(zi, TriggerKind.NSIP, hit[0], _addr_text(st.ns_addresses, hit[1]),
                              _ip_owner(z, TriggerKind.NSIP, hit[1]))
        return None

    def _decide(self, m: _Match, pz: PolicyZone, name: bytes, pos: int, qtype: int) -> Decision:
        z = pz.zone
        s = pz.settings
        action = _effective(z.action_of(m.rule), s)
        kind = action.kind
        records: tuple[RR, ...] = ()
        cname_target = b""
        note = ""
        cap = s.max_policy_ttl
        if kind is ActionKind.LOCAL_DATA:
            records = tuple(RR(r.rdtype, min(r.ttl, cap), r.rdata) for r in action.select(qtype))
            if not records:
                kind = ActionKind.NODATA
                note = "local data has no record of the asked type"
            elif records[0].rdtype == T_CNAME and qtype != T_CNAME:
                cname_target = records[0].rdata
        elif kind is ActionKind.CNAME_WILDCARD:
            target = names.concat(name, action.garden)
            if target is None:
                kind = s.long_cname_fallback
                note = "walled-garden target longer than 255 octets"
            else:
                cname_target = target
                records = (RR(T_CNAME, min(action.ttl, cap), target),)
        ref = z.ref_of(m.rule)
        zone_name = s.name or z.name
        d = Decision(
            action=kind, zone=zone_name, zone_index=m.zi, serial=z.serial, trigger=m.kind,
            trigger_value=m.value, owner=m.owner, position=pos, qname=name, records=records,
            cname_target=cname_target, order_ref=ref, soa_owner=z.origin,
            soa=RR(6, min(z.soa.ttl, int.from_bytes(z.soa.rdata[-4:], "big")), z.soa.rdata),
            ttl_cap=cap, note=note)
        if s.ede_code is not None and kind not in (ActionKind.PASSTHRU, ActionKind.DISABLED):
            text = s.ede_text.format_map(_TemplateFields(d)) if s.ede_text else ""
            d = _replace(d, ede_code=s.ede_code, ede_text=text)
        return d


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
    def __init__(self, d: Decision) -> None:
        super().__init__(order_ref=d.order_ref or "-", zone=d.zone, serial=str(d.serial),
                         trigger=d.trigger.label, owner=d.owner, action=d.action.label,
                         qname=names.to_text(d.qname))


def _replace(d: Decision, **kw: object) -> Decision:
    import dataclasses
    return dataclasses.replace(d, **kw)  # type: ignore[arg-type]


def _with_disabled(d: Decision, disabled: list[Decision]) -> Decision:
    return _replace(d, disabled=tuple(disabled))


def _ip_owner(z: CompiledZone, kind: TriggerKind, prefix: Prefix) -> str:
    from .triggers import SUFFIX_OF
    return f"{prefix.owner_labels()}.{SUFFIX_OF[kind].decode()}.{names.to_text(z.origin)}"


def _addr_text(addresses: tuple[bytes, ...], prefix: Prefix) -> str:
    import ipaddress
    for a in addresses:
        v6, val = address_value(a)
        if prefix.contains(v6, val):
            return str(ipaddress.ip_address(a))
    return str(prefix)
