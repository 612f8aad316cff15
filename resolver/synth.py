"""What a policy decision answers: the response pieces for every RPZ action.

Pure: a ``Decision`` (and, for decisions on a later stage, the upstream chain that led there) in,
``wire.Pieces`` out. The data plane builds them once and reuses them for every query the same
decision answers.

Actions (draft-vixie-dnsop-dns-rpz-00 section 3; "stage" is the chain position of section 5.1):

| action           | rcode    | answer section                                  | additional        |
|------------------|----------|-------------------------------------------------|-------------------|
| NXDOMAIN (3.1)   | NXDOMAIN | the CNAME/DNAME records leading to the stage     | policy zone's SOA |
| NODATA (3.2)     | NOERROR  | the CNAME/DNAME records leading to the stage     | policy zone's SOA |
| Local Data (3.6) | NOERROR  | chain + the rule's records of the asked type     | policy zone's SOA |
| TCP-Only (3.5)   | NOERROR  | nothing, TC=1 (over UDP only; TCP gets the truth) | -                 |
| garden CNAME     | target's | chain + CNAME to the target + the target's      | policy zone's SOA |
|                  |          | answer (section 6: not re-filtered, TTLs as received) |             |
| DROP (3.4)       | -        | no response at all                              | -                 |

The SOA goes with every rewrite that carries data, as BIND 9.18 does (``add-soa yes``); every
record the policy itself supplies has its TTL capped by the zone's ``max_policy_ttl``; the Extended DNS Error option
(RFC 8914) goes with every rewrite when the zone sets a code, and only when the client sent EDNS.
"""

from __future__ import annotations

from collections.abc import Sequence

from rpz import ActionKind, Decision, names

from .wire import POINTER_TO_QNAME, T_CNAME, T_SOA, TC, Pieces, ReplyRR, ede_option, encode_rr, rr_from_reply


def _owner(stage_name: bytes, position: int) -> bytes:
    return POINTER_TO_QNAME if position == 0 else stage_name


def _soa(d: Decision) -> bytes:
    assert d.soa is not None
    return encode_rr(d.soa_owner, T_SOA, min(d.soa.ttl, d.ttl_cap) if d.ttl_cap else d.soa.ttl, d.soa.rdata)


def _ede(d: Decision) -> bytes:
    return ede_option(d.ede_code, d.ede_text) if d.ede_code is not None else b""


def chain_prefix(links: Sequence[tuple[ReplyRR, ...]], position: int) -> tuple[bytes, int]:
    """The upstream records that lead from the QNAME to stage ``position``."""
    out = []
    for step in links[1 : position + 1]:
        for rr in step:
            out.append(rr_from_reply(rr))
    return b"".join(out), len(out)


def pieces(d: Decision, links: Sequence[tuple[ReplyRR, ...]] = ((),)) -> Pieces:
    """Pieces for a decision whose answer needs nothing more from upstream."""
    prefix, n = chain_prefix(links, d.position)
    kind = d.action
    if kind in (ActionKind.NXDOMAIN, ActionKind.NODATA):
        rcode = 3 if kind is ActionKind.NXDOMAIN else 0
        return Pieces(rcode, 0, prefix, n, b"", 0, _soa(d), 1, _ede(d))
    if kind is ActionKind.LOCAL_DATA:
        owner = _owner(d.qname, d.position)
        rrs = [encode_rr(owner, r.rdtype, r.ttl, r.rdata) for r in d.records]
        return Pieces(0, 0, prefix + b"".join(rrs), n + len(rrs), b"", 0, _soa(d), 1, _ede(d))
    if kind is ActionKind.TCP_ONLY:
        return Pieces(0, TC, b"", 0, b"", 0, b"", 0, _ede(d))
    raise ValueError(f"no pieces for action {kind.label}")


def garden_pieces(d: Decision, links: Sequence[tuple[ReplyRR, ...]], target_rcode: int,
                  target_answer: Sequence[ReplyRR]) -> Pieces:
    """Pieces for a walled-garden CNAME: chain, CNAME to the target, the target's own answer."""
    prefix, n = chain_prefix(links, d.position)
    cap = d.ttl_cap
    cname_ttl = min(d.records[0].ttl, cap) if d.records else cap
    cname = encode_rr(_owner(d.qname, d.position), T_CNAME, cname_ttl, d.cname_target)
    rest = [rr_from_reply(rr) for rr in target_answer]
    rcode = target_rcode if target_rcode in (0, 3) else 2
    return Pieces(rcode, 0, prefix + cname + b"".join(rest), n + 1 + len(rest), b"", 0, _soa(d), 1, _ede(d))


def is_garden(d: Decision, qtype: int) -> bool:
    """True when the answer needs the target's data from upstream (a CNAME rewrite)."""
    return bool(d.cname_target) and qtype != T_CNAME and d.action in (ActionKind.CNAME_WILDCARD,
                                                                       ActionKind.LOCAL_DATA)


HitTemplate = tuple[str, int, str, int, str, str, str, str | None]


def hit_templates(d: Decision, qtype: int, qname_text: bool = True) -> tuple[HitTemplate, ...]:
    """The per-hit fields that do not depend on the client, for every rule the decision applied
    or logged (DISABLED zones' best matches first, then the applied rule). ``qname_text`` False
    leaves the QNAME and the rule owner (text computed per rule) empty, for a data plane whose sink
    discards the records anyway: the counters need only zone and action."""
    out = []
    decisions = d.disabled if d.action is ActionKind.DISABLED else (*d.disabled, d)
    for x in decisions:
        if qname_text:
            out.append((names.to_text(x.qname), qtype, x.zone, x.serial, x.trigger.label, x.owner, x.action.label,
                        x.order_ref))
        else:
            out.append(("", qtype, x.zone, x.serial, x.trigger.label, "", x.action.label, x.order_ref))
    return tuple(out)
