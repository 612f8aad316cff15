"""``hotline-edge log verify | export | status | holds`` and ``hotline-edge retention purge``."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

HELP_VERIFY = """\
Recompute the hash chain of the blocked-lookup log and report the first broken link: every record's
link from its own columns, across the runs that retention purges removed (each anchored by the
link its purge recorded), up to the chain head committed with the last batch; then the log's audit
chain (purges, legal holds, exports, queue drops).

  hotline-edge log verify --config /etc/hotline-edge/config.toml
  hotline-edge log verify --database /var/lib/hotline-edge/blocklog.sqlite --json

Publish the printed head now and then (the chain shows changes, deletions and reordering; only an
outside copy of the head shows that the whole log was replaced). Exit status: 0 intact, 1 broken,
2 unreadable configuration or no log, 3 database failure.
"""

HELP_EXPORT = """\
Write the records of one order (and/or one QNAME) inside a time window as JSON lines, for
authorised use. Client addresses stay sealed (base64) unless the compliance private key is given;
the export is an event on the log's audit chain either way.

  hotline-edge log export --order TW-2026-0042 --from 2026-03-01 --to 2026-03-31T23:59:59Z
  hotline-edge log export --order TW-2026-0042 --from 2026-03-01 --to 2026-03-02 --out tw42.jsonl
  hotline-edge log export --qname csam-site.test --from 2026-03-01 --to 2026-03-02 \\
      --key /secure/compliance-x25519.key         (opens the addresses: compliance only)

Times are ISO 8601 with a zone, or a date (00:00 UTC). Exit status: 0 written, 2 bad arguments,
unreadable configuration or key, 3 database failure.
"""

HELP_STATUS = """\
Counts of the blocked-lookup log (records, batches, purged, holds), its chain head and the last
events of its audit chain; with --order, the hits per day of one order (no personal data).

  hotline-edge log status --config /etc/hotline-edge/config.toml
  hotline-edge log status --order TW-2026-0042 --json
"""

HELP_HOLDS = """\
List the legal holds (created by compliance through the admin API: POST /blocklog/holds).

  hotline-edge log holds            every hold      hotline-edge log holds --active
"""

HELP_PURGE = """\
Delete blocked-lookup records older than [blocklog] retention_days (default 180; per feed:
[blocklog] feed_retention_days) unless a legal hold covers them (its order_ref and/or window,
until its end date). The rest of the chain stays verifiable: each purged run leaves its last link.
Every purge is an event on the log's audit chain. Run daily by hotline-edge-retention-purge.timer.

  hotline-edge retention purge --config /etc/hotline-edge/config.toml
  hotline-edge retention purge --dry-run            count what would go, delete nothing

Exit status: 0 done, 2 unreadable configuration, 3 database failure.
"""


def _fmt(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE",
                   help="configuration file (default: $HOTLINE_EDGE_CONFIG or /etc/hotline-edge/config.toml)")
    p.add_argument("--database", metavar="PATH", help="the log database (default: [blocklog] path)")


def register(sub: Any) -> None:
    lg = sub.add_parser("log", help="blocked-lookup log: verify, export, status, holds",
                        description="The blocked-lookup log (docs/blocklog.md).")
    lsub = lg.add_subparsers(dest="log_command", metavar="SUBCOMMAND", required=True)
    v = lsub.add_parser("verify", help="verify the log's hash chains", description=HELP_VERIFY)
    _fmt(v)
    _common(v)
    v.add_argument("--json", action="store_true", help="machine-readable result")
    v.set_defaults(func=cmd_verify)

    e = lsub.add_parser("export", help="records of an order as JSON lines", description=HELP_EXPORT)
    _fmt(e)
    _common(e)
    e.add_argument("--order", metavar="REF", help="order reference")
    e.add_argument("--qname", metavar="NAME", help="the name looked up")
    e.add_argument("--from", dest="start", required=True, metavar="TIME", help="window start")
    e.add_argument("--to", dest="end", required=True, metavar="TIME", help="window end")
    e.add_argument("--key", metavar="FILE", help="compliance X25519 private key: open the client addresses")
    e.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    e.set_defaults(func=cmd_export)

    s = lsub.add_parser("status", help="counts, chain head, last events", description=HELP_STATUS)
    _fmt(s)
    _common(s)
    s.add_argument("--order", metavar="REF", help="hits per day of this order")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    h = lsub.add_parser("holds", help="list legal holds", description=HELP_HOLDS)
    _fmt(h)
    _common(h)
    h.add_argument("--active", action="store_true", help="only holds in force now")
    h.add_argument("--json", action="store_true")
    h.set_defaults(func=cmd_holds)

    rt = sub.add_parser("retention", help="retention of the blocked-lookup log: purge",
                        description="Retention of the blocked-lookup log.")
    rsub = rt.add_subparsers(dest="retention_command", metavar="SUBCOMMAND", required=True)
    p = rsub.add_parser("purge", help="delete records past retention (legal holds respected)",
                        description=HELP_PURGE)
    _fmt(p)
    _common(p)
    p.add_argument("--dry-run", action="store_true", help="count only")
    p.set_defaults(func=cmd_purge)


# -- configuration ---------------------------------------------------------------------------------

class Usage(Exception):
    """A problem with the arguments or the configuration (exit 2)."""


def _doc(args: argparse.Namespace) -> Any:
    from rpz.tomlconf import ConfigDoc, ConfigError, load_config
    path = args.config or os.environ.get("HOTLINE_EDGE_CONFIG")
    if path is None and os.path.exists("/etc/hotline-edge/config.toml"):
        path = "/etc/hotline-edge/config.toml"
    if path is None:
        return ConfigDoc("<defaults>", {"blocklog": {}})
    try:
        return load_config(path)
    except ConfigError as exc:
        raise Usage(str(exc)) from exc


def load(args: argparse.Namespace) -> tuple[Any, Any]:
    """(BlocklogConfig, ConfigDoc) with --database applied. Usage on any configuration error."""
    import dataclasses

    from rpz.tomlconf import ConfigErrors

    from .blocklog_config import load_blocklog
    doc = _doc(args)
    cfg = load_blocklog(doc)
    if doc.errors:
        raise Usage(str(ConfigErrors(doc.errors)))
    if getattr(args, "database", None):
        cfg = dataclasses.replace(cfg, path=args.database)
    return cfg, doc


def zone_feeds(doc: Any) -> dict[str, str]:
    """Policy-zone label (as hit records carry it) -> the feed it comes from, from [[policy.zone]]
    (``feed``, ``name``) and [[feed]] (``name``, ``zone``)."""
    policy = doc.data.get("policy", {})
    zones = policy.get("zone", []) if isinstance(policy, dict) else []
    feeds = doc.data.get("feed", [])
    origin = {f.get("name"): str(f.get("zone", "")) for f in feeds if isinstance(f, dict)} \
        if isinstance(feeds, list) else {}
    out = {}
    for z in zones if isinstance(zones, list) else []:
        if not isinstance(z, dict) or not isinstance(z.get("feed"), str):
            continue
        label = str(z.get("name") or origin.get(z["feed"]) or "")
        if label:
            out[label.lower().rstrip(".") + "."] = z["feed"]
    return out


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid{os.getuid()}"


def parse_time(text: str, what: str) -> int:
    """Epoch ms of an ISO 8601 time with a zone, or of a date (00:00 UTC)."""
    try:
        if len(text) == 10:
            return int(datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp() * 1000)
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Usage(f"{what} {text!r}: expected ISO 8601 (2026-03-01T10:00:00+08:00) or a date (2026-03-01)") \
            from None
    if t.tzinfo is None:
        raise Usage(f"{what} {text!r}: give the time zone (Z or +08:00); a bare time is ambiguous")
    return int(t.timestamp() * 1000)


def iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def _run(func: Any, args: argparse.Namespace) -> int:
    from .errors import BlocklogError
    try:
        return int(func(args))
    except Usage as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BlocklogError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if "no blocked-lookup log here" in str(exc) else 3


def _store(cfg: Any, readonly: bool = False) -> Any:
    from .blocklog import BlocklogStore
    return BlocklogStore(cfg.path, cfg.node, readonly=readonly)


# -- commands --------------------------------------------------------------------------------------

def cmd_verify(args: argparse.Namespace) -> int:
    return _run(_verify, args)


def _verify(args: argparse.Namespace) -> int:
    from rpz.progress import ProgressBar
    cfg, _ = load(args)
    store = _store(cfg, readonly=True)
    bar = ProgressBar("verifying")
    try:
        report = store.verify(bar)
    finally:
        bar.close()
        store.close()
    if args.json:
        print(json.dumps({"ok": report.ok, "records": report.records, "gaps": report.gaps,
                          "head_seq": report.head_seq, "head": report.head.hex(), "first_bad": report.first_bad,
                          "reason": report.reason, "audit": {"ok": report.audit.ok, "checked": report.audit.checked,
                                                             "first_bad": report.audit.first_bad}}))
    else:
        print(str(report) + (f"\nhead {report.head_seq} {report.head.hex()}" if report.ok else ""))
    return 0 if report.ok else 1


def cmd_export(args: argparse.Namespace) -> int:
    return _run(_export, args)


def _export(args: argparse.Namespace) -> int:
    import base64

    import dns.rdatatype

    from rpz.progress import ProgressBar

    from .blocklog_seal import open_client
    if not args.order and not args.qname:
        raise Usage("give --order REF and/or --qname NAME")
    start, end = parse_time(args.start, "--from"), parse_time(args.end, "--to")
    if end < start:
        raise Usage("--to is before --from")
    key = _private_key(args.key) if args.key else None
    cfg, _ = load(args)
    store = _store(cfg)
    out: TextIO = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
    n = 0
    bar = ProgressBar("exporting")
    try:
        for r in store.records(order_ref=args.order, qname=args.qname, start_ms=start, end_ms=end):
            rec: dict[str, Any] = {
                "seq": r.seq, "time": iso(r.time_ms), "time_ms": r.time_ms, "node": r.node, "qname": r.qname,
                "qtype": dns.rdatatype.to_text(r.qtype), "zone": r.zone, "serial": r.serial, "trigger": r.trigger,
                "rule_owner": r.rule_owner, "action": r.action, "order_ref": r.order_ref, "transport": r.transport}
            if r.sealed_client is None:
                rec["client"] = None
            elif key is None:
                rec["client"] = {"sealed": base64.b64encode(r.sealed_client).decode("ascii")}
            else:
                ip, port = open_client(key, r.sealed_client)
                rec["client"] = {"ip": ip, "port": port}
            out.write(json.dumps(rec, sort_keys=True) + "\n")
            n += 1
            if n % 10_000 == 0:
                bar(n, n)
        store.append_audit("export", int(time.time() * 1000), {
            "by": actor(), "order_ref": args.order, "qname": args.qname, "from_ms": start, "to_ms": end,
            "records": n, "opened": key is not None, "out": args.out or "-"})
    finally:
        bar.close()
        store.close()
        if out is not sys.stdout:
            out.close()
    print(f"exported {n} records" + (" (client addresses opened)" if key is not None else ""), file=sys.stderr)
    return 0


def _private_key(path: str) -> Any:
    import base64
    import binascii

    from nacl.public import PrivateKey
    try:
        with open(path, encoding="ascii") as f:
            raw = base64.b64decode(f.read().strip(), validate=True)
        return PrivateKey(raw)
    except (OSError, UnicodeDecodeError, binascii.Error, ValueError, TypeError) as exc:
        raise Usage(f"{path}: not a compliance private key (base64 of 32 bytes): {exc}") from exc


def cmd_status(args: argparse.Namespace) -> int:
    return _run(_status, args)


def _status(args: argparse.Namespace) -> int:
    cfg, _ = load(args)
    store = _store(cfg, readonly=True)
    try:
        seq, head = store.head()
        doc: dict[str, Any] = {"path": cfg.path, "node": cfg.node, **store.counts(), "head_seq": seq,
                               "head": head.hex(), "events": store.audit(10)}
        if args.order:
            doc["order"] = {"order_ref": args.order, "days": store.daily(args.order)}
    finally:
        store.close()
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"{cfg.path}: {doc['records']} records in {doc['batches']} batches, {doc['purged']} purged, "
          f"{doc['holds']} legal holds; head {seq} {head.hex()[:16]}")
    for ev in doc["events"]:
        print(f"  {iso(ev['at_ms'])}  {ev['kind']:<14} " + json.dumps(
            {k: v for k, v in ev.items() if k not in ("id", "kind", "at_ms", "node")}, sort_keys=True)[:150])
    for d in doc.get("order", {}).get("days", []):
        print(f"  {d['day']}  {d['node']}  {d['zone']}  {d['action']}: {d['hits']} hits, last {iso(d['last_ms'])}")
    return 0


def cmd_holds(args: argparse.Namespace) -> int:
    return _run(_holds, args)


def _holds(args: argparse.Namespace) -> int:
    cfg, _ = load(args)
    store = _store(cfg, readonly=True)
    try:
        holds = store.holds(active_at_ms=int(time.time() * 1000) if args.active else None)
    finally:
        store.close()
    if args.json:
        print(json.dumps([h.to_json() for h in holds], indent=2))
        return 0
    for h in holds:
        scope = " ".join(x for x in (f"order {h.order_ref}" if h.order_ref else "",
                                     f"{iso(h.start_ms)}..{iso(h.end_ms)}" if h.start_ms is not None
                                     and h.end_ms is not None else "") if x)
        state = f"released by {h.released_by}" if h.released_ms is not None else f"until {iso(h.until_ms)}"
        print(f"{h.id:>5}  {scope}  {state}  ({h.reason}; by {h.created_by})")
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    return _run(_purge, args)


def _purge(args: argparse.Namespace) -> int:
    from rpz.progress import ProgressBar
    cfg, doc = load(args)
    if not os.path.exists(cfg.path):
        print(f"{cfg.path}: no blocked-lookup log yet; nothing to purge")
        return 0
    feeds = zone_feeds(doc)

    def days(zone: str) -> int:
        return int(cfg.retention_for_feed(feeds.get(zone.lower().rstrip(".") + ".")))

    now_ms = int(time.time() * 1000)
    if args.dry_run:
        return _dry_run(cfg, days, now_ms)
    store = _store(cfg)
    bar = ProgressBar("purging")
    try:
        report = store.purge(now_ms=now_ms, retention_days=days, actor=actor(), progress=bar)
    finally:
        bar.close()
        store.close()
    print(f"purged {report.deleted} records ({report.runs} runs, {report.batches_deleted} batches with their "
          f"sealed keys); {report.kept_by_holds} kept by legal holds {list(report.holds)}; retention days "
          + ", ".join(f"{z} {d}" for z, d in report.cutoffs.items()))
    return 0


def _dry_run(cfg: Any, days: Any, now_ms: int) -> int:
    store = _store(cfg, readonly=True)
    try:
        holds = store.holds(active_at_ms=now_ms)
        due = kept = 0
        for r in store.records(end_ms=now_ms):
            if r.time_ms >= now_ms - days(r.zone) * 86_400_000:
                continue
            if any(h.covers(r.order_ref, r.time_ms) for h in holds):
                kept += 1
            else:
                due += 1
    finally:
        store.close()
    print(f"would purge {due} records; {kept} kept by legal holds (dry run: nothing deleted)")
    return 0
