"""The transferred RPZ zone, kept per owner in the forms feedsync needs, updated incrementally.

A zone transfer lands in a ``dns.zone.Zone`` (dnspython owns the protocol). Turning a million-name
zone into text, records and screening verdicts on every IXFR would cost seconds, so this index keeps,
per owner: its master-file lines, its records as (owner wire, type, ttl, rdata wire) for
``rpz.compile_records``, and the screening verdict. An AXFR rebuilds it; an IXFR recomputes only the
owners the transfer touched. Text is produced from wire form with ``rpz.names`` (dnspython's text
conversion is the slow part of a large zone).

Order references served as ``<rule>.rpz-order TXT "order=..."`` (zone servers refuse a TXT beside
a CNAME; rpz.actions.companion_base) are folded into their rule's records here, so the compiled
forms and the incremental changes carry them; the text keeps them where the primary has them, so the
seed reproduces the primary's zone. A transfer that touches only a reference recomputes its rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import dns.name
import dns.node
import dns.rdatatype
import dns.zone

import rpz
from rpz import names
from rpz.actions import order_ref_of

from . import engine
from .config import FeedConfig
from .xfrdigest import TreeDigest, block

Record = tuple[bytes, int, int, bytes]
CNAME, SOA, NS = 5, 6, 2
PASSTHRU_WIRE = b"\x0crpz-passthru\x00"
_TYPE_TEXT: dict[int, str] = {}


def _type_text(t: int) -> str:
    s = _TYPE_TEXT.get(t)
    if s is None:
        s = _TYPE_TEXT[t] = dns.rdatatype.to_text(dns.rdatatype.RdataType.make(t))
    return s


@dataclass(slots=True)
class Owner:
    rel: str
    text: bytes
    records: list[Record]
    rejection: dict[str, Any] | None


class XfrIndex:
    def __init__(self, feed: FeedConfig, is_public_suffix: Callable[[str], bool] | None) -> None:
        self.feed = feed
        self.psl = is_public_suffix
        self.origin = dns.name.from_text(feed.zone + ".")
        self.origin_wire = bytes(self.origin.to_wire() or b"")
        self.owners: dict[dns.name.Name, Owner] = {}
        self.accepted: set[str] = set()
        self.apex_policy = ""
        self.apex_source = ""
        self.apex_records: list[Record] = []
        self.serial: int | None = None
        self.previous_count = 0
        self.added: set[str] = set()
        self.removed: set[str] = set()
        self.companion_of: dict[dns.name.Name, dns.name.Name] = {}   # rule owner -> its rpz-order name
        self.tree = TreeDigest(feed.zone)        # the content digest, per owner (xfrdigest)
        self.rejections: dict[dns.name.Name, dict[str, Any]] = {}   # owners left out, kept per owner
        self.apex_block = b""

    # --- building ----------------------------------------------------------------------------------

    def rebuild(self, zone: dns.zone.Zone) -> set[dns.name.Name]:
        self.owners.clear()
        self.accepted.clear()
        self.companion_of.clear()
        self.tree.clear()
        self.rejections.clear()
        self.apex_block = b""
        return self.update(zone, zone.nodes.keys())

    def _base_of(self, name: dns.name.Name) -> dns.name.Name | None:
        """The rule owner of an order-reference name ``<rule>.rpz-order.<zone>``, else None."""
        labels = name.labels
        k = len(labels) - len(self.origin.labels)
        if k >= 2 and labels[k - 1].lower() == b"rpz-order":
            return dns.name.Name(labels[: k - 1] + self.origin.labels)
        return None

    def update(self, zone: dns.zone.Zone, touched: Iterable[dns.name.Name]) -> set[dns.name.Name]:
        """Recompute the touched owners; returns those that now exist (to be proven with rpz).
        ``added`` / ``removed`` then hold the accepted owners this update added and removed."""
        present: set[dns.name.Name] = set()
        self.previous_count = len(self.accepted)
        gone: set[str] = set()
        new: set[str] = set()
        names_ = set(touched)
        bases: dict[dns.name.Name, dns.name.Name] = {}
        for name in list(names_):
            base = self._base_of(name)
            if base is not None:      # a reference changed: its rule's records change with it
                bases[name] = base
                names_.add(base)
                node = zone.nodes.get(name)
                if node is not None and len(node.rdatasets):
                    self.companion_of[base] = name
                elif self.companion_of.get(base) == name:
                    del self.companion_of[base]
        for name in names_:
            if name == self.origin:
                self._apex(zone)
                continue
            old = self.owners.pop(name, None)
            if old is not None:
                self.rejections.pop(name, None)
                self.tree.discard(old.rel, old.text)
                if old.rel in self.accepted:
                    self.accepted.discard(old.rel)
                    gone.add(old.rel)
            node = zone.nodes.get(name)
            if node is None or not len(node.rdatasets):
                continue
            if name in bases:
                comp = self.owners[name] = self._companion(name, node, bases[name])
                self.tree.add(comp.rel, comp.text)
                if comp.rejection is not None:
                    self.rejections[name] = comp.rejection
                continue
            own = self._owner(name, node, zone)
            self.owners[name] = own
            self.tree.add(own.rel, own.text)
            present.add(name)
            if own.rejection is None:
                self.accepted.add(own.rel)
                new.add(own.rel)
            else:
                self.rejections[name] = own.rejection
        self.added, self.removed = new - gone, gone - new
        self.serial = int(zone.get_soa().serial)
        return present

    def changes(self, names: Iterable[dns.name.Name]) -> dict[bytes, list[rpz.RR]]:
        """{owner wire: its policy records now} for the given owners (empty: gone or refused) and
        the apex SOA: what ``CompiledZone.with_owners`` takes."""
        out: dict[bytes, list[rpz.RR]] = {}
        wanted: set[dns.name.Name] = set()
        for n in names:
            base = self._base_of(n)
            wanted.add(base if base is not None else n)   # a reference goes with its rule
        for n in wanted:
            if n == self.origin:
                continue
            o = self.owners.get(n)
            wire = bytes(n.to_wire() or b"")
            out[wire] = [] if o is None or o.rejection is not None else [rpz.RR(t, ttl, rd) for _, t, ttl, rd in
                                                                           o.records]
        out[self.origin_wire] = [rpz.RR(t, ttl, rd) for _, t, ttl, rd in self.apex_records if t == SOA]
        return out

    def prove(self, names: Iterable[dns.name.Name], source: str) -> tuple[int, rpz.CompiledZone]:
        """Compile the apex and the given owners with the rpz core (rules of different owners are
        independent there, so proving the owners an IXFR touched proves the new version loads).
        An owner rpz cannot use is left out with ENTRY_UNUSABLE_RECORD. Returns the rules compiled."""
        recs = list(self.apex_records)
        for n in names:
            o = self.owners.get(n)
            if o is not None and o.rejection is None:
                recs.extend(o.records)
        z = rpz.compile_records(self.origin_wire, recs, source)
        for r in z.rejections:
            name = dns.name.from_text(r.owner)
            o = self.owners.get(name)
            if o is not None and o.rejection is None:
                o.rejection = {"entry_id": o.rel, "index": -1, "reason": "ENTRY_UNUSABLE_RECORD", "detail": r.reason}
                self.rejections[name] = o.rejection
                self.accepted.discard(o.rel)
                if o.rel in self.added:
                    self.added.discard(o.rel)
                else:
                    self.removed.add(o.rel)
        return int(z.stats.rules), z

    def _apex(self, zone: dns.zone.Zone) -> None:
        node = zone.nodes[self.origin]
        pol, src, recs = [], [], []
        for rds in node.rdatasets:
            for rd in rds:
                line = f"@ {rds.ttl} IN {_type_text(rds.rdtype)} {rd.to_text()}\n"
                src.append(line)
                if rds.rdtype in (SOA, NS):
                    pol.append(line)
                    recs.append((self.origin_wire, int(rds.rdtype), int(rds.ttl), bytes(rd.to_wire() or b"")))
        soa_first = sorted(range(len(pol)), key=lambda i: " SOA " not in pol[i])
        self.apex_policy = "".join(pol[i] for i in soa_first)
        self.apex_source = "".join(sorted(src, key=lambda s: " SOA " not in s))
        self.apex_records = recs
        if self.apex_block:
            self.tree.discard("@", self.apex_block)
        self.apex_block = block(src)
        self.tree.add("@", self.apex_block)

    def _companion(self, name: dns.name.Name, node: dns.node.Node, base: dns.name.Name) -> Owner:
        """An rpz-order name: its lines stay in the text; its order references go with the rule's
        records (``_owner``); anything else there is refused."""
        wire = bytes(name.to_wire() or b"")
        rel = names.to_text(wire[: len(wire) - len(self.origin_wire)] + b"\x00", omit_final_dot=True).lower()
        lines, bad = [], []
        for rds in node.rdatasets:
            for rd in rds:
                lines.append(f"{rel} {rds.ttl} IN {_type_text(rds.rdtype)} {rd.to_text()}\n")
                if rds.rdtype != 16 or order_ref_of(bytes(rd.to_wire() or b"")) is None:
                    bad.append(_type_text(rds.rdtype))
        rej = None
        if bad or base == self.origin:
            rule = base.relativize(self.origin).to_text()
            rej = {"entry_id": rel, "index": -1, "reason": "ENTRY_UNUSABLE_RECORD",
                   "detail": f"only TXT \"order=...\" may sit at an rpz-order name (the order reference of the "
                             f"rule at {rule}); found {', '.join(sorted(set(bad)))}"}
        return Owner(rel, block(lines), [], rej)

    def _owner(self, name: dns.name.Name, node: dns.node.Node, zone: dns.zone.Zone) -> Owner:
        wire = bytes(name.to_wire() or b"")
        rel = names.to_text(wire[: len(wire) - len(self.origin_wire)] + b"\x00", omit_final_dot=True).lower()
        lines, recs = [], []
        passthru = False
        for rds in node.rdatasets:
            t = int(rds.rdtype)
            tt = _type_text(t)
            for rd in rds:
                rdw = bytes(rd.to_wire() or b"")
                if t == CNAME:
                    rdt = names.to_text(rdw)
                    passthru = passthru or rdw.lower() in (PASSTHRU_WIRE, wire.lower())
                else:
                    rdt = rd.to_text()
                lines.append(f"{rel} {rds.ttl} IN {tt} {rdt}\n")
                recs.append((wire, t, int(rds.ttl), rdw))
        comp = self.companion_of.get(name)
        cnode = zone.nodes.get(comp) if comp is not None else None
        if cnode is not None:      # its order reference, served at <name>.rpz-order
            for rds in cnode.rdatasets:
                if rds.rdtype == 16:
                    for rd in rds:
                        rdw = bytes(rd.to_wire() or b"")
                        if order_ref_of(rdw) is not None:
                            recs.append((wire, 16, int(rds.ttl), rdw))
        v = engine.screen_owner(rel, passthru, self.feed, self.psl)
        rej = None if v.reason is None else {"entry_id": rel, "index": -1, "reason": v.reason.value,
                                             "detail": v.detail}
        return Owner(rel, block(lines), recs, rej)

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
