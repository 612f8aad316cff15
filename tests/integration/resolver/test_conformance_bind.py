"""Conformance with BIND 9.18, the RPZ reference: same policy zones, same upstream, same questions.

BIND (``response-policy { ... } qname-wait-recurse no break-dnssec yes``, forwarding to the same
Unbound) and our resolver load the same three policy zones in the same order: an allow-list zone,
the hotline zone, and a log-only zone (BIND ``policy disabled``, ours ``override = "disabled"``).
Each question is asked of both, over UDP or TCP, from 127.0.0.1 or from a second or third loopback
address (for rpz-client-ip rules); rcode, header flags, the answer section and the SOA in the
additional section must be identical.

Intended differences, not compared here and checked on their own below:
- Extended DNS Errors (RFC 8914): BIND 9.18 sends none (EDE for RPZ arrived in 9.19.5/9.20); we
  send the zone's code with the order reference on every rewrite, and never on PASSTHRU.
- TTLs of records that come from the upstream: each server caches them on its own, so they may
  differ by the seconds between the two questions; they are compared within 5 seconds.
- NSDNAME/NSIP rules are not in these zones: our forwarding data plane does not evaluate them
  (documented), BIND does.

One difference in the input: BIND refuses a zone with "CNAME and other data", so the order
reference TXT records (``TXT "order=..."`` beside a ``CNAME .`` rule, our convention for naming the
legal order) are removed from BIND's copy of the zones.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.rdatatype
import pytest

from . import zones
from .peers import Peer, ask, start_bind

pytestmark = pytest.mark.integration

POLICY = [("allow.rpz.test", zones.POLICY_ALLOW), ("rpz.test", zones.POLICY_MAIN),
          ("log.rpz.test", zones.POLICY_LOGONLY)]


@pytest.fixture(scope="module")
def bind(tmp_path_factory: pytest.TempPathFactory, unbound: Peer) -> Iterator[Peer]:
    opts = {"allow.rpz.test": "max-policy-ttl 60", "rpz.test": "max-policy-ttl 60",
            "log.rpz.test": "max-policy-ttl 60 policy disabled"}
    peer = start_bind(tmp_path_factory.mktemp("bind"), unbound.port,
                      [(name, _without_order_refs(text), opts[name]) for name, text in POLICY])
    yield peer
    peer.stop()


def zone_tables(work: Path) -> list[dict[str, object]]:
    """The POLICY zones written under ``work``, as [[policy.zone]] tables (BIND's options, ours)."""
    tables = []
    for name, text in POLICY:
        f = work / f"{name}.zone"
        f.write_text(text)
        t: dict[str, object] = {"file": str(f), "name": name + ".", "max_policy_ttl": 60}
        if name == "rpz.test":
            t.update(ede=17, ede_text="order {order_ref}")
        if name == "log.rpz.test":
            t["override"] = "disabled"
        tables.append(t)
    return tables



def _without_order_refs(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if '"order=' not in line)


# (name, type, transport, source address, what it exercises)
QUESTIONS = [
    ("blocked.example.", "A", "udp", None, "QNAME exact, NXDOMAIN"),
    ("x.blocked.example.", "A", "udp", None, "QNAME wildcard, NXDOMAIN"),
    ("y.blocked.example.", "AAAA", "udp", None, "wildcard, name absent upstream"),
    ("pass.blocked.example.", "A", "udp", None, "exact PASSTHRU beats the wildcard (5.3)"),
    ("pass2.blocked.example.", "A", "udp", None, "earlier zone's PASSTHRU beats a later block (5.2)"),
    ("nodata.example.", "A", "udp", None, "NODATA"),
    ("garden.example.", "A", "udp", None, "Local Data of the asked type"),
    ("garden.example.", "AAAA", "udp", None, "Local Data without the asked type: NODATA"),
    ("multi.example.", "TXT", "udp", None, "Local Data, TXT"),
    ("multi.example.", "A", "tcp", None, "Local Data over TCP"),
    ("tcp.example.", "A", "udp", None, "TCP-Only over UDP: TC=1"),
    ("tcp.example.", "A", "tcp", None, "TCP-Only over TCP: the real answer"),
    ("wild.example.", "A", "udp", None, "CNAME *.garden: qname prepended, target resolved, not re-filtered"),
    ("local-cname.example.", "A", "udp", None, "Local Data CNAME to a garden, target resolved"),
    ("sub.ent.example.", "A", "udp", None, "empty non-terminal stops the wildcard"),
    ("a.sub.ent.example.", "A", "udp", None, "below the ENT: no wildcard applies"),
    ("other.ent.example.", "A", "udp", None, "wildcard applies beside the ENT"),
    ("deep.sub.ent.example.", "A", "udp", None, "exact rule under the ENT"),
    ("badip.example.", "A", "udp", None, "rpz-ip: the /32 PASSTHRU outranks the /24 block (5.6)"),
    ("badip2.example.", "A", "udp", None, "rpz-ip /24: NXDOMAIN"),
    ("ipboth.example.", "A", "udp", None, "QNAME outranks rpz-ip in one zone (5.4)"),
    ("chain.example.", "A", "udp", None, "CNAME target blocked: NXDOMAIN with the CNAME kept (5.1)"),
    ("chain2.example.", "A", "udp", None, "two CNAMEs, final address blocked by rpz-ip"),
    ("chain3.example.", "A", "udp", None, "clean CNAME chain"),
    ("x.dn.example.", "A", "udp", None, "DNAME substitution lands on a blocked name"),
    ("www.example.", "A", "udp", None, "not listed"),
    ("www.example.", "AAAA", "tcp", None, "not listed, TCP"),
    ("mx.example.", "MX", "udp", None, "not listed, MX"),
    ("nonexistent.example.", "A", "udp", None, "upstream NXDOMAIN, not listed"),
    ("logged.example.", "A", "udp", None, "log-only zone: the real answer"),
    ("goodip.example.", "A", "udp", "127.0.0.2", "rpz-client-ip: NXDOMAIN for this client only"),
    ("goodip.example.", "A", "udp", "127.0.0.1", "rpz-client-ip: other clients unaffected"),
    ("nodata.example.", "A", "udp", "127.0.0.2", "CLIENT-IP outranks QNAME in one zone (5.4)"),
    ("nodata.example.", "A", "udp", "127.0.0.3", "CLIENT-IP PASSTHRU outranks QNAME NODATA"),
    ("blocked.example.", "A", "tcp", "127.0.0.2", "CLIENT-IP over TCP"),
    ("blocked.example.", "CNAME", "udp", None, "QTYPE CNAME: the QNAME stage only"),
    ("chain.example.", "CNAME", "udp", None, "QTYPE CNAME on a chain: no later stages"),
]

TTL_SLACK = 5


def _view(m: dns.message.Message) -> dict[str, object]:
    answer = []
    for rrset in m.answer:
        answer.append((rrset.name.to_text().lower(), dns.rdatatype.to_text(rrset.rdtype),
                       tuple(sorted(rd.to_text().lower() for rd in rrset)), rrset.ttl))
    soa = [(r.name.to_text().lower(), tuple(rd.to_text() for rd in r), r.ttl) for r in m.additional
           if r.rdtype == dns.rdatatype.SOA]
    return {"rcode": m.rcode(), "flags": dns.flags.to_text(m.flags), "answer": sorted(answer), "soa": soa}


def _same(a: dict[str, object], b: dict[str, object]) -> bool:
    if a["rcode"] != b["rcode"] or a["flags"] != b["flags"]:
        return False
    for key in ("answer", "soa"):
        x, y = a[key], b[key]
        assert isinstance(x, list) and isinstance(y, list)
        if len(x) != len(y):
            return False
        for r1, r2 in zip(x, y, strict=True):
            if r1[:-1] != r2[:-1] or abs(r1[-1] - r2[-1]) > TTL_SLACK:
                return False
    return True


def _ask(peer: Peer, name: str, rdtype: str, transport: str, source: str | None) -> dns.message.Message | None:
    try:
        return ask(peer.port, name, rdtype, tcp=transport == "tcp", source=source, timeout=1.5)
    except dns.exception.Timeout:
        return None


@pytest.mark.parametrize(("name", "rdtype", "transport", "source", "what"), QUESTIONS,
                         ids=[f"{q[0]}{q[1]}/{q[2]}{'@' + q[3] if q[3] else ''}" for q in QUESTIONS])
def test_same_answer_as_bind(bind: Peer, ours: Peer, name: str, rdtype: str, transport: str,
                             source: str | None, what: str) -> None:
    theirs = _ask(bind, name, rdtype, transport, source)
    mine = _ask(ours, name, rdtype, transport, source)
    assert theirs is not None, f"BIND did not answer {name} {rdtype} ({what})"
    assert mine is not None, f"we did not answer {name} {rdtype} ({what})"
    tv, mv = _view(theirs), _view(mine)
    assert _same(tv, mv), f"{what}\nBIND: {tv}\nours: {mv}"


def test_drop_gets_no_answer_from_either(bind: Peer, ours: Peer) -> None:
    for transport in ("udp", "tcp"):
        assert _ask(bind, "drop.example.", "A", transport, None) is None
        assert _ask(ours, "drop.example.", "A", transport, None) is None
    # and both still answer afterwards
    assert _ask(ours, "www.example.", "A", "udp", None) is not None


def _ede(m: dns.message.Message) -> list[tuple[int, str]]:
    return [(o.code, o.text or "") for o in m.options if o.otype == 15]


def test_intended_difference_ede_on_rewrites_only(bind: Peer, ours: Peer) -> None:
    """BIND 9.18 sends no EDE; we send the zone's EDE (17 Filtered) with the order reference on a
    rewrite, none on PASSTHRU, none on a log-only hit, none to a client without EDNS."""
    assert _ede(ask(bind.port, "blocked.example.")) == []
    assert _ede(ask(ours.port, "blocked.example.")) == [(17, "order TW-2026-0042")]
    assert _ede(ask(ours.port, "x.blocked.example.")) == [(17, "order -")]
    assert _ede(ask(ours.port, "pass.blocked.example.")) == []
    assert _ede(ask(ours.port, "logged.example.")) == []
    plain = ask(ours.port, "blocked.example.", edns=None)
    assert plain.edns < 0 and plain.rcode() == dns.rcode.NXDOMAIN
