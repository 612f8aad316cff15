"""The transferred RPZ zone, kept per owner in the forms feedsync needs, updated incrementally.

Turning a million-name zone into text, records and screening verdicts on every IXFR would cost
seconds, so this index keeps, per owner (keyed by its lower-case wire name): the zone's records
there, its master-file lines, its records as (owner wire, type, ttl, rdata wire) for
``rpz.compile_records``, and the screening verdict. A full transfer or the seed loads it from records
per owner (``load``: feedsync.xfrwire, feedsync.xfrseed; ``rebuild`` from a dnspython zone); an IXFR
recomputes only the owners the transfer touched (``update``). It is also where the IXFR base zone
finds its records (``xfr.BaseNodes``): the base holds no dnspython object per owner. Text is
produced from wire form with ``rpz.names`` (dnspython's text conversion is the slow part of a large
zone).

Order references served as ``<rule>.rpz-order TXT "order=..."`` (zone servers refuse a TXT beside
a CNAME; rpz.actions.companion_base) are folded into their rule's records here, so the compiled
forms and the incremental changes carry them; the text keeps them where the primary has them, so the
seed reproduces the primary's zone. A transfer that touches only a reference recomputes its rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.zone

import rpz
from rpz import names
from rpz.actions import order_ref_of

from . import engine
from .config import FeedConfig
from .xfr import rrs_of
from .xfrdigest import TreeDigest, block
from .xfrwire import RR, ZoneRecords, soa_serial

Record = tuple[bytes, int, int, bytes]
CNAME, SOA, NS, TXT = 5, 6, 2, 16
PASSTHRU_WIRE = b"\x0crpz-passthru\x00"
_TYPE_TEXT: dict[int, str] = {}


def _type_text(t: int) -> str:
    s = _TYPE_TEXT.get(t)
    if s is None:
        s = _TYPE_TEXT[t] = dns.rdatatype.to_text(dns.rdatatype.RdataType.make(t))
    return s


def _txt_text(rd: bytes) -> str | None:
    """dnspython's presentation of a TXT RDATA (``dns.rdtypes.txtbase``), or None when malformed."""
    out, pos = [], 0
    while pos < len(rd):
        n = rd[pos]
        s = rd[pos + 1:pos + 1 + n]
        if len(s) != n:
            return None
        pos += 1 + n
        if all(0x20 <= c < 0x7F and c not in (0x22, 0x5C) for c in s):
            out.append('"' + s.decode("ascii") + '"')
        else:
            out.append('"' + "".join("\\" + chr(c) if c in (0x22, 0x5C) else chr(c) if 0x20 <= c < 0x7F
                                     else f"\\{c:03d}" for c in s) + '"')
    return " ".join(out) if out else None


_RDATA_TEXT: dict[tuple[int, bytes], str] = {}


def rdata_text(t: int, rd: bytes) -> str:
    """A record's RDATA as the seed writes it: names absolute (``rpz.names``), TXT as dnspython
    writes it, other types by dnspython (remembered: a policy zone repeats few right-hand sides)."""
    if t == CNAME:
        return names.to_text(rd)
    if t == TXT:
        txt = _txt_text(rd)
        if txt is not None:
            return txt
    key = (t, rd)
    s = _RDATA_TEXT.get(key)
    if s is None:
        rdt = dns.rdatatype.RdataType.make(t)
        s = dns.rdata.from_wire(dns.rdataclass.IN, rdt, rd, 0, len(rd)).to_text()
        if len(_RDATA_TEXT) < 100_000:
            _RDATA_TEXT[key] = s
    return s


@dataclass(slots=True)
class Owner:
    rel: str
    text: bytes
    records: list[Record]            # the policy records (order references folded in)
    rejection: dict[str, Any] | None
    wire: bytes = b""                # the owner as the zone holds it
    rrs: tuple[RR, ...] = ()         # the zone's records at this owner, in the zone's order


def _key(name: dns.name.Name) -> bytes:
    return bytes(name.to_wire() or b"").lower()


class XfrIndex:
    """Per owner (keyed by the lower-case wire name): its records as the zone holds them, its lines
    of the seed text, its policy records and its screening verdict. It is also the record store
    of the IXFR base zone (``xfr.base_zone``: ``zone_records``, ``zone_keys``, ``zone_size``)."""

    def __init__(self, feed: FeedConfig, is_public_suffix: Callable[[str], bool] | None) -> None:
        self.feed = feed
        self.psl = is_public_suffix
        self.origin = dns.name.from_text(feed.zone + ".")
        self.origin_wire = bytes(self.origin.to_wire() or b"")
        self.okey = self.origin_wire.lower()
        self.owners: dict[bytes, Owner] = {}
        self.accepted: set[str] = set()
        self.apex_policy = ""
        self.apex_source = ""
        self.apex_records: list[Record] = []
        self.apex_rrs: tuple[bytes, tuple[RR, ...]] = (self.origin_wire, ())
        self.serial: int | None = None
        self.previous_count = 0
        self.added: set[str] = set()
        self.removed: set[str] = set()
        self.companion_of: dict[bytes, bytes] = {}   # rule owner -> its rpz-order name (keys)
        self.tree = TreeDigest(feed.zone)        # the content digest, per owner (xfrdigest)
        self.rejections: dict[bytes, dict[str, Any]] = {}   # owners left out, kept per owner
        self.apex_block = b""

    # --- the record store of the base zone (xfr.RecordSource) --------------------------------------

    def zone_records(self, key: bytes) -> tuple[bytes, tuple[RR, ...]] | None:
        if key == self.okey:
            return self.apex_rrs
        o = self.owners.get(key)
        return None if o is None else (o.wire, o.rrs)

    def zone_keys(self) -> Iterator[bytes]:
        yield self.okey
        yield from self.owners

    def zone_size(self) -> int:
        return len(self.owners) + (1 if self.apex_rrs[1] else 0)

    # --- building ----------------------------------------------------------------------------------

    def _clear(self) -> None:
        self.owners.clear()
        self.accepted.clear()
        self.companion_of.clear()
        self.tree.clear()
        self.rejections.clear()
        self.apex_block = b""

    def rebuild(self, zone: dns.zone.Zone) -> set[bytes]:
        """From a dnspython zone (the seed read by dnspython, an AXFR-style answer dnspython applied)."""
        records = ZoneRecords(self.okey)
        for name, node in zone.nodes.items():
            wire = bytes(name.to_wire() or b"")
            records.owners[wire.lower()] = (wire, rrs_of(node))
        return self.load(records)

    def load(self, zone: ZoneRecords) -> set[bytes]:
        """The whole zone from its records per owner (xfrwire, xfrseed): returns the rule owners."""
        self._clear()
        self.previous_count = 0
        owners = zone.owners
        apex = owners.get(self.okey)
        if apex is None or not any(t == SOA for t, _, _ in apex[1]):
            raise ValueError(f"the zone {self.origin} has no SOA")
        self._apex(apex)
        companions: dict[bytes, bytes] = {}
        for key in owners:
            if b"rpz-order" in key:
                base = self._base_of(key)
                if base is not None:
                    companions[key] = base
                    self.companion_of[base] = key
        present: set[bytes] = set()
        accepted = self.accepted
        add_tree = self.tree.add
        screen = engine.screen_owner
        feed, psl = self.feed, self.psl
        cut = len(self.okey)
        lines_of = self._lines
        targets: dict[bytes, str] = {}     # CNAME targets as text: a policy zone has few distinct ones
        rels = zone.rels
        for key, (wire, rrs) in owners.items():
            if key == self.okey or not rrs:
                continue
            base = companions.get(key)
            if base is not None:
                comp = self.owners[key] = self._companion(key, wire, rrs, base)
                add_tree(comp.rel, comp.text)
                if comp.rejection is not None:
                    self.rejections[key] = comp.rejection
                continue
            if len(rrs) == 1 and rrs[0][0] == CNAME and key not in self.companion_of:   # most rules
                t, ttl, rd = rrs[0]
                rel = rels.get(key) or names.to_text(key[:len(key) - cut] + b"\x00", omit_final_dot=True)
                target = targets.get(rd)
                if target is None:
                    target = targets[rd] = names.to_text(rd)
                text = f"{rel} {ttl} IN CNAME {target}\n".encode()
                low = rd.lower()
                v = screen(rel, low in (PASSTHRU_WIRE, key), feed, psl)
                rej = None if v.reason is None else {"entry_id": rel, "index": -1, "reason": v.reason.value,
                                                     "detail": v.detail}
                own = Owner(rel, text, [(wire, t, ttl, rd)], rej, wire, rrs)
            else:
                own = lines_of(key, wire, rrs, owners)
            self.owners[key] = own
            add_tree(own.rel, own.text)
            present.add(key)
            if own.rejection is None:
                accepted.add(own.rel)
            else:
                self.rejections[key] = own.rejection
        self.added, self.removed = set(accepted), set()
        self.serial = zone.serial()
        return present

    def _base_of(self, key: bytes) -> bytes | None:
        """The rule owner of an order-reference name ``<rule>.rpz-order.<zone>``, else None."""
        rel = key[:len(key) - len(self.okey)]
        if not key.endswith(self.okey) or not rel:
            return None
        labels, pos = [], 0
        while pos < len(rel):
            labels.append(rel[pos:pos + 1 + rel[pos]])
            pos += 1 + rel[pos]
        if len(labels) >= 2 and labels[-1] == b"\x09rpz-order":
            return b"".join(labels[:-1]) + self.okey
        return None

    def update(self, zone: dns.zone.Zone, touched: Iterable[dns.name.Name]) -> set[bytes]:
        """Recompute the touched owners from ``zone`` (the base zone after an IXFR, or any dnspython
        zone); returns those that now exist (to be proven with rpz). ``added`` / ``removed`` then hold
        the accepted owners this update added and removed."""
        present: set[bytes] = set()
        self.previous_count = len(self.accepted)
        gone: set[str] = set()
        new: set[str] = set()
        keys: dict[bytes, dns.name.Name] = {}
        for name in touched:
            keys[_key(name)] = name
        nodes: dict[bytes, tuple[bytes, tuple[RR, ...]]] = {}

        def current(key: bytes) -> tuple[bytes, tuple[RR, ...]]:
            got = nodes.get(key)
            if got is None:
                name = keys.get(key)
                if name is None:
                    name = dns.name.from_wire(key, 0)[0]
                node = zone.nodes.get(name)
                wire = bytes(name.to_wire() or b"")
                got = nodes[key] = (wire, rrs_of(node) if node is not None else ())
            return got

        bases: dict[bytes, bytes] = {}
        for key in list(keys):
            base = self._base_of(key) if b"rpz-order" in key else None
            if base is not None:      # a reference changed: its rule's records change with it
                bases[key] = base
                if base not in keys:
                    keys[base] = dns.name.from_wire(base, 0)[0]
                if current(key)[1]:
                    self.companion_of[base] = key
                elif self.companion_of.get(base) == key:
                    del self.companion_of[base]
        for key in keys:
            current(key)     # before any owner changes: a name the IXFR left alone reads the index
        all_nodes = _Nodes(self, current)
        for key in keys:
            if key == self.okey:
                self._apex(current(key))
                continue
            old = self.owners.pop(key, None)
            if old is not None:
                self.rejections.pop(key, None)
                self.tree.discard(old.rel, old.text)
                if old.rel in self.accepted:
                    self.accepted.discard(old.rel)
                    gone.add(old.rel)
            wire, rrs = current(key)
            if not rrs:
                continue
            if key in bases:
                comp = self.owners[key] = self._companion(key, wire, rrs, bases[key])
                self.tree.add(comp.rel, comp.text)
                if comp.rejection is not None:
                    self.rejections[key] = comp.rejection
                continue
            own = self._lines(key, wire, rrs, all_nodes)
            self.owners[key] = own
            self.tree.add(own.rel, own.text)
            present.add(key)
            if own.rejection is None:
                self.accepted.add(own.rel)
                new.add(own.rel)
            else:
                self.rejections[key] = own.rejection
        self.added, self.removed = new - gone, gone - new
        soa = next(rd for t, _, rd in self.apex_rrs[1] if t == SOA)
        self.serial = soa_serial(soa)
        return present

    def changes(self, keys: Iterable[bytes | dns.name.Name]) -> dict[bytes, list[rpz.RR]]:
        """{owner wire: its policy records now} for the given owners (empty: gone or refused) and
        the apex SOA: what ``CompiledZone.with_owners`` takes."""
        out: dict[bytes, list[rpz.RR]] = {}
        wanted: set[bytes] = set()
        for n in keys:
            k = n if isinstance(n, bytes) else _key(n)
            base = self._base_of(k) if b"rpz-order" in k else None
            wanted.add(base if base is not None else k)   # a reference goes with its rule
        for k in wanted:
            if k == self.okey:
                continue
            o = self.owners.get(k)
            out[k] = [] if o is None or o.rejection is not None else [rpz.RR(t, ttl, rd) for _, t, ttl, rd in
                                                                     o.records]
        out[self.origin_wire] = [rpz.RR(t, ttl, rd) for _, t, ttl, rd in self.apex_records if t == SOA]
        return out

    def prove(self, keys: Iterable[bytes], source: str) -> tuple[int, rpz.CompiledZone]:
        """Compile the apex and the given owners with the rpz core (rules of different owners are
        independent there, so proving the owners an IXFR touched proves the new version loads).
        An owner rpz cannot use is left out with ENTRY_UNUSABLE_RECORD. Returns the rules compiled."""
        recs = list(self.apex_records)
        for k in keys:
            o = self.owners.get(k)
            if o is not None and o.rejection is None:
                recs.extend(o.records)
        z = rpz.compile_records(self.origin_wire, recs, source)
        for r in z.rejections:
            k = names.from_text(r.owner).lower()
            o = self.owners.get(k)
            if o is not None and o.rejection is None:
                o.rejection = {"entry_id": o.rel, "index": -1, "reason": "ENTRY_UNUSABLE_RECORD", "detail": r.reason}
                self.rejections[k] = o.rejection
                self.accepted.discard(o.rel)
                if o.rel in self.added:
                    self.added.discard(o.rel)
                else:
                    self.removed.add(o.rel)
        return int(z.stats.rules), z

    def _apex(self, apex: tuple[bytes, tuple[RR, ...]]) -> None:
        pol, src, recs = [], [], []
        for t, ttl, rd in apex[1]:
            line = f"@ {ttl} IN {_type_text(t)} {rdata_text(t, rd) if t != SOA else _soa_text(rd)}\n"
            src.append(line)
            if t in (SOA, NS):
                pol.append(line)
                recs.append((self.origin_wire, t, ttl, rd))
        soa_first = sorted(range(len(pol)), key=lambda i: " SOA " not in pol[i])
        self.apex_policy = "".join(pol[i] for i in soa_first)
        self.apex_source = "".join(sorted(src, key=lambda s: " SOA " not in s))
        self.apex_records = recs
        self.apex_rrs = apex
        if self.apex_block:
            self.tree.discard("@", self.apex_block)
        self.apex_block = block(src)
        self.tree.add("@", self.apex_block)

    def _rel(self, key: bytes) -> str:
        return names.to_text(key[: len(key) - len(self.okey)] + b"\x00", omit_final_dot=True)

    def _companion(self, key: bytes, wire: bytes, rrs: tuple[RR, ...], base: bytes) -> Owner:
        """An rpz-order name: its lines stay in the text; its order references go with the rule's
        records (``_lines``); anything else there is refused."""
        rel = self._rel(key)
        lines, bad = [], []
        for t, ttl, rd in rrs:
            lines.append(f"{rel} {ttl} IN {_type_text(t)} {rdata_text(t, rd)}\n")
            if t != TXT or order_ref_of(rd) is None:
                bad.append(_type_text(t))
        rej = None
        if bad or base == self.okey:
            rule = self._rel(base) if base != self.okey else "@"
            rej = {"entry_id": rel, "index": -1, "reason": "ENTRY_UNUSABLE_RECORD",
                   "detail": f"only TXT \"order=...\" may sit at an rpz-order name (the order reference of the "
                             f"rule at {rule}); found {', '.join(sorted(set(bad)))}"}
        return Owner(rel, block(lines), [], rej, wire, rrs)

    def _lines(self, key: bytes, wire: bytes, rrs: tuple[RR, ...], zone: Any) -> Owner:
        """A rule owner: its seed lines, its policy records with its order reference (served at
        ``<name>.rpz-order``) folded in, and the guards' verdict."""
        rel = self._rel(key)
        lines, recs = [], []
        passthru = False
        low = key
        for t, ttl, rd in rrs:
            if t == CNAME:
                passthru = passthru or rd.lower() in (PASSTHRU_WIRE, low)
            lines.append(f"{rel} {ttl} IN {_type_text(t)} {rdata_text(t, rd)}\n")
            recs.append((wire, t, ttl, rd))
        comp = self.companion_of.get(key)
        if comp is not None:      # its order reference, served at <name>.rpz-order
            got = zone.get(comp)
            for t, ttl, rd in got[1] if got is not None else ():
                if t == TXT and order_ref_of(rd) is not None:
                    recs.append((wire, TXT, ttl, rd))
        v = engine.screen_owner(rel, passthru, self.feed, self.psl)
        rej = None if v.reason is None else {"entry_id": rel, "index": -1, "reason": v.reason.value,
                                             "detail": v.detail}
        return Owner(rel, block(lines), recs, rej, wire, rrs)


    # --- outputs -----------------------------------------------------------------------------------

    def header(self) -> str:
        return f"$ORIGIN {self.origin.to_text()}\n"

    def texts(self) -> tuple[bytes, bytes]:
        """(source, policy): the primary's whole zone (the seed for IXFR after a restart), and what
        the resolver loads (apex SOA/NS and the accepted owners). One pass when nothing was refused."""
        head = self.header().encode()
        body = b"".join(o.text for o in self.owners.values())
        source = head + self.apex_source.encode() + body
        if len(self.accepted) != len(self.owners):
            body = b"".join(o.text for o in self.owners.values() if o.rejection is None)
        return source, head + self.apex_policy.encode() + body

    def records(self) -> list[Record]:
        out = list(self.apex_records)
        for o in self.owners.values():
            if o.rejection is None:
                out.extend(o.records)
        return out

    def rejected(self) -> list[dict[str, Any]]:
        return sorted(self.rejections.values(), key=lambda r: r["entry_id"])

    def digest(self) -> str:
        """The content digest of the zone as it is now (xfrdigest; what ``texts()[0]`` hashes to)."""
        return self.tree.hexdigest()


class _Nodes:
    """The current records of a name during ``update``: what the IXFR left, else what the index holds."""

    def __init__(self, index: XfrIndex, current: Callable[[bytes], tuple[bytes, tuple[RR, ...]]]) -> None:
        self.current = current

    def get(self, key: bytes) -> tuple[bytes, tuple[RR, ...]] | None:
        return self.current(key)


def _soa_text(rd: bytes) -> str:
    return dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.SOA, rd, 0, len(rd)).to_text()
