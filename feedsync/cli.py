"""``hotline-edge feed ...``: the operator's and the hotline's commands for takedown feeds.

Heavy imports (dnspython, python-tuf, cryptography) stay inside the command functions so that
``hotline-edge --help`` starts fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from typing import Any

DEFAULT_CONFIG = "/etc/hotline-edge/config.toml"

HELP_FEED = """\
Signed takedown feeds: RPZ over AXFR/IXFR with TSIG, and TUF-signed bundles over HTTPS. Every
version is verified, screened entry by entry, compiled, activated atomically, audited and receipted;
a refused version leaves the last-known-good serving.

  hotline-edge feed status                       per feed: serial, age, last failure, holds, rejects
  hotline-edge feed sync                         one cycle for every feed (the systemd timer runs this)
  hotline-edge feed daemon                       NOTIFY listener + refresh timers, runs until stopped
  hotline-edge feed approve hotline              apply a version held by the blast-radius guard
  hotline-edge feed publish --repo r --keys k --feed hotline --orders orders.csv   (hotline side)

Exit codes: 0 ok, 1 problems found (refused, held, broken chain), 2 usage or unreadable input,
3 run-time failure (source unreachable, resolver did not load the version).
"""

HELP_STATUS = """\
Show, per feed, the version serving now (serial, age), the last success and failure with its code,
alarms (FEED_STALE, FEED_EXPIRED), versions held for approval and rejected entries.

  hotline-edge feed status
  hotline-edge feed status hotline --json
  hotline-edge feed status --prometheus          the same numbers as Prometheus text

Exit status: 0 every feed is serving and fresh, 1 a feed has an alarm, a hold, or nothing applied yet.
"""

HELP_SYNC = """\
Run one sync cycle per feed (all feeds, or the ones named): check the source, fetch and verify a new
version, screen its entries, and activate it; entries past their own expiry are removed even when
the source is down. Meant for a systemd timer; `feed daemon` does the same continuously.

  hotline-edge feed sync
  hotline-edge feed sync twnic --config /etc/hotline-edge/config.toml

Exit status: 0 applied or unchanged, 1 refused or held, 3 source unreachable or the resolver did
not load the version (the last-known-good was restored).
"""

HELP_APPROVE = """\
Approve a version the blast-radius guard held (it adds or removes more than blast_radius of the
entries), then run a cycle that applies it. The approval is recorded in the audit chain with your
name.

  hotline-edge feed approve hotline
  hotline-edge feed approve hotline --serial 42 --by "A. Operator"
"""

HELP_PUBLISH = """\
The hotline's tool: build a takedown bundle from a CSV or JSON list of orders and publish it as a
signed TUF repository (created on first use). Keys come from files in --keys named by role:
root*.key, targets*.key, snapshot*.key, timestamp*.key (make them with `feed keygen`).

  hotline-edge feed keygen --out keys/ root targets-1 targets-2 snapshot timestamp
  hotline-edge feed publish --repo repo/ --keys keys/ --feed hotline --orders orders.csv \\
      --threshold targets=2
  hotline-edge feed publish --repo repo/ --keys keys/ --timestamp-only     re-sign the timestamp

Serve repo/ over HTTPS; give each node repo/metadata/1.root.json (out of band) as trusted_root.
CSV columns: entry_id, order_ref, issuing_authority, legal_basis, category, target, match,
action, stop_page, issued_at, effective_at, expires_at, appeal_contact, retention_days.
"""


def register(sub: Any) -> None:
    p = sub.add_parser("feed", help="takedown feeds: status, sync, daemon, approve, publish, keygen",
                       description=HELP_FEED, formatter_class=argparse.RawDescriptionHelpFormatter)
    fsub = p.add_subparsers(dest="feed_command", metavar="SUBCOMMAND", required=True)

    def cfg_arg(q: argparse.ArgumentParser) -> None:
        q.add_argument("--config", default=os.environ.get("HOTLINE_EDGE_CONFIG", DEFAULT_CONFIG),
                       help=f"configuration file (default $HOTLINE_EDGE_CONFIG or {DEFAULT_CONFIG})")

    raw = argparse.RawDescriptionHelpFormatter
    s = fsub.add_parser("status", help="serial, age, failures, holds, rejects per feed", description=HELP_STATUS,
                        formatter_class=raw)
    cfg_arg(s)
    s.add_argument("feeds", nargs="*", metavar="FEED")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("--prometheus", action="store_true", help="Prometheus text exposition")
    s.set_defaults(func=cmd_status)

    y = fsub.add_parser("sync", help="one sync cycle per feed", description=HELP_SYNC, formatter_class=raw)
    cfg_arg(y)
    y.add_argument("feeds", nargs="*", metavar="FEED")
    y.set_defaults(func=cmd_sync)

    d = fsub.add_parser("daemon", help="NOTIFY listener and refresh timers",
                        description="Keep every feed fresh: refresh timers (SOA refresh/retry for xfr "
                                    "feeds, `refresh` for bundles), a NOTIFY listener per xfr feed with "
                                    "notify_listen, metrics on --metrics-listen.\n\n"
                                    "  hotline-edge feed daemon --metrics-listen 127.0.0.1:9154",
                        formatter_class=raw)
    cfg_arg(d)
    d.add_argument("--metrics-listen", metavar="ADDR:PORT", help="serve Prometheus metrics here")
    d.set_defaults(func=cmd_daemon)

    a = fsub.add_parser("approve", help="apply a version held by the blast-radius guard", description=HELP_APPROVE,
                        formatter_class=raw)
    cfg_arg(a)
    a.add_argument("feed", metavar="FEED")
    a.add_argument("--serial", type=int, help="the held serial (default: the current hold)")
    a.add_argument("--by", default=os.environ.get("SUDO_USER") or os.environ.get("USER") or "operator",
                   help="who approves (recorded in the audit chain; default: your login)")
    a.add_argument("--no-sync", action="store_true", help="record the approval only; the next cycle applies it")
    a.set_defaults(func=cmd_approve)

    pub = fsub.add_parser("publish", help="build and sign a bundle repository (hotline side)",
                          description=HELP_PUBLISH, formatter_class=raw)
    pub.add_argument("--repo", required=True, metavar="DIR", help="the TUF repository folder")
    pub.add_argument("--keys", required=True, metavar="DIR", help="folder with <role>*.key files")
    pub.add_argument("--feed", metavar="NAME", help="the feed id written into the bundle")
    pub.add_argument("--orders", metavar="FILE", help="CSV or JSON orders")
    pub.add_argument("--threshold", action="append", default=[], metavar="ROLE=N",
                     help="signatures required for a role (first publish only), e.g. targets=2")
    pub.add_argument("--expires-days", action="append", default=[], metavar="ROLE=DAYS",
                     help="metadata lifetime per role (default root=365 targets=90 snapshot=30 timestamp=7)")
    pub.add_argument("--sequence", type=int, help="bundle sequence (default: previous + 1)")
    pub.add_argument("--target", default="takedowns.json", help="target path (default takedowns.json)")
    pub.add_argument("--timestamp-only", action="store_true", help="only re-sign the timestamp")
    pub.add_argument("--bundle-format", type=int, choices=(1, 2), default=2,
                     help="2 (default): one list per field, read several times faster by the nodes; 1: one "
                          "object per entry, for subscribers whose nodes predate format 2")
    pub.set_defaults(func=cmd_publish)

    ro = fsub.add_parser("rotate", help="replace the keys of a role in the repository (hotline side)",
                         description="Write a new root version that trusts the keys in --new-keys for ROLE, "
                                     "signed by the current root keys (and the new ones for a root rotation), "
                                     "then re-sign targets, snapshot and timestamp. Nodes follow the rotation "
                                     "by themselves (TUF root chain).\n\n"
                                     "  hotline-edge feed rotate --repo repo/ --keys keys/ --role targets "
                                     "--new-keys new-keys/ --threshold 2",
                         formatter_class=raw)
    ro.add_argument("--repo", required=True, metavar="DIR")
    ro.add_argument("--keys", required=True, metavar="DIR", help="the current keys (<role>*.key)")
    ro.add_argument("--role", required=True, choices=["root", "targets", "snapshot", "timestamp"])
    ro.add_argument("--new-keys", required=True, metavar="DIR", help="folder with the new <role>*.key files")
    ro.add_argument("--threshold", type=int, default=1, help="signatures required for the role afterwards")
    ro.set_defaults(func=cmd_rotate)

    k = fsub.add_parser("keygen", help="make Ed25519 signing keys (hotline side)",
                        description="Make Ed25519 key pairs NAME.key (mode 0600) and NAME.pub in --out.\n\n"
                                    "  hotline-edge feed keygen --out keys/ root targets-1 snapshot timestamp",
                        formatter_class=raw)
    k.add_argument("--out", required=True, metavar="DIR")
    k.add_argument("names", nargs="+", metavar="NAME")
    k.set_defaults(func=cmd_keygen)

    v = fsub.add_parser("versions", help="the versions kept on disk for a feed",
                        description="List the versions kept for a feed (newest last): name, serial, zone "
                                    "serial, when it was made, whether it is active.\n\n"
                                    "  hotline-edge feed versions hotline",
                        formatter_class=raw)
    cfg_arg(v)
    v.add_argument("feed", metavar="FEED")
    v.set_defaults(func=cmd_versions)

    pn = fsub.add_parser("pin", help="serve a kept version and apply nothing new until unpin",
                         description="Serve a kept version (the current one, or an older one from `feed "
                                     "versions`) and apply no new version until `feed unpin`; new versions "
                                     "are still fetched and verified, and entries still leave at their "
                                     "expiry. Audited with your name and receipted.\n\n"
                                     "  hotline-edge feed pin hotline 1795000000-41-0f02543a7cd1 --by 'A. Operator'\n"
                                     "  hotline-edge feed unpin hotline",
                         formatter_class=raw)
    cfg_arg(pn)
    pn.add_argument("feed", metavar="FEED")
    pn.add_argument("version", metavar="VERSION", help="a name from `feed versions`")
    pn.add_argument("--by", default=os.environ.get("SUDO_USER") or os.environ.get("USER") or "operator")
    pn.set_defaults(func=cmd_pin)

    up = fsub.add_parser("unpin", help="end a pin and run a cycle",
                         description="End a pin: the next cycle applies the newest verified version.\n\n"
                                     "  hotline-edge feed unpin hotline",
                         formatter_class=raw)
    cfg_arg(up)
    up.add_argument("feed", metavar="FEED")
    up.add_argument("--by", default=os.environ.get("SUDO_USER") or os.environ.get("USER") or "operator")
    up.add_argument("--no-sync", action="store_true", help="end the pin only; the next cycle applies")
    up.set_defaults(func=cmd_unpin)

    r = fsub.add_parser("receipts", help="signed apply receipts of this node",
                        description="List the Ed25519-signed apply receipts (for the hotline).\n\n"
                                    "  hotline-edge feed receipts --feed hotline --since 2026-11-01T00:00:00Z",
                        formatter_class=raw)
    cfg_arg(r)
    r.add_argument("--feed")
    r.add_argument("--since", metavar="ISO8601")
    r.set_defaults(func=cmd_receipts)

    au = fsub.add_parser("audit", help="show or verify the feed audit chain",
                         description="Show the hash-chained feed audit records, newest first, or verify the "
                                     "whole chain.\n\n  hotline-edge feed audit --verify\n"
                                     "  hotline-edge feed audit --feed hotline --limit 20",
                         formatter_class=raw)
    cfg_arg(au)
    au.add_argument("--feed")
    au.add_argument("--limit", type=int, default=20)
    au.add_argument("--verify", action="store_true", help="verify every link; exit 1 when broken")
    au.set_defaults(func=cmd_audit)


# --- helpers -------------------------------------------------------------------------------------

def _load(args: argparse.Namespace) -> Any:
    from .config import load
    from .errors import FeedConfigError
    try:
        return load(args.config)
    except FeedConfigError as exc:
        for e in exc.errors:
            print(e, file=sys.stderr)
        raise SystemExit(2) from exc


def db_path(cfg: Any) -> str:
    return os.path.join(cfg.node.state_dir, "feeds", "feedsync.db")


def _open_db(cfg: Any) -> Any:
    from .statedb import StateDB
    return StateDB(db_path(cfg))


def _select(cfg: Any, names: list[str]) -> list[Any]:
    from .errors import FeedConfigError
    if not names:
        return list(cfg.feeds)
    try:
        return [cfg.feed(n) for n in names]
    except FeedConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from exc


def _ago(t: float | None, now: float) -> str:
    if t is None:
        return "never"
    s = int(now - t)
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return f"{s // n}{unit} ago"
    return f"{s}s ago"


def status_doc(cfg: Any, db: Any, feeds: list[Any], now: float) -> list[dict[str, Any]]:
    out = []
    for f in feeds:
        st = db.state(f.name)
        holds = [{"serial": h.serial, "digest": h.digest, "held_at": h.held_at, "added": h.added,
                  "removed": h.removed, "share": round(h.share, 4)} for h in db.holds(f.name, "held")]
        out.append({
            "feed": f.name, "type": f.type, "zone": f.zone, "serial": st.serial, "zone_serial": st.zone_serial,
            "digest": st.digest, "version": st.version, "applied_at": st.applied_at,
            "age_s": None if st.last_success_at is None else round(now - st.last_success_at, 1),
            "last_success_at": st.last_success_at, "last_failure_at": st.last_failure_at,
            "last_failure_code": st.last_failure_code, "last_failure_detail": st.last_failure_detail,
            "alarm": st.alarm, "entries": st.entries, "in_force": st.in_force, "holds": holds,
            "pinned_by": st.pinned_by, "pinned_at": st.pinned_at,
            "rejected": st.rejected_list,
        })
    return out


# --- commands ------------------------------------------------------------------------------------

def cmd_status(args: argparse.Namespace) -> int:
    cfg = _load(args)
    feeds = _select(cfg, args.feeds)
    if args.prometheus:
        from .metrics import exposition
        sys.stdout.write(exposition(cfg, db_path(cfg)).decode())
        return 0
    db = _open_db(cfg)
    now = time.time()
    doc = status_doc(cfg, db, feeds, now)
    bad = any(d["alarm"] or d["holds"] or d["serial"] is None for d in doc)
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 1 if bad else 0
    for d in doc:
        print(f"{d['feed']} ({d['type']}, zone {d['zone']})")
        if d["serial"] is None:
            print("  serving: nothing applied yet")
        else:
            print(f"  serving: serial {d['serial']} (zone serial {d['zone_serial']}), applied "
                  f"{_ago(d['applied_at'], now)}, {d['in_force']} of {d['entries']} entries in force")
        print(f"  last success: {_ago(d['last_success_at'], now)}")
        if d["last_failure_code"]:
            print(f"  last failure: {d['last_failure_code']} {_ago(d['last_failure_at'], now)}: "
                  f"{d['last_failure_detail']}")
        if d["alarm"]:
            print(f"  ALARM: {d['alarm']}")
        if d["pinned_by"]:
            print(f"  PINNED to {d['version']} by {d['pinned_by']} {_ago(d['pinned_at'], now)}; "
                  f"`hotline-edge feed unpin {d['feed']}` lets new versions in")
        for h in d["holds"]:
            print(f"  HELD: serial {h['serial']} adds {h['added']}, removes {h['removed']} "
                  f"({h['share']:.0%}); approve with `hotline-edge feed approve {d['feed']}`")
        if d["rejected"]:
            print(f"  rejected entries: {len(d['rejected'])}")
            for r in d["rejected"][:10]:
                print(f"    {r['entry_id']}: {r['reason']}: {r['detail']}")
            if len(d["rejected"]) > 10:
                print(f"    ... {len(d['rejected']) - 10} more (--json lists all)")
    return 1 if bad else 0


def _syncer(cfg: Any, db: Any, f: Any, bar: Any = None) -> Any:
    from .control import ControlClient
    from .sync import FeedSync
    return FeedSync(cfg, f, db, ControlClient(cfg.control_socket), progress=bar)


def _write_textfile(cfg: Any) -> None:
    from .metrics import exposition
    from .store import atomic_write
    with contextlib.suppress(OSError):
        atomic_write(os.path.join(cfg.node.state_dir, "feeds", "feedsync.prom"), exposition(cfg, db_path(cfg)))


def cmd_sync(args: argparse.Namespace) -> int:
    cfg = _load(args)
    feeds = _select(cfg, args.feeds)
    db = _open_db(cfg)
    worst = 0
    from rpz.progress import ProgressBar
    for f in feeds:
        bar = ProgressBar(f"{f.name}: zone transfer (bytes)")   # drawn only on a terminal
        res = _syncer(cfg, db, f, bar).cycle()
        bar.close()
        line = f"{f.name}: {res.outcome}" + (f" serial {res.serial}" if res.serial is not None else "")
        if res.code:
            line += f" [{res.code}] {res.detail}"
        print(line)
        worst = max(worst, res.exit_code)
    _write_textfile(cfg)
    return worst


def cmd_daemon(args: argparse.Namespace) -> int:
    cfg = _load(args)
    from .daemon import run
    return run(cfg, db_path(cfg), args.metrics_listen)


def cmd_approve(args: argparse.Namespace) -> int:
    cfg = _load(args)
    f = _select(cfg, [args.feed])[0]
    db = _open_db(cfg)
    h = db.approve(f.name, args.serial, args.by, time.time())
    if h is None:
        what = f"serial {args.serial} is not held" if args.serial is not None else "no version is held"
        print(f"{f.name}: {what}; `hotline-edge feed status {f.name}` shows holds", file=sys.stderr)
        return 1
    print(f"{f.name}: serial {h.serial} approved by {h.approved_by}")
    if args.no_sync:
        return 0
    res = _syncer(cfg, db, f).cycle()
    print(f"{f.name}: {res.outcome}" + (f" serial {res.serial}" if res.serial is not None else "")
          + (f" [{res.code}] {res.detail}" if res.code else ""))
    _write_textfile(cfg)
    return int(res.exit_code)


def _pairs(items: list[str], what: str) -> dict[str, float]:
    out = {}
    for it in items:
        role, _, val = it.partition("=")
        try:
            out[role.strip()] = float(val)
        except ValueError:
            print(f"{what}: expected ROLE=NUMBER, got {it!r}", file=sys.stderr)
            raise SystemExit(2) from None
    return out


def cmd_publish(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from .errors import BundleFormatError, PublishError
    from .publish import Repository, publish_orders, signers_from_dir
    thresholds = {k: int(v) for k, v in _pairs(args.threshold, "--threshold").items()}
    days = _pairs(args.expires_days, "--expires-days")
    try:
        if args.timestamp_only:
            Repository(args.repo).timestamp(None, signers_from_dir(args.keys), datetime.now(UTC), days)
            print(f"{args.repo}: timestamp re-signed")
            return 0
        if not args.feed or not args.orders:
            print("publish needs --feed and --orders (or --timestamp-only)", file=sys.stderr)
            return 2
        with open(args.orders, "rb") as fh:
            data = fh.read()
        seq, version, n = publish_orders(args.repo, args.keys, args.feed, data, args.orders,
                                         thresholds=thresholds, sequence=args.sequence, target_name=args.target,
                                         expiry_days=days, columns=args.bundle_format == 2)
    except OSError as exc:
        print(f"{exc.filename or args.orders}: {exc.strerror}", file=sys.stderr)
        return 2
    except (BundleFormatError, PublishError) as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{args.repo}: published {args.feed} sequence {seq} ({n} entries) as targets version {version}")
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from .errors import PublishError
    from .publish import Repository, signers_from_dir
    try:
        old = signers_from_dir(args.keys)
        new = signers_from_dir(args.new_keys)[args.role]
        if not new:
            print(f"{args.new_keys}: no {args.role}*.key file", file=sys.stderr)
            return 2
        repo = Repository(args.repo)
        now = datetime.now(UTC)
        version = repo.rotate(args.role, new, args.threshold, old_root_signers=old["root"],
                              new_root_signers=new if args.role == "root" else None, now=now)
        signers = {**old, args.role: new}
        targets = repo.resign(signers, now)
    except PublishError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{args.repo}: root version {version} trusts {len(new)} new {args.role} key(s) "
          f"(threshold {args.threshold}); targets re-signed as version {targets}")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from .errors import PublishError
    from .publish import keygen
    for name in args.names:
        try:
            key, pub = keygen(args.out, name)
        except PublishError as exc:
            print(exc, file=sys.stderr)
            return 2
        print(f"{key} (private, keep offline for root) {pub}")
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    from .store import FeedStore
    cfg = _load(args)
    f = _select(cfg, [args.feed])[0]
    db = _open_db(cfg)
    store = FeedStore(cfg.feed_dir(f.name))
    st = db.state(f.name)
    for name in store.names():
        info = store.info(name)
        mark = " ACTIVE" if name == st.version else ""
        if name == st.version and st.pinned_by:
            mark += f" (pinned by {st.pinned_by})"
        from .bundle import format_time
        print(f"{name}  serial {info.serial}  zone serial {info.zone_serial}  made {format_time(info.created_at)}"
              f"{mark}")
    return 0


def cmd_pin(args: argparse.Namespace) -> int:
    cfg = _load(args)
    f = _select(cfg, [args.feed])[0]
    res = _syncer(cfg, _open_db(cfg), f).pin(args.version, args.by)
    if res.outcome != "pinned":
        print(f"{f.name}: not pinned: [{res.code}] {res.detail}", file=sys.stderr)
        return 2 if res.code == "FEED_NO_SUCH_VERSION" else 3
    print(f"{f.name}: pinned to {args.version} (serial {res.serial}) by {args.by}")
    return 0


def cmd_unpin(args: argparse.Namespace) -> int:
    cfg = _load(args)
    f = _select(cfg, [args.feed])[0]
    db = _open_db(cfg)
    sync = _syncer(cfg, db, f)
    if not sync.unpin(args.by):
        print(f"{f.name}: not pinned", file=sys.stderr)
        return 1
    print(f"{f.name}: unpinned by {args.by}")
    if args.no_sync:
        return 0
    res = sync.cycle()
    print(f"{f.name}: {res.outcome}" + (f" serial {res.serial}" if res.serial is not None else "")
          + (f" [{res.code}] {res.detail}" if res.code else ""))
    _write_textfile(cfg)
    return int(res.exit_code)


def cmd_receipts(args: argparse.Namespace) -> int:
    cfg = _load(args)
    db = _open_db(cfg)
    since = None
    if args.since:
        from .bundle import parse_time
        try:
            since = parse_time(args.since)
        except ValueError as exc:
            print(f"--since: {exc}", file=sys.stderr)
            return 2
    rows = db.receipts(args.feed, since)
    print(json.dumps([{k: r[k] for k in ("feed", "serial", "applied_at", "receipt", "body", "signature", "key_id",
                                         "pushed_at")} for r in rows], indent=2))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    cfg = _load(args)
    db = _open_db(cfg)
    if args.verify:
        check = db.verify_audit()
        print(check)
        return 0 if check.ok else 1
    for rec in db.audit(args.feed, args.limit):
        print(json.dumps({"id": rec.id, **rec.record}, sort_keys=True))
    return 0
