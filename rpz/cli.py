"""``hotline-edge rpz``: look inside policy zones without running a resolver."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

HELP_CHECK = """\
Load policy zones the way the resolver does and report what they contain: rules by trigger and
action, every rejected record with its file:line and the reason, load time and memory.

  hotline-edge rpz check hotline.rpz
  hotline-edge rpz check hotline.rpz local.rpz --origin hotline.rpz.test --origin local.rpz.test
  hotline-edge rpz check hotline.rpz --order TW-2026-0042     rules carrying that order reference

Exit status: 0 every record loaded, 1 some records were rejected (the rest loaded), 2 a zone could
not be read at all.
"""

HELP_QUERY = """\
Evaluate one question against zones in the given order and show the decision, the rule that won
and why (draft-vixie-dnsop-dns-rpz-00 section 5 precedence).

  hotline-edge rpz query hotline.rpz --qname bad.example.test
  hotline-edge rpz query allow.rpz hotline.rpz --qname x.bad.example.test --client 192.0.2.7
  hotline-edge rpz query hotline.rpz --qname shop.example.test --answer-ip 198.51.100.7
  hotline-edge rpz query hotline.rpz --qname www.example.test --cname cdn.example.net

Many names at once (QNAME rules, no client or answer data), one line per name, tab-separated
(name, action, zone, rule owner, order reference; "-" where there is none), then a summary on
lines starting with "#":

  hotline-edge rpz query allow.rpz hotline.rpz --names-from names.txt
  cut -f1 queries.tsv | hotline-edge rpz query hotline.rpz --names-from - --json

The file holds one name per line (the first field; blank lines and lines starting with "#" are
skipped). Each name gets what `--qname NAME` would print; a name an earlier zone's IP or NS
rules could still catch is decided as with no answer data, and counted in the summary.

Exit status: 0 decisions were printed (including "no policy applies"), 1 some lines of
--names-from were not domain names (listed on stderr with their line; the rest were decided),
2 unreadable zone or input.
"""


def register(sub: Any) -> None:
    p = sub.add_parser("rpz", help="inspect policy zones: check, query, compile",
                       description="Inspect RPZ policy zones offline.")
    rsub = p.add_subparsers(dest="rpz_command", metavar="SUBCOMMAND", required=True)

    c = rsub.add_parser("check", help="load zones, count rules, list rejected records",
                        description=HELP_CHECK, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("zones", nargs="+", metavar="ZONEFILE")
    c.add_argument("--origin", action="append", default=[], metavar="NAME",
                   help="zone name for the ZONEFILE at the same position (default: its $ORIGIN)")
    c.add_argument("--order", metavar="REF", help="also list the rules carrying this order reference")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.add_argument("--slow-path", action="store_true", help=argparse.SUPPRESS)
    c.set_defaults(func=cmd_check)

    q = rsub.add_parser("query", help="show the decision for one question and why",
                        description=HELP_QUERY, formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("zones", nargs="+", metavar="ZONEFILE", help="policy zones, highest precedence first")
    q.add_argument("--origin", action="append", default=[], metavar="NAME")
    which = q.add_mutually_exclusive_group(required=True)
    which.add_argument("--qname", help="the name asked")
    which.add_argument("--names-from", metavar="FILE",
                       help="decide every name in FILE (one a line; - for stdin) against QNAME rules")
    q.add_argument("--qtype", default="A", help="the type asked (default A)")
    q.add_argument("--client", help="client address (for rpz-client-ip rules)")
    q.add_argument("--cname", action="append", default=[], metavar="TARGET",
                   help="a CNAME target in the answer chain, in order (repeatable)")
    q.add_argument("--answer-ip", action="append", default=[], metavar="IP",
                   help="an A/AAAA address in the final answer (for rpz-ip rules)")
    q.add_argument("--ns", action="append", default=[], metavar="NAME", help="a name server name (rpz-nsdname)")
    q.add_argument("--ns-ip", action="append", default=[], metavar="IP", help="a name server address (rpz-nsip)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_query)

    k = rsub.add_parser("compile", help="compile a zone into a snapshot file the resolver maps",
                        formatter_class=argparse.RawDescriptionHelpFormatter, description="""\
Compile a zone into the checksummed snapshot format the resolver maps read-only (a million rules
open in about 0.1 s instead of a text parse of seconds). Written atomically: a reader sees the old
file or the new one, never half of one. Bad records are left out and counted (`rpz check` lists
them with their lines).

  hotline-edge rpz compile hotline.rpz -o /var/lib/hotline-edge/hotline.snap
  hotline-edge rpz compile local.zone --origin local.rpz.test -o local.snap

Then `[[policy.zone]] snapshot = "/var/lib/hotline-edge/hotline.snap"` in the configuration.
Exit status: 0 written, 1 written without the rejected records, 2 unreadable zone, 3 cannot write.""")
    k.add_argument("zone", metavar="ZONEFILE")
    k.add_argument("-o", "--output", required=True, metavar="SNAPSHOT")
    k.add_argument("--origin", metavar="NAME")
    k.set_defaults(func=cmd_compile)


def _rss_kb() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _load(path: str, origin: str | None, slow: bool = False) -> Any:
    from .errors import ZoneReadError
    from .progress import ProgressBar
    from .zone import compile_text
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ZoneReadError(path, f"cannot read: {exc.strerror}") from exc
    bar = ProgressBar(f"loading {os.path.basename(path)}")
    try:
        return compile_text(data, path, origin, progress=bar, fast=not slow)
    finally:
        bar.close()


def cmd_check(args: argparse.Namespace) -> int:
    from .errors import RpzError
    results: list[dict[str, Any]] = []
    status = 0
    for i, path in enumerate(args.zones):
        origin = args.origin[i] if i < len(args.origin) else None
        rss0 = _rss_kb()
        t0 = time.perf_counter()
        try:
            z = _load(path, origin, args.slow_path)
        except RpzError as exc:
            print(f"error: {exc}", file=sys.stderr)
            results.append({"file": path, "error": str(exc)})
            status = 2
            continue
        secs = time.perf_counter() - t0
        rss = _rss_kb()
        delta = max(rss - rss0, 0) * 1024
        r: dict[str, Any] = {
            "file": path, "zone": z.name, "serial": z.serial, "rules": z.stats.rules,
            "records": z.stats.records, "by_trigger": z.stats.by_trigger, "by_action": z.stats.by_action,
            "rejected": [str(x) for x in z.rejections], "load_seconds": round(secs, 3),
            "rss_bytes": rss * 1024, "rss_added_bytes": delta,
            "bytes_per_rule": round(delta / z.stats.rules, 1) if z.stats.rules >= 10000 else None,
        }
        if args.order:
            r["order_rules"] = _rules_with_order(z, args.order)
        results.append(r)
        if z.rejections and status == 0:
            status = 1
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
    else:
        for r in results:
            _print_check(r)
    return status


def _rules_with_order(z: Any, ref: str) -> list[str]:
    from . import names
    out = []
    table = z.base_qname
    for row in table.rows():
        for rule, wild in ((table.rule[row], False), (table.wrule[row], True)):
            if rule and z.ref_of(rule) == ref:
                key = table.key(row)
                if wild:
                    key = b"\x01*" + key
                out.append(f"{names.to_text(key)} -> {z.action_of(rule).describe()}")
    return sorted(set(out))


def _fmt_counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(d.items(), key=lambda kv: -kv[1])) or "-"


def _print_check(r: dict[str, Any]) -> None:
    if "error" in r:
        return
    print(f"{r['zone']} ({r['file']}) serial {r['serial']}")
    print(f"  rules       {r['rules']:,} from {r['records']:,} records")
    print(f"  triggers    {_fmt_counts(r['by_trigger'])}")
    print(f"  actions     {_fmt_counts(r['by_action'])}")
    print(f"  rejected    {len(r['rejected']):,} records")
    for line in r["rejected"]:
        print(f"    {line}")
    per_rule = f", {r['bytes_per_rule']} bytes/rule" if r["bytes_per_rule"] is not None else ""
    print(f"  load        {r['load_seconds']:.2f} s, resident {r['rss_bytes'] / 1e6:.1f} MB "
          f"(+{r['rss_added_bytes'] / 1e6:.1f} MB{per_rule})")
    if "order_rules" in r:
        print(f"  order       {len(r['order_rules'])} rules")
        for line in r["order_rules"]:
            print(f"    {line}")


def cmd_query(args: argparse.Namespace) -> int:
    if args.names_from is not None:
        return _query_many(args)
    import ipaddress

    import dns.rdatatype

    from . import names
    from .errors import RpzError
    from .policy import NEED_RESPONSE, Policy, PolicyZone, Stage, ZoneSettings
    try:
        zones = [_load(p, args.origin[i] if i < len(args.origin) else None) for i, p in enumerate(args.zones)]
        qname = names.from_text(_abs(args.qname)).lower()
        qtype = int(dns.rdatatype.from_text(args.qtype))
        chain = [names.from_text(_abs(c)).lower() for c in args.cname]
        addrs = tuple(ipaddress.ip_address(a).packed for a in args.answer_ip)
        ns_names = tuple(names.from_text(_abs(n)).lower() for n in args.ns)
        ns_addrs = tuple(ipaddress.ip_address(a).packed for a in args.ns_ip)
        client = ipaddress.ip_address(args.client).packed if args.client else None
    except (RpzError, ValueError, dns.rdatatype.UnknownRdatatype) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stage_names = [qname, *chain]
    stages = [Stage(n, ns_names=ns_names, ns_addresses=ns_addrs) for n in stage_names]
    stages[-1] = Stage(stage_names[-1], addresses=addrs, ns_names=ns_names, ns_addresses=ns_addrs)
    policy = Policy([PolicyZone(z, ZoneSettings()) for z in zones])
    d = policy.evaluate(client, qtype, stages)
    assert d is not NEED_RESPONSE
    assert not isinstance(d, type(NEED_RESPONSE))
    per_zone = []
    for i, z in enumerate(zones):
        single = Policy([PolicyZone(z, ZoneSettings())]).evaluate(client, qtype, stages)
        per_zone.append((i, z, single))
    if args.json:
        json.dump({"decision": _decision_json(d), "per_zone": [
            {"zone": z.name, "decision": _decision_json(s)} for _, z, s in per_zone]}, sys.stdout, indent=2)
        print()
        return 0
    if d is None:
        print("decision: no policy applies (the truthful answer is returned)")
    else:
        _print_decision(d, len(zones))
    others = [(i, z, s) for i, z, s in per_zone if s is not None and (d is None or i != d.zone_index)]  # type: ignore[union-attr]
    if others:
        print("other zones that match, with lower precedence (section 5.1 stage, then 5.2 zone order):")
        for i, z, s in others:
            print(f"  #{i + 1} {z.name}: {s.action.label} via {s.trigger.label} {s.owner} "  # type: ignore[union-attr]
                  f"(stage {s.position})")  # type: ignore[union-attr]
    return 0


BATCH = 65536  # names decided per call: memory stays bounded, the progress bar moves


def _query_many(args: argparse.Namespace) -> int:
    """``--names-from``: QNAME decisions for every name of a file, a batch at a time."""
    import dns.rdatatype

    from . import names
    from .errors import RpzError
    from .policy import NEED_RESPONSE, Policy, PolicyZone, Stage, ZoneSettings
    from .progress import ProgressBar
    extra = [opt for opt, val in (("--client", args.client), ("--cname", args.cname), ("--answer-ip", args.answer_ip),
                                  ("--ns", args.ns), ("--ns-ip", args.ns_ip)) if val]
    if extra:
        print(f"error: --names-from decides QNAME rules only, without a client or answer data; drop "
              f"{', '.join(extra)} (or ask one name with --qname)", file=sys.stderr)
        return 2
    try:
        zones = [_load(p, args.origin[i] if i < len(args.origin) else None) for i, p in enumerate(args.zones)]
        qtype = int(dns.rdatatype.from_text(args.qtype))
        lines = _read_lines(args.names_from)
    except (RpzError, ValueError, dns.rdatatype.UnknownRdatatype) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    source = "<stdin>" if args.names_from == "-" else args.names_from
    wires: list[bytes] = []
    refused = 0
    for lineno, line in enumerate(lines, 1):
        text = line.split(None, 1)[0] if line.strip() else ""
        if not text or text.startswith("#"):
            continue
        try:
            wires.append(names.from_text(_abs(text)).lower())
        except (RpzError, ValueError) as exc:
            refused += 1
            print(f"{source}:{lineno}: not a domain name {text!r}: {exc}", file=sys.stderr)
    policy = Policy([PolicyZone(z, ZoneSettings()) for z in zones])
    counts: dict[str, int] = {}
    waited = 0
    seconds = 0.0
    bar = ProgressBar("deciding")
    try:
        for start in range(0, len(wires), BATCH):
            chunk = wires[start : start + BATCH]
            t0 = time.perf_counter()
            res = policy.decide_qnames(chunk, qtype)
            seconds += time.perf_counter() - t0
            out = []
            for i, q in enumerate(chunk):
                d = res.decision(i)
                if d is NEED_RESPONSE:  # as --qname decides it: no answer data given
                    waited += 1
                    d = policy.evaluate(None, qtype, [Stage(q)])
                label = "none" if d is None else d.action.label  # type: ignore[union-attr]
                counts[label] = counts.get(label, 0) + 1
                out.append(_line(q, d, args.json))
            out.append("")
            sys.stdout.write("\n".join(out))
            bar(min(start + BATCH, len(wires)), len(wires))
    finally:
        bar.close()
    _print_summary(len(wires), refused, waited, counts, seconds, args.json)
    return 1 if refused else 0


def _read_lines(path: str) -> list[str]:
    from .errors import ZoneReadError
    if path == "-":
        return sys.stdin.read().splitlines()
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()
    except OSError as exc:
        raise ZoneReadError(path, f"cannot read: {exc.strerror}") from exc


def _line(qname: bytes, d: Any, as_json: bool) -> str:
    from . import names
    name = names.to_text(qname)
    if as_json:
        return json.dumps({"name": name, "decision": _decision_json(d)})
    if d is None:
        return f"{name}\tnone\t-\t-\t-"
    return f"{name}\t{d.action.label}\t{d.zone}\t{d.owner}\t{d.order_ref or '-'}"


def _print_summary(total: int, refused: int, waited: int, counts: dict[str, int], seconds: float,
                   as_json: bool) -> None:
    rate = total / seconds if seconds > 0 else 0.0
    if as_json:
        print(json.dumps({"summary": {"names": total, "refused_lines": refused, "by_action": counts,
                                      "decided_without_answer_data": waited, "decide_seconds": round(seconds, 4)}}))
        return
    print(f"# {total:,} names, {refused:,} lines refused: {_fmt_counts(counts)}")
    if waited:
        print(f"# {waited:,} of them an earlier zone's IP/NS rules could still catch: decided as with no "
              "answer data (as --qname does)")
    print(f"# decided in {seconds:.3f} s" + (f" ({rate:,.0f} names/s)" if total >= 10000 else ""))


def _abs(name: str) -> str:
    return name if name.endswith(".") else name + "."


def _decision_json(d: Any) -> dict[str, Any] | None:
    if d is None:
        return None
    from . import names
    return {"action": d.action.label, "zone": d.zone, "serial": d.serial, "trigger": d.trigger.label,
            "matched": d.trigger_value, "rule_owner": d.owner, "stage": d.position,
            "order_ref": d.order_ref, "cname_target": names.to_text(d.cname_target) if d.cname_target else None,
            "records": [{"type": r.rdtype, "ttl": r.ttl, "rdata": r.rdata.hex()} for r in d.records],
            "note": d.note, "disabled": [x.owner for x in d.disabled]}


_WHY = {
    "CLIENT-IP": "the client address is inside the rule's prefix (longest prefix wins)",
    "QNAME": "the asked name matches the rule's owner",
    "IP": "an address in the answer is inside the rule's prefix (longest prefix, then lowest address)",
    "NSDNAME": "a name server in the delegation path matches the rule's owner",
    "NSIP": "a name server address is inside the rule's prefix",
}


def _print_decision(d: Any, nzones: int) -> None:
    from . import names
    print(f"decision: {d.action.label.upper()}")
    print(f"  zone      {d.zone} (#{d.zone_index + 1} of {nzones}), serial {d.serial}")
    wild = " (wildcard: no exact rule, and this is the closest encloser's)" if "*." in d.owner else ""
    print(f"  rule      {d.owner}{wild}")
    print(f"  trigger   {d.trigger.label} matched {d.trigger_value} at stage {d.position} "
          f"({'the QNAME' if d.position == 0 else 'CNAME target #' + str(d.position)})")
    print(f"  why       {_WHY[d.trigger.label]}; no match at an earlier stage or in an earlier zone")
    if d.order_ref:
        print(f"  order     {d.order_ref}")
    if d.cname_target:
        print(f"  answer    CNAME {names.to_text(d.cname_target)}")
    for r in d.records:
        print(f"  record    type {r.rdtype} ttl {r.ttl} rdata {r.rdata.hex()}")
    if d.note:
        print(f"  note      {d.note}")
    for x in d.disabled:
        print(f"  skipped   {x.owner} in {x.zone} (zone override: disabled, logged only)")


def cmd_compile(args: argparse.Namespace) -> int:
    from .errors import RpzError
    from .snapshot import write_snapshot
    try:
        z = _load(args.zone, args.origin)
        write_snapshot(z, args.output)
    except RpzError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return 3
    print(f"{args.output}: {z.name} serial {z.serial}, {z.stats.rules:,} rules, "
          f"{len(z.rejections)} records rejected")
    return 1 if z.rejections else 0
