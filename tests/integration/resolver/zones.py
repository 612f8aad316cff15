"""Test zones (synthetic: example., walled.test., documentation addresses).

The policy zones follow the lab zone of the RPZ research note (/work/shared/research/rpz-anchors.md
section 9) with what the conformance test needs on top: two zones for zone-order precedence, a
log-only (disabled) zone, client-IP rules for a second and a third loopback address, rpz-ip
prefixes of two lengths, CNAME and DNAME chains.
"""

from __future__ import annotations

import dns.message
import dns.rcode
import dns.rdatatype

AUTH_EXAMPLE = """\
$ORIGIN example.
$TTL 300
@           SOA ns.example. hostmaster.example. 1 3600 600 86400 60
@           NS  ns.example.
ns          A   127.0.0.1
blocked     A   203.0.113.1
x.blocked   A   203.0.113.2
pass.blocked A  203.0.113.3
pass2.blocked A 203.0.113.33
nodata      A   203.0.113.4
garden      A   203.0.113.5
garden      AAAA 2001:db8::5
drop        A   203.0.113.6
tcp         A   203.0.113.7
wild        A   203.0.113.8
ent         A   203.0.113.9
sub.ent     A   203.0.113.10
a.sub.ent   A   203.0.113.11
other.ent   A   203.0.113.12
deep.sub.ent A  203.0.113.14
badip       A   198.51.100.55
badip2      A   198.51.100.56
ipboth      A   198.51.100.60
goodip      A   203.0.113.13
logged      A   203.0.113.15
chain       CNAME blocked.example.
chain2      CNAME mid.example.
mid         CNAME badip2.example.
chain3      CNAME www.example.
www         A   203.0.113.20
www         AAAA 2001:db8::20
mx          MX  10 mail.example.
mail        A   203.0.113.21
dn          DNAME blocked.example.
local-cname A   203.0.113.22
multi       A   203.0.113.23
txt         TXT "hello from the authority"
big         TXT "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
big         TXT "111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111"
big         TXT "222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222"
big         TXT "333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333"
big         TXT "444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444"
big         TXT "555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555"
big         TXT "666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666"
big         TXT "777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777"
big         TXT "888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888"
big         TXT "999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999"
"""

AUTH_SIGNED = """\
$ORIGIN signed.example.
$TTL 300
@           SOA ns.example. hostmaster.example. 1 3600 600 86400 60
@           NS  ns.example.
www         A   203.0.113.40
"""

AUTH_WALLED = """\
$ORIGIN walled.test.
$TTL 300
@           SOA ns.example. hostmaster.example. 1 3600 600 86400 60
@           NS  ns.example.
*           A   192.0.2.200
stop        A   192.0.2.201
"""

# zone 1: an allow-list zone that outranks zone 2 by order (section 5.2)
POLICY_ALLOW = """\
$ORIGIN allow.rpz.test.
$TTL 300
@   SOA ns.allow.rpz.test. admin.allow.rpz.test. 2026010101 3600 600 86400 60
    NS  localhost.
pass2.blocked.example  CNAME rpz-passthru.
"""

# zone 2: the hotline list
POLICY_MAIN = """\
$ORIGIN rpz.test.
$TTL 300
@   SOA ns.rpz.test. admin.rpz.test. 2026010101 3600 600 86400 60
    NS  localhost.
blocked.example        CNAME .
                       TXT   "order=TW-2026-0042"
*.blocked.example      CNAME .
pass.blocked.example   CNAME rpz-passthru.
nodata.example         CNAME *.
garden.example         A     192.0.2.80
drop.example           CNAME rpz-drop.
tcp.example            CNAME rpz-tcp-only.
wild.example           CNAME *.walled.test.
*.ent.example          CNAME .
deep.sub.ent.example   CNAME .
local-cname.example    CNAME stop.walled.test.
multi.example          A     192.0.2.90
multi.example          TXT   "policy text"
ipboth.example         A     192.0.2.91
32.2.0.0.127.rpz-client-ip   CNAME .
32.3.0.0.127.rpz-client-ip   CNAME rpz-passthru.
24.0.100.51.198.rpz-ip       CNAME .
32.55.100.51.198.rpz-ip      CNAME rpz-passthru.
"""

# zone 3: log only (BIND: policy disabled; ours: override = "disabled")
POLICY_LOGONLY = """\
$ORIGIN log.rpz.test.
$TTL 300
@   SOA ns.log.rpz.test. admin.log.rpz.test. 2026010101 3600 600 86400 60
    NS  localhost.
logged.example  CNAME .
"""


def hammer_policy(serial: int, blocked: list[str]) -> str:
    """A policy zone of version ``serial`` that blocks exactly ``blocked`` (NXDOMAIN)."""
    lines = [
        "$ORIGIN swap.rpz.test.", "$TTL 60",
        f"@ SOA ns.swap.rpz.test. admin.swap.rpz.test. {serial} 3600 600 86400 60", "  NS localhost.",
    ]
    lines += [f"{name.rstrip('.')} CNAME ." for name in blocked]
    return "\n".join(lines) + "\n"


# -- the hot-swap model: version k blocks every other one of NAMES, shifted by k ------------------------

HAMMER_NAMES = [f"h{i}.walled.test." for i in range(24)]
HAMMER_BASE = 1000        # version k is served with SOA serial HAMMER_BASE + k


def blocked_in(version: int) -> set[str]:
    return {n for i, n in enumerate(HAMMER_NAMES) if (i + version) % 2 == 0}


def hammer_version(version: int) -> str:
    return hammer_policy(HAMMER_BASE + version, sorted(blocked_in(version)))


def soa_serial(resp: dns.message.Message) -> int | None:
    """The serial of the policy SOA in the additional section (which version answered)."""
    for rrset in resp.additional:
        if rrset.rdtype == dns.rdatatype.SOA:
            return int(rrset[0].serial)
    return None


def fits_a_version(name: str, resp: dns.message.Message, t0: float, t1: float,
                   intervals: dict[int, list[float]]) -> bool:
    """The answer for ``name`` asked between t0 and t1 is what some version active in that time
    (``intervals``: version -> [from, to]) gives: NXDOMAIN with that version's serial when it
    blocks the name, the upstream's 192.0.2.200 when one of them does not."""
    possible = {k for k, (a, b) in intervals.items() if a <= t1 and b >= t0}
    if resp.rcode() == dns.rcode.NXDOMAIN:
        serial = soa_serial(resp)
        return serial is not None and serial - HAMMER_BASE in possible and name in blocked_in(serial - HAMMER_BASE)
    if resp.rcode() == dns.rcode.NOERROR:
        addrs = [rd.address for rrset in resp.answer if rrset.rdtype == dns.rdatatype.A for rd in rrset]
        return addrs == ["192.0.2.200"] and any(name not in blocked_in(k) for k in possible)
    return False
