"""A brute-force model of RPZ for property tests: rules as plain tuples, evaluation by scanning
every rule, DNS existence by enumerating every ancestor. Written independently of rpz's tables
(no hashing, no packed arrays, no fast path) so that agreeing with it means something.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from hypothesis import strategies as st

LABELS = ["a", "b", "c", "ex", "test"]
ACTIONS = {
    "nxdomain": "CNAME .",
    "nodata": "CNAME *.",
    "passthru": "CNAME rpz-passthru.",
    "drop": "CNAME rpz-drop.",
    "tcp-only": "CNAME rpz-tcp-only.",
    "local-data": "A 192.0.2.80",
    "garden": "CNAME walled.garden.test.",
    "wild-garden": "CNAME *.garden.test.",
}
KIND_OF = {"nxdomain": "nxdomain", "nodata": "nodata", "passthru": "passthru", "drop": "drop",
           "tcp-only": "tcp-only", "local-data": "local-data", "garden": "local-data",
           "wild-garden": "cname-wildcard"}
NETS = ["192.0.2.0/24", "192.0.2.0/25", "192.0.2.128/25", "192.0.2.7/32", "192.0.0.0/16",
        "2001:db8::/32", "2001:db8::/64", "2001:db8::7/128", "198.51.100.0/24"]
ADDRS = ["192.0.2.7", "192.0.2.200", "192.0.9.1", "198.51.100.5", "203.0.113.1", "2001:db8::7",
         "2001:db8::1:1", "2001:db9::1"]
TRIGGERS = ("client-ip", "qname", "ip", "nsdname", "nsip")  # section 5.4 order
SUFFIX = {"client-ip": "rpz-client-ip", "ip": "rpz-ip", "nsip": "rpz-nsip", "nsdname": "rpz-nsdname"}


@dataclass(frozen=True)
class Rule:
    trigger: str                  # one of TRIGGERS
    name: tuple[str, ...] = ()    # qname / nsdname triggers: labels, "*" first for a wildcard
    net: str = ""                 # ip triggers
    action: str = "nxdomain"

    def owner(self) -> str:
        if self.trigger in ("qname", "nsdname"):
            base = ".".join(self.name)
            return base if self.trigger == "qname" else f"{base}.rpz-nsdname"
        n = ipaddress.ip_network(self.net)
        if n.version == 4:
            octets = ".".join(reversed(str(n.network_address).split(".")))
            return f"{n.prefixlen}.{octets}.{SUFFIX[self.trigger]}"
        groups = [f"{g:x}" for g in reversed([int(h, 16) for h in n.network_address.exploded.split(":")])]
        best, blen, i = -1, 0, 0
        while i < 8:
            if groups[i] == "0":
                j = i
                while j < 8 and groups[j] == "0":
                    j += 1
                if j - i >= blen and j - i >= 2:
                    best, blen = i, j - i
                i = j
            else:
                i += 1
        if best >= 0:
            groups = [*groups[:best], "zz", *groups[best + blen:]]
        return f"{n.prefixlen}." + ".".join(groups) + f".{SUFFIX[self.trigger]}"

    def line(self) -> str:
        return f"{self.owner()} {ACTIONS[self.action]}\n"


@dataclass
class Zone:
    origin: str
    rules: list[Rule] = field(default_factory=list)
    disabled: bool = False

    def text(self) -> str:
        head = (f"$ORIGIN {self.origin}\n$TTL 60\n@ SOA ns.{self.origin} admin.{self.origin} 1 3600 600 86400 60\n"
                "@ NS localhost.\n")
        return head + "".join(r.line() for r in self.rules)


def _exists(names: set[tuple[str, ...]]) -> set[tuple[str, ...]]:
    out = {()}
    for n in names:
        for i in range(len(n) + 1):
            out.add(n[i:])
    return out


def name_match(rules: list[Rule], trigger: str, q: tuple[str, ...]) -> Rule | None:
    """DNS semantics by enumeration: exact node decides alone; else the closest encloser's '*'."""
    mine = [r for r in rules if r.trigger == trigger]
    by_name = {r.name: r for r in mine}
    existing = _exists(set(by_name))
    if q in existing:
        return by_name.get(q)
    for i in range(1, len(q) + 1):
        ce = q[i:]
        if ce in existing:
            return by_name.get(("*", *ce))
    return None


def _internal(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[int, int]:
    return (net.prefixlen + (96 if net.version == 4 else 0), int(net.network_address))


def ip_match(rules: list[Rule], trigger: str, addrs: list[str]) -> Rule | None:
    best = None
    for r in rules:
        if r.trigger != trigger:
            continue
        net = ipaddress.ip_network(r.net)
        if any(ipaddress.ip_address(a) in net for a in addrs if ipaddress.ip_address(a).version == net.version):
            key = (-_internal(net)[0], _internal(net)[1])
            if best is None or key < best[0]:
                best = (key, r)
    return best[1] if best else None


def canonical(n: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(reversed(n))


def nsdname_match(rules: list[Rule], ns_names: list[tuple[str, ...]]) -> Rule | None:
    best = None
    for ns in ns_names:
        r = name_match(rules, "nsdname", ns)
        if r is None:
            continue
        wild = r.name[:1] == ("*",)
        rank = (0, len(r.name) - 1, canonical(ns)) if wild else (1, 0, canonical(ns))
        if best is None or rank > best[0]:
            best = (rank, r)
    return best[1] if best else None


def evaluate(zones: list[Zone], qtype: int, stages: list[tuple[str, ...]], client: str | None,
             answer: list[str], ns_names: list[tuple[str, ...]], ns_ips: list[str]):
    """(zone index, rule, position, disabled zone indexes) of the winner, or None."""
    if qtype in (5, 39, 255):
        stages = stages[:1]
    disabled = []
    for pos, name in enumerate(stages):
        last = pos == len(stages) - 1
        for zi, z in enumerate(zones):
            hit = None
            for trig in TRIGGERS:
                if trig == "client-ip":
                    hit = ip_match(z.rules, trig, [client]) if (pos == 0 and client) else None
                elif trig == "qname":
                    hit = name_match(z.rules, "qname", name)
                elif trig == "ip":
                    hit = ip_match(z.rules, trig, answer) if last else None
                elif trig == "nsdname":
                    hit = nsdname_match(z.rules, ns_names)
                else:
                    hit = ip_match(z.rules, trig, ns_ips)
                if hit is not None:
                    break
            if hit is None:
                continue
            if z.disabled:
                disabled.append(zi)
                continue
            return zi, hit, pos, disabled
    if disabled:
        return disabled[0], None, None, disabled
    return None


names_st = st.lists(st.sampled_from(LABELS), min_size=1, max_size=4).map(tuple)


@st.composite
def rules_st(draw):
    trig = draw(st.sampled_from(["qname", "qname", "qname", "client-ip", "ip", "nsdname", "nsip"]))
    action = draw(st.sampled_from(list(ACTIONS)))
    if trig in ("qname", "nsdname"):
        name = draw(names_st)
        if draw(st.booleans()):
            name = ("*", *name)
        return Rule(trig, name=name, action=action)
    return Rule(trig, net=draw(st.sampled_from(NETS)), action=action)


@st.composite
def zones_st(draw, max_zones=3):
    n = draw(st.integers(1, max_zones))
    zones = []
    for i in range(n):
        rules = draw(st.lists(rules_st(), max_size=14))
        uniq = {}
        for r in rules:
            uniq.setdefault(r.owner(), r)
        zones.append(Zone(f"z{i}.rpz.test.", list(uniq.values()), disabled=draw(st.integers(0, 5)) == 0))
    return zones


@st.composite
def questions_st(draw):
    qname = draw(names_st)
    chain = draw(st.lists(names_st, max_size=2))
    return dict(
        qname=qname, chain=chain, qtype=draw(st.sampled_from([1, 1, 1, 28, 5, 255, 16])),
        client=draw(st.none() | st.sampled_from(ADDRS)),
        answer=draw(st.lists(st.sampled_from(ADDRS), max_size=3)),
        ns_names=draw(st.lists(names_st, max_size=3)),
        ns_ips=draw(st.lists(st.sampled_from(ADDRS), max_size=2)))
