"""The seed (the last good version's ``.source``) read back into records per owner, quickly.

feedsync writes the seed itself (``XfrIndex.texts``), one record per line in one form:

    $ORIGIN <zone>.
    <owner relative to the zone, or @> <ttl> IN <TYPE> <rdata>

so a restart does not need dnspython's master-file reader (minutes for a million owners here).
This reader takes exactly that form: owners are read with ``rpz.names``, each distinct right-hand
side once with the rpz core's RDATA grammar (``rpz.zonetext.parse_fields``; a plain ``CNAME`` target
and a plain ``TXT "..."`` are read directly), and the records join their owners as dnspython's
reader would add them (``xfrwire.ZoneRecords``: one ``txn.add`` per line). Anything else (another
directive, a comment, parentheses, a blank owner, a class other than IN, no SOA or NS at the apex)
returns None, and the caller reads the text with dnspython (``xfr.zone_from_text``), as before.
"""

from __future__ import annotations

import re

import dns.name

from rpz import names
from rpz.zonetext import parse_fields

from .xfrwire import T_CNAME, T_NS, T_SOA, ZoneRecords, covers

T_TXT = 16
_PLAIN_REL = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*|\*(?:\.[a-z0-9_-]+)+")


class _Unusual(Exception):
    pass


def _rhs(rest: str, origin: bytes, dorigin: dns.name.Name) -> tuple[int, bytes]:
    if rest.startswith("CNAME ") and " " not in rest[6:] and "\\" not in rest and '"' not in rest:
        return T_CNAME, names.from_text(rest[6:], origin)
    if rest.startswith('TXT "') and rest.endswith('"') and rest.count('"') == 2 and "\\" not in rest:
        s = rest[5:-1].encode("ascii")
        if len(s) <= 255:
            return T_TXT, bytes((len(s),)) + s
    f = parse_fields(rest, dorigin)
    if f.ttl is not None:
        raise _Unusual(rest)
    return f.rdtype, f.rdata


def read(text: bytes, zone: str) -> ZoneRecords | None:
    """The seed's records per owner, or None when the text is not in the form feedsync writes."""
    origin_text = zone.rstrip(".") + "."
    dorigin = dns.name.from_text(origin_text)
    origin = bytes(dorigin.to_wire() or b"")
    try:
        body = text.decode("ascii")
    except UnicodeDecodeError:
        return None
    lines = body.split("\n")
    if not lines or lines[0].strip() != f"$ORIGIN {origin_text}":
        return None
    out = ZoneRecords(origin.lower())
    owners = out.owners
    add = out.add_group
    rels = out.rels
    plain = _PLAIN_REL.fullmatch
    rhs: dict[str, tuple[int, bytes]] = {}
    wires: dict[str, bytes] = {"@": origin}
    try:
        for line in lines[1:]:
            if not line:
                continue
            parts = line.split(" ", 3)
            if len(parts) != 4 or parts[2] != "IN" or not parts[1].isdigit() or line[0] in " \t;$(":
                return None
            rel, ttl_text, _, rest = parts
            if "(" in rest or (";" in rest and '"' not in rest):
                return None
            got = rhs.get(rest)
            if got is None:
                got = rhs[rest] = _rhs(rest, origin, dorigin)
            t, rd = got
            wire = wires.get(rel)
            if wire is None:
                wire = names.from_text(rel, origin)
            ttl = int(ttl_text)
            key = wire.lower()
            if key not in owners:
                owners[key] = (wire, ((t, ttl, rd),))
                if plain(rel):          # what rpz.names.to_text gives back for this owner
                    rels[key] = rel
            else:
                add(wire, t, covers(t, rd), ttl, [rd])
            if t == T_SOA and key != out.origin:
                return None
    except Exception:   # anything this reader does not take: dnspython reads it (and words any error)
        return None
    apex = out.apex()
    if not any(t == T_SOA for t, _, _ in apex) or not any(t == T_NS for t, _, _ in apex):
        return None
    return out
