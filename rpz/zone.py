"""A compiled policy zone: rules decoded, actions shared, names packed into lookup tables.

Built from master-file text (``compile_text``) or from the record set a zone transfer yields
(``compile_records``). Both collect records per owner, decode the trigger (rpz.triggers) and the
action (rpz.actions), and refuse bad owners one by one into ``rejections``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import names
from .actions import RR, T_TXT, Action, classify, companion_base, order_ref_of
from .errors import RecordError, ZoneReadError
from .index import NameLookup, NameTable, PrefixTable, StringTable, build_name_table
from .triggers import Prefix, Trigger, TriggerKind, parse_owner
from .zonetext import ParsedRR, Rejection, ZoneReader

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """A decoded rule, for reports and explanations (not used on the lookup path)."""

    trigger: Trigger
    action: Action
    order_ref: str | None
    owner: str


@dataclass(slots=True)
class ZoneStats:
    rules: int = 0
    records: int = 0
    by_trigger: dict[str, int] = field(default_factory=dict)
    by_action: dict[str, int] = field(default_factory=dict)

    def count(self, trigger: Trigger, action: Action, n: int = 1) -> None:
        self.rules += n
        t = trigger.kind.label + (" wildcard" if trigger.wildcard else "")
        self.by_trigger[t] = self.by_trigger.get(t, 0) + n
        a = action.kind.label
        self.by_action[a] = self.by_action.get(a, 0) + n

    def uncount(self, trigger: Trigger, action: Action) -> None:
        self.count(trigger, action, -1)


class CompiledZone:
    """One policy zone, ready for lookups. Immutable once built; ``with_owners`` derives a new one."""

    def __init__(self, *, origin: bytes, soa: RR, source: str, actions: list[Action],
                 rule_action: list[int] | memoryview, rule_ref: list[int] | memoryview,
                 refs: StringTable, qname: NameLookup, nsdname: NameLookup,
                 client_ip: PrefixTable, ip: PrefixTable, nsip: PrefixTable,
                 rejections: list[Rejection], stats: ZoneStats) -> None:
        self.origin = origin
        self._name = names.to_text(origin)
        self.soa = soa
        self.serial = int.from_bytes(soa.rdata[-20:-16], "big")
        # the SOA as it goes into the additional section: TTL capped by its own MINIMUM (RFC 2308)
        self.soa_answer = RR(6, min(soa.ttl, int.from_bytes(soa.rdata[-4:], "big")), soa.rdata)
        self.source = source
        self.actions = actions
        self.rule_action = rule_action
        self.rule_ref = rule_ref
        self.refs = refs
        self.qname = qname
        self.nsdname = nsdname
        self.base_qname: NameTable = qname if isinstance(qname, NameTable) else qname.base  # type: ignore[attr-defined]
        self.base_nsdname: NameTable = nsdname if isinstance(nsdname, NameTable) else nsdname.base  # type: ignore[attr-defined]
        self.base_rules = len(rule_action)
        self.ext_rules: list[tuple[int, str | None]] = []  # rules added by with_owners: (action id, ref)
        self.changes: dict[bytes, tuple[RR, ...]] = {}  # owners replaced since the base was built
        self.client_ip = client_ip
        self.ip = ip
        self.nsip = nsip
        self.rejections = rejections
        self.stats = stats
        self.mapped: object | None = None  # the mmap a snapshot zone lives in (kept alive with it)
        self.snapshot_path: str | None = None
        self.snapshot_digest: bytes | None = None
        # the zone ``with_owners`` derived this one from (first generation): keeps a mapped base known
        # to rpz.snapshot, so the next delta over the same file reuses its mapping
        self.base_zone: CompiledZone | None = None
        self.has_client_ip = len(client_ip) > 0
        self.has_response_triggers = len(ip) > 0 or nsdname.size > 0 or len(nsip) > 0

    @property
    def name(self) -> str:
        return self._name

    def action_of(self, rule: int) -> Action:
        if rule < self.base_rules:
            return self.actions[self.rule_action[rule]]
        return self.actions[self.ext_rules[rule - self.base_rules][0]]

    def ref_of(self, rule: int) -> str | None:
        if rule < self.base_rules:
            r = self.rule_ref[rule]
            return self.refs.get(r) if r else None
        return self.ext_rules[rule - self.base_rules][1]

    def with_owners(self, changes: Mapping[bytes, Sequence[RR]], source: str | None = None) -> CompiledZone:
        """A new zone: this one with the complete record sets of some owners replaced.

        ``changes`` maps absolute owner names (wire) to every record the owner now has; an empty
        sequence removes the owner. The apex's SOA, when given, becomes the new SOA (serial). What
        a full compile would reject is rejected here too (and the owner has no rule).
        """
        from .overlay import NameOverlay
        z = copy.copy(self)
        z.base_zone = self.base_zone if self.base_zone is not None else self
        z.source = source or self.source
        z.actions = list(self.actions)
        z.ext_rules = list(self.ext_rules)
        z.changes = dict(self.changes)
        z.rejections = list(self.rejections)
        z.stats = ZoneStats(self.stats.rules, self.stats.records, dict(self.stats.by_trigger),
                            dict(self.stats.by_action))
        overlays = {}
        for attr, base_attr in (("qname", "base_qname"), ("nsdname", "base_nsdname")):
            cur = getattr(self, attr)
            overlays[attr] = NameOverlay(getattr(self, base_attr), getattr(cur, "nodes", None),
                                         getattr(cur, "maxdepth", None))
        z.qname, z.nsdname = overlays["qname"], overlays["nsdname"]
        prefixes = {TriggerKind.CLIENT_IP: dict(self.client_ip.entries), TriggerKind.IP: dict(self.ip.entries),
                    TriggerKind.NSIP: dict(self.nsip.entries)}
        action_ids = {a: i for i, a in enumerate(z.actions)}
        for raw_owner, rrs in changes.items():
            owner = raw_owner.lower()
            z.changes[owner] = tuple(rrs)
            z._change_owner(owner, list(rrs), overlays, prefixes, action_ids)
        z.client_ip = PrefixTable(list(prefixes[TriggerKind.CLIENT_IP].items()))
        z.ip = PrefixTable(list(prefixes[TriggerKind.IP].items()))
        z.nsip = PrefixTable(list(prefixes[TriggerKind.NSIP].items()))
        z.has_client_ip = len(z.client_ip) > 0
        z.has_response_triggers = len(z.ip) > 0 or z.nsdname.size > 0 or len(z.nsip) > 0
        return z

    def _rule_for(self, action: Action, ref: str | None, action_ids: dict[Action, int]) -> int:
        aid = action_ids.get(action)
        if aid is None:
            aid = action_ids[action] = len(self.actions)
            self.actions.append(action)
        self.ext_rules.append((aid, ref))
        return self.base_rules + len(self.ext_rules) - 1

    def _change_owner(self, owner: bytes, rrs: list[RR], overlays: dict[str, Any],
                      prefixes: dict[TriggerKind, dict[Prefix, int]], action_ids: dict[Action, int]) -> None:
        if owner == self.origin:
            for rr in rrs:
                if rr.rdtype == 6:
                    self.soa = rr
                    self.serial = int.from_bytes(rr.rdata[-20:-16], "big")
                    self.soa_answer = RR(6, min(rr.ttl, int.from_bytes(rr.rdata[-4:], "big")), rr.rdata)
            return
        rel = names.relativize(owner, self.origin)
        if rel is None:
            self.rejections.append(Rejection(self.source, None, names.to_text(owner),
                                             f"outside the zone {names.to_text(self.origin)}"))
            return
        try:
            trigger = parse_owner(rel)
        except RecordError as exc:
            self.rejections.append(Rejection(self.source, None, names.to_text(owner), exc.reason))
            return
        rule = 0
        new_action: Action | None = None
        if rrs:
            try:
                new_action, ref = classify(sorted(set(rrs)), owner)
                rule = self._rule_for(new_action, ref, action_ids)
            except RecordError as exc:
                self.rejections.append(Rejection(self.source, None, names.to_text(owner), exc.reason))
        old = self._rule_of(trigger, overlays, prefixes)
        if old:
            self.stats.uncount(trigger, self.action_of(old))
        if rule and new_action is not None:
            self.stats.count(trigger, new_action)
        if trigger.kind in (TriggerKind.QNAME, TriggerKind.NSDNAME):
            ov = overlays["qname" if trigger.kind is TriggerKind.QNAME else "nsdname"]
            if trigger.wildcard:
                ov.set_wildcard(trigger.name, rule)
            else:
                ov.set_rule(trigger.name, rule)
        else:
            assert trigger.prefix is not None
            table = prefixes[trigger.kind]
            if rule:
                table[trigger.prefix] = rule
            else:
                table.pop(trigger.prefix, None)

    @staticmethod
    def _rule_of(trigger: Trigger, overlays: dict[str, Any], prefixes: dict[TriggerKind, dict[Prefix, int]]) -> int:
        if trigger.kind in (TriggerKind.QNAME, TriggerKind.NSDNAME):
            ov = overlays["qname" if trigger.kind is TriggerKind.QNAME else "nsdname"]
            st = ov.state(trigger.name)
            if st is None:
                return 0
            return int(st[1] if trigger.wildcard else st[0])
        assert trigger.prefix is not None
        return prefixes[trigger.kind].get(trigger.prefix, 0)

    def __repr__(self) -> str:
        return f"<CompiledZone {self.name} serial {self.serial}: {self.stats.rules} rules>"


class ZoneBuilder:
    """Collects records per owner and compiles them."""

    def __init__(self, apex: bytes, source: str) -> None:
        self.apex = apex
        self.source = source
        self.groups: dict[bytes, list[tuple[RR, int | None]]] = {}
        self.rejections: list[Rejection] = []
        self._actions: dict[Action, int] = {}
        self._action_list: list[Action] = []
        self._refs: dict[str, int] = {}
        self._ref_list: list[str] = [""]
        self.extra_refs: list[bytes] = []  # references added in bulk (rpz.bulk), numbered after _ref_list
        self._rules: dict[tuple[int, int], int] = {}
        self.rule_action: list[int] = [0]
        self.rule_ref: list[int] = [0]
        self.qname: dict[bytes, list[int]] = {}
        self.nsdname: dict[bytes, list[int]] = {}
        self.prefixes: dict[TriggerKind, dict[Prefix, int]] = {
            TriggerKind.CLIENT_IP: {}, TriggerKind.IP: {}, TriggerKind.NSIP: {}}
        self.stats = ZoneStats()

    def reject(self, line: int | None, owner: bytes | str, reason: str) -> None:
        text = owner if isinstance(owner, str) else names.to_text(owner)
        self.rejections.append(Rejection(self.source, line, text, reason))

    def add(self, owner: bytes, rr: RR, line: int | None) -> None:
        if b"rpz-order" in owner:
            base = companion_base(owner, self.apex)
            if base is not None:   # an order reference for the rule at base (rpz.actions.companion_base)
                self.stats.records += 1
                if base == self.apex:
                    self.reject(line, owner, "rpz-order at the zone apex names no rule: put the order "
                                             "reference at <rule name>.rpz-order")
                elif rr.rdtype != T_TXT or order_ref_of(rr.rdata) is None:
                    self.reject(line, owner, f"only TXT \"order=...\" may sit at an rpz-order name (it carries the "
                                             f"order reference of the rule at {names.to_text(base)})")
                else:
                    self.groups.setdefault(base, []).append((rr, line))
                return
        self.groups.setdefault(owner, []).append((rr, line))
        self.stats.records += 1

    def action_id(self, action: Action) -> int:
        aid = self._actions.get(action)
        if aid is None:
            aid = self._actions[action] = len(self._action_list)
            self._action_list.append(action)
        return aid

    def ref_id(self, ref: str | None) -> int:
        if not ref:
            return 0
        rid = self._refs.get(ref, 0)
        if not rid:
            rid = self._refs[ref] = len(self._ref_list)
            self._ref_list.append(ref)
        return rid

    def rule_id(self, action: Action, ref: str | None) -> int:
        aid = self.action_id(action)
        rid = self.ref_id(ref)
        key = (aid, rid)
        rule = self._rules.get(key)
        if rule is None:
            rule = self._rules[key] = len(self.rule_action)
            self.rule_action.append(aid)
            self.rule_ref.append(rid)
        return rule

    def ref_table(self) -> StringTable:
        return StringTable.build_bytes([r.encode("utf-8") for r in self._ref_list] + self.extra_refs)

    def place(self, trigger: Trigger, rule: int) -> None:
        """Put a rule under its trigger in the right table."""
        if trigger.kind in (TriggerKind.QNAME, TriggerKind.NSDNAME):
            table = self.qname if trigger.kind is TriggerKind.QNAME else self.nsdname
            if trigger.wildcard:
                table.setdefault(trigger.name, [0, 0])[1] = rule
                table.setdefault(b"\x01*" + trigger.name, [0, 0])[0] = rule
            else:
                table.setdefault(trigger.name, [0, 0])[0] = rule
        else:
            assert trigger.prefix is not None
            self.prefixes[trigger.kind][trigger.prefix] = rule

    def _compile_group(self, owner: bytes, items: list[tuple[RR, int | None]]) -> None:
        first_line = items[0][1]
        if owner == self.apex:
            for rr, line in items:
                if rr.rdtype != 2:  # NS at the apex is the zone's own; anything else is misplaced
                    self.reject(line, owner, "data at the zone apex is not a policy rule")
            return
        rel = names.relativize(owner, self.apex)
        if rel is None:
            for _, line in items:
                self.reject(line, owner, f"outside the zone {names.to_text(self.apex)}")
            return
        try:
            trigger = parse_owner(rel)
            rrs = sorted({rr for rr, _ in items})
            action, ref = classify(rrs, owner)
        except RecordError as exc:
            for _, line in items:
                self.reject(line, owner, exc.reason)
            return
        if first_line is None and any(line is not None for _, line in items):
            first_line = next(line for _, line in items if line is not None)
        self.place(trigger, self.rule_id(action, ref))
        self.stats.count(trigger, action)

    def build(self, soa: RR, progress: Progress | None = None) -> CompiledZone:
        total = len(self.groups)
        for n, (owner, items) in enumerate(self.groups.items()):
            self._compile_group(owner, items)
            if progress is not None and n % 65536 == 0:
                progress(n, total)
        if progress is not None:
            progress(total, total)
        return self.finish(soa)

    def finish(self, soa: RR) -> CompiledZone:
        self.rejections.sort(key=lambda r: (r.line is None, r.line or 0))
        return CompiledZone(
            origin=self.apex, soa=soa, source=self.source, actions=self._action_list,
            rule_action=self.rule_action, rule_ref=self.rule_ref, refs=self.ref_table(),
            qname=build_name_table(self.qname), nsdname=build_name_table(self.nsdname),
            client_ip=PrefixTable(list(self.prefixes[TriggerKind.CLIENT_IP].items())),
            ip=PrefixTable(list(self.prefixes[TriggerKind.IP].items())),
            nsip=PrefixTable(list(self.prefixes[TriggerKind.NSIP].items())),
            rejections=self.rejections, stats=self.stats)


TRIM_AFTER_RECORDS = 50_000


def release_freed_memory(records: int) -> None:
    """Give the heap that compiling a large zone freed back to the system (glibc ``malloc_trim``).

    Compiling a million-rule zone frees some 400 MB of short-lived objects that glibc would keep
    in the process (RSS 492 MB instead of 92 MB, BENCHMARKS.md "Policy core"). Skipped for small
    zones and where the C library has no ``malloc_trim``."""
    if records < TRIM_AFTER_RECORDS:
        return
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def compile_text(data: bytes, source: str = "<zone>", origin: str | bytes | None = None,
                 progress: Progress | None = None, fast: bool = True) -> CompiledZone:
    """Compile master-file text. ZoneReadError when the zone as a whole is unusable."""
    apex = _origin_wire(origin)
    if fast:
        from .fastzone import compile_text_fast
        zone = compile_text_fast(data, source, apex, progress)
        release_freed_memory(zone.stats.records)
        return zone
    lines = data.split(b"\n")
    reader = ZoneReader(data, source, apex)
    builder: ZoneBuilder | None = None
    pending: list[ParsedRR] = []
    for prr in reader.read_lines(lines):
        if builder is None:
            if reader.apex is None:
                pending.append(prr)
                continue
            builder = ZoneBuilder(reader.apex, source)
        for p in pending:
            builder.add(p.owner, p.rr, p.line)
        pending.clear()
        builder.add(prr.owner, prr.rr, prr.line)
    if reader.soa is None or reader.apex is None:
        raise ZoneReadError(source, "no SOA record at the zone apex: not a zone")
    if builder is None:
        builder = ZoneBuilder(reader.apex, source)
    builder.rejections.extend(reader.rejections)
    return builder.build(reader.soa.rr, progress)


def compile_records(origin: str | bytes, records: Iterable[tuple[bytes, int, int, bytes]],
                    source: str = "<records>", progress: Progress | None = None, bulk: bool = True) -> CompiledZone:
    """Compile (owner wire, rdtype, ttl, rdata wire) tuples, as a zone transfer yields them.
    ``bulk`` decides the common owner shapes in bulk (rpz.bulk); both ways mean the same."""
    apex = _origin_wire(origin)
    assert apex is not None
    if bulk:
        from .bulk import compile_records_bulk
        zone = compile_records_bulk(apex, records, source, progress)
        release_freed_memory(zone.stats.records)
        return zone
    builder = ZoneBuilder(apex, source)
    soa: RR | None = None
    for raw_owner, rdtype, ttl, rdata in records:
        owner = raw_owner.lower()
        if rdtype == 6:
            if owner != apex:
                builder.reject(None, owner, "SOA record outside the zone apex")
            elif soa is None:
                soa = RR(6, ttl, rdata)
            continue
        builder.add(owner, RR(rdtype, ttl, rdata), None)
    if soa is None:
        raise ZoneReadError(source, "no SOA record at the zone apex: not a zone")
    return builder.build(soa, progress)


def _origin_wire(origin: str | bytes | None) -> bytes | None:
    if origin is None:
        return None
    if isinstance(origin, bytes):
        return origin.lower()
    return names.from_text(origin if origin.endswith(".") else origin + ".").lower()
