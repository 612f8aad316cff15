"""``hotline-edge api | subscribers | audit``: the admin API's commands.

Heavy imports (FastAPI, uvicorn, argon2, the store) stay inside the command functions so the CLI
starts fast. Exit codes: 0 ok, 1 problems found, 2 usage or unreadable input, 3 run-time failure.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import hashlib
import json
import os
import re
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

DEFAULT_CONFIG = "/etc/hotline-edge/config.toml"

HELP_SERVE = """\
Run the admin API (FastAPI under uvicorn): the warrant-checked disclosure workflow, the audit
chain and transparency statistics. Every route but /healthz needs a bearer token.

  hotline-edge api serve --config /etc/hotline-edge/config.toml
  hotline-edge api serve --listen 127.0.0.1:8080 --database /tmp/compliance.sqlite

  curl -s http://127.0.0.1:8080/healthz
  curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/whoami

Keep it on loopback (the default) and put a TLS reverse proxy in front for remote staff.
Exit status: 2 bad configuration or keys, 3 cannot bind or open the database.
"""

HELP_ISSUE = """\
Issue, list and revoke API tokens. A token has one role and an expiry; only its argon2id hash is
stored. The token is printed once, on stdout. For a fleet, make tokens offline and provision them
by id and hash (the Ansible role's hotline_edge_api_tokens does this from a vault).

  hotline-edge api token issue --role officer --subject "Chan Tai Man" --ttl 8h
  hotline-edge api token issue --role auditor --subject audit-team --ttl 30d --note "Q3 review"
  hotline-edge api token list
  hotline-edge api token revoke 3f9a0c1d2e4b5a67
  hotline-edge api token make --role hotline --subject analyst@hotline.test --ttl 90d
  hotline-edge api token provision /etc/hotline-edge/api-tokens.json

Roles: officer (intake, verification, scoping, execution), approver (approves or rejects; never
for a case they prepared), hotline, operator (session imports, metrics), auditor (audit, stats).
"""

HELP_KEYGEN = """\
Create the two key pairs the admin API uses, in DIR (private keys mode 0600):

  package-ed25519.pem / .pub.pem    signs every disclosure package ([api] signing_key)
  compliance-x25519.key / .pub      opens sealed blocked-lookup addresses ([api] compliance_private_key);
                                    the .pub line goes to the resolvers ([blocklog] compliance_public_key)

  hotline-edge api keygen --out /etc/hotline-edge/keys
"""

HELP_IMPORT = """\
Import subscriber sessions so disclosure cases can resolve an address (+port) at an instant:
RADIUS accounting (Start/Stop with Framed-IP-Address), DHCP leases, CGNAT port-block logs, and
subscriber accounts. CSV with a header row, or JSON (array, or one object per line). Rows are
validated one by one; bad rows are reported as FILE:LINE: reason and the rest are imported.
Re-importing the same file changes nothing (idempotent).

  hotline-edge subscribers import radius-2026-03-01.csv
  hotline-edge subscribers import cgnat-blocks.jsonl --kind cgnat
  hotline-edge subscribers import leases.csv --kind dhcp --dry-run

Exit status: 0 all rows imported, 1 some rows rejected (the rest imported), 2 unreadable file or
configuration, 3 the database failed.
"""

HELP_PURGE = """\
Delete subscriber session records and CGNAT port blocks that ended more than
[api] session_retention_days ago, except those a preservation hold covers (a hold placed on a
disclosure case while the records were still retained, until the hold's end). Run it daily (a
systemd timer). The counts go to stdout and to the audit log.

  hotline-edge subscribers purge --config /etc/hotline-edge/config.toml

Exit status: 0 done, 2 unreadable configuration, 3 database failure.
"""

HELP_HOTLINE_STATUS = """\
Is an order enforced on this node? The rules carrying it in the policy the resolver loads (zone,
serial, feed, name, action), since when (the first applied feed version that held it: serial and
time), the span in force now, hits per day and the last hit. No personal data. The same as
GET /hotline/orders/{order_ref}.

  hotline-edge hotline status TW-2026-0042
  hotline-edge hotline status TW-2026-0042 --json --config /etc/hotline-edge/config.toml

Exit status: 0 in force here, 1 not in force (or unknown here), 2 unreadable configuration,
3 the node's policy or state cannot be read.
"""

HELP_HOTLINE_PROBE = """\
Ask this node's resolver for the order's target (a real DNS query over UDP with EDNS to its first
listen address) and compare with what the policy promises: rcode, Extended DNS Error, answer. A
wildcard-only order is asked as hotline-probe.<name>. The probe is itself a lookup of a blocked
name, so it is logged (from the node's own address) and counted in the hits. The same as
POST /hotline/orders/{order_ref}/probe.

  hotline-edge hotline probe TW-2026-0042
  hotline-edge hotline probe TW-2026-0042 --json

Verdicts: ENFORCED, NOT_ENFORCED, NO_ANSWER, NOT_SERVING, NOT_ACTIVE. Exit status: 0 ENFORCED,
1 any other verdict or an unknown order, 2 unreadable configuration, 3 the node's policy or state
cannot be read.
"""

HELP_AUDIT = """\
Recompute the compliance audit hash chain and report the first broken link, if any.

  hotline-edge audit verify --config /etc/hotline-edge/config.toml
  hotline-edge audit verify --database /var/lib/hotline-edge/compliance.sqlite --json

Publish the printed head (e.g. in the transparency report) so a truncated or rebuilt chain is
detectable too. Exit status: 0 intact, 1 broken, 2 unreadable configuration, 3 database failure.
"""


HELP_DEMO = """\
Run the whole appliance on loopback with synthetic demo data, needing nothing from the internet:

  hotline side  signing keys and a signed takedown bundle of three orders (feed publish), served
                from a TUF repository over HTTP on 127.0.0.1
  node side     feed sync (verify, activate, receipt), the resolver on 127.0.0.1:5353 enforcing the
                signed feed and a local zone, blocked lookups in a SQLite log with client addresses
                sealed to the compliance key, feed daemon, the admin API on 127.0.0.1:8080 and a
                hotline token to try it with
  upstream      a tiny built-in server for the demo names on 127.0.0.1:5354

It prints `dig` and `curl` lines to try, each with what the node answered just now. Ctrl-C stops
everything. Each component is the same command an operator runs (serve, feed daemon, api serve)
with the configuration written to the working folder.

  hotline-edge demo
  hotline-edge demo --port 5355 --upstream-port 5356 --api-port 8081
  hotline-edge demo --dir /tmp/hotline-edge-demo       (keep the folder: config, keys, logs)

Exit status: 0 after a clean stop, 2 for bad options (a port out of range, the same port twice,
a --dir that is not empty), 3 when a port is in use or a component did not start (the last lines
of its log are printed).
"""


def register(sub: Any) -> None:
    api = sub.add_parser("api", help="admin API: serve, tokens, keys",
                         description="The admin API and its credentials.")
    asub = api.add_subparsers(dest="api_command", metavar="SUBCOMMAND", required=True)

    s = asub.add_parser("serve", help="run the admin API", description=HELP_SERVE,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(s)
    s.add_argument("--listen", metavar="HOST:PORT", help="override [api] listen (default 127.0.0.1:8080)")
    s.set_defaults(func=cmd_serve)

    t = asub.add_parser("token", help="issue, list, revoke, make and provision API tokens", description=HELP_ISSUE,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    tsub = t.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    raw = argparse.RawDescriptionHelpFormatter
    ti = tsub.add_parser("issue", help="issue a token (printed once)", formatter_class=raw, description="""\
Issue a token of one role for one subject. The token is printed once on stdout (only its argon2id
hash is stored); its id, role and expiry go to stderr. The lifetime is capped by
[api] token_max_ttl_days.

  hotline-edge api token issue --role officer --subject "Chan Tai Man" --ttl 8h
  TOKEN=$(hotline-edge api token issue --role hotline --subject analyst@hotline.test --ttl 30d)
""")
    _common(ti)
    ti.add_argument("--role", required=True, choices=["officer", "approver", "hotline", "operator", "auditor"])
    ti.add_argument("--subject", required=True, help="the person or system that will use it")
    ti.add_argument("--ttl", default="12h", help="lifetime: 30m, 8h, 30d (default 12h)")
    ti.add_argument("--note", default="")
    ti.set_defaults(func=cmd_token_issue)
    tl = tsub.add_parser("list", help="list tokens (never the secrets)", formatter_class=raw, description="""\
Every token: id, role, subject, expiry, active or revoked, note. Never the secrets.

  hotline-edge api token list --config /etc/hotline-edge/config.toml
""")
    _common(tl)
    tl.set_defaults(func=cmd_token_list)
    tr = tsub.add_parser("revoke", help="revoke a token by id", formatter_class=raw, description="""\
Revoke a token at once (by the id `token list` shows); the revocation is audited.
Exit status: 0 revoked, 1 no such token.

  hotline-edge api token revoke 3f9a0c1d2e4b5a67
""")
    _common(tr)
    tr.add_argument("token_id")
    tr.set_defaults(func=cmd_token_revoke)

    tm = tsub.add_parser("make", help="make a token offline, for provisioning by id and hash", formatter_class=raw,
                         description="""\
Make a token without storing it anywhere: prints one JSON object with "token" (give it to its
user) and "entry" (id, role, subject, argon2id hash, expiry: put it in the inventory's vault as an
item of hotline_edge_api_tokens; `token provision` and the Ansible role load it). The appliance
then holds only the hash. Needs no config and no database.

  hotline-edge api token make --role hotline --subject analyst@hotline.test --ttl 90d
  hotline-edge api token make --role auditor --subject audit-team --ttl 30d | jq .entry
""")
    tm.add_argument("--role", required=True, choices=["officer", "approver", "hotline", "operator", "auditor"])
    tm.add_argument("--subject", required=True, help="the person or system that will use it")
    tm.add_argument("--ttl", default="30d", help="lifetime: 30m, 8h, 30d (default 30d)")
    tm.add_argument("--note", default="")
    tm.set_defaults(func=cmd_token_make)
    tp = tsub.add_parser("provision", help="load tokens by id and hash from a JSON file", formatter_class=raw,
                         description="""\
Make the token store hold the tokens listed in FILE (a JSON list of the "entry" objects that
`token make` prints; "state": "revoked" retires one). New ids are added, revoked ones revoked,
identical ones left alone; a listed id that exists with another role, subject, hash or expiry is
refused (tokens are never changed in place). Tokens issued on the node are not touched. All or
nothing, audited. Prints {"added": [...], "revoked": [...], "unchanged": [...], "changed": bool}.
Exit status: 0 done (changed or not), 2 a bad file (every problem named by entry and key),
3 the database failed.

  hotline-edge api token provision --config /etc/hotline-edge/config.toml /etc/hotline-edge/api-tokens.json
""")
    _common(tp)
    tp.add_argument("file", metavar="FILE")
    tp.set_defaults(func=cmd_token_provision)

    k = asub.add_parser("keygen", help="create the package signing and compliance key pairs",
                        description=HELP_KEYGEN, formatter_class=argparse.RawDescriptionHelpFormatter)
    k.add_argument("--out", required=True, metavar="DIR")
    k.add_argument("--force", action="store_true", help="overwrite existing key files")
    k.set_defaults(func=cmd_keygen)

    subs = sub.add_parser("subscribers", help="subscriber sessions: import, purge",
                          description="Subscriber session records used to answer disclosure cases.")
    ssub = subs.add_subparsers(dest="subscribers_command", metavar="SUBCOMMAND", required=True)
    i = ssub.add_parser("import", help="import RADIUS/DHCP/CGNAT/account records", description=HELP_IMPORT,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(i)
    i.add_argument("file", metavar="FILE")
    i.add_argument("--kind", choices=["radius", "dhcp", "cgnat", "accounts"], help="default: from the columns")
    i.add_argument("--format", choices=["csv", "json"], help="default: from the file name or content")
    i.add_argument("--dry-run", action="store_true", help="validate only; write nothing")
    i.set_defaults(func=cmd_import)

    pu = ssub.add_parser("purge", help="delete session records past retention (unless held)",
                         description=HELP_PURGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(pu)
    pu.set_defaults(func=cmd_purge)

    ho = sub.add_parser("hotline", help="hotline verification: status, probe",
                        description="Did each takedown order take effect on this node? (docs/blocklog.md)")
    hsub = ho.add_subparsers(dest="hotline_command", metavar="SUBCOMMAND", required=True)
    for name, help_, desc, func in (("status", "is an order in force here, since when, hits per day",
                                     HELP_HOTLINE_STATUS, cmd_hotline_status),
                                    ("probe", "ask the resolver for an order's target: a verdict",
                                     HELP_HOTLINE_PROBE, cmd_hotline_probe)):
        hp = hsub.add_parser(name, help=help_, description=desc, formatter_class=argparse.RawDescriptionHelpFormatter)
        hp.add_argument("--config", metavar="FILE",
                        help=f"configuration file (default: $HOTLINE_EDGE_CONFIG or {DEFAULT_CONFIG} if present)")
        hp.add_argument("order", metavar="ORDER", help="the order reference, e.g. TW-2026-0042")
        hp.add_argument("--json", action="store_true", help="machine-readable result")
        hp.set_defaults(func=func)

    au = sub.add_parser("audit", help="compliance audit chain: verify",
                        description="The hash-chained compliance audit log.")
    ausub = au.add_subparsers(dest="audit_command", metavar="SUBCOMMAND", required=True)
    v = ausub.add_parser("verify", help="verify the audit hash chain", description=HELP_AUDIT,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(v)
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_audit_verify)

    d = sub.add_parser("demo", help="run the whole appliance on loopback (demo data)", description=HELP_DEMO,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--port", type=_port, default=5353, help="resolver port on 127.0.0.1 (default 5353)")
    d.add_argument("--upstream-port", type=_port, default=5354, help="demo upstream port (default 5354)")
    d.add_argument("--api-port", type=_port, default=8080, help="admin API port on 127.0.0.1 (default 8080)")
    d.add_argument("--dir", metavar="DIR", help="keep keys, repository, state and logs in DIR (new or empty) "
                                                "instead of a temporary folder removed at exit")
    d.set_defaults(func=cmd_demo)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE",
                   help=f"configuration file (default: $HOTLINE_EDGE_CONFIG or {DEFAULT_CONFIG} if present)")
    p.add_argument("--database", metavar="PATH", help="override [api] database")


def _log(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), file=sys.stderr)


def config_doc(args: argparse.Namespace) -> Any:
    """The configuration file as a ConfigDoc (or the defaults when there is none)."""
    from rpz.tomlconf import ConfigDoc, load_config
    path = args.config or os.environ.get("HOTLINE_EDGE_CONFIG")
    if path is None and os.path.exists(DEFAULT_CONFIG):
        path = DEFAULT_CONFIG
    return load_config(path) if path else ConfigDoc("<defaults>", {})


def load_config(args: argparse.Namespace) -> Any:
    """[api] from the configuration; raises rpz.tomlconf.ConfigError(s) on bad input."""
    from .config import load_api_config
    doc = config_doc(args)
    cfg = load_api_config(doc)
    overrides = {}
    if getattr(args, "database", None):
        overrides["database"] = args.database
    if getattr(args, "listen", None):
        from .config import split_listen
        split_listen(args.listen)
        overrides["listen"] = args.listen
    if overrides:
        from dataclasses import replace
        cfg = replace(cfg, **overrides)
    return cfg


def _with_config(args: argparse.Namespace) -> Any:
    from rpz.errors import RpzError
    try:
        return load_config(args)
    except (RpzError, ValueError) as exc:
        print(str(exc), file=sys.stderr)
        return None


def cmd_serve(args: argparse.Namespace) -> int:
    cfg = _with_config(args)
    if cfg is None:
        return 2
    import uvicorn

    from rpz.errors import RpzError

    from .app import configure_logging, create_app
    from .blocklog import SqliteBlocklog
    from .errors import KeyMaterialError, StoreError
    from .hotline import NodeView, routers
    configure_logging()
    try:   # this node's state: the hotline routes, legal holds, the blocked-lookup log for disclosures
        view = NodeView.from_doc(config_doc(args))
    except RpzError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    try:
        app = create_app(cfg, blocklog=SqliteBlocklog(view.blocklog.path), routers=routers(view))
    except KeyMaterialError as exc:
        _log("error", error=str(exc))
        return 2
    except StoreError as exc:
        _log("error", error=str(exc))
        return 3
    host, port = cfg.host_port
    _log("api.listening", listen=f"{host}:{port}", database=cfg.database)
    try:
        uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning", log_config=None)
    except OSError as exc:
        _log("error", error=f"cannot listen on {host}:{port}: {exc}")
        return 3
    return 0


def parse_ttl(text: str) -> timedelta:
    m = re.fullmatch(r"(\d+)([mhd])", text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a lifetime like 30m, 8h or 30d")
    n, unit = int(m.group(1)), m.group(2)
    return timedelta(minutes=n) if unit == "m" else timedelta(hours=n) if unit == "h" else timedelta(days=n)


def _authority(cfg: Any) -> Any:
    from .clock import SystemClock
    from .store import Store
    from .tokens import TokenAuthority, make_hasher
    return TokenAuthority(Store(cfg.database), SystemClock(), make_hasher(cfg.argon2_time_cost, cfg.argon2_memory_kib),
                          timedelta(days=cfg.token_max_ttl_days))


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid{os.getuid()}"


def _exit_codes(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """The admin commands' exit codes for what their work raises, the message on stderr: what was
    asked for is not there or not allowed now (NotFound, Conflict) 1, the database failed
    (StoreError) 3."""
    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        from .errors import Conflict, NotFound, StoreError
        try:
            return func(args)
        except (NotFound, Conflict) as exc:
            print(str(exc), file=sys.stderr)
            return 1
        except StoreError as exc:
            print(str(exc), file=sys.stderr)
            return 3
    return run


@_exit_codes
def cmd_token_issue(args: argparse.Namespace) -> int:
    cfg = _with_config(args)
    if cfg is None:
        return 2
    from .roles import Role
    try:
        ttl = parse_ttl(args.ttl)
        token, record = _authority(cfg).issue(Role(args.role), args.subject, ttl, args.note, actor=_actor())
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(token)
    print(f"token {record.id}: role {record.role}, subject {record.subject}, expires "
          f"{record.expires_at.isoformat()} (shown once; store it now)", file=sys.stderr)
    return 0


def cmd_token_make(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from .roles import Role
    from .tokens import make_hasher, make_token
    try:
        ttl = parse_ttl(args.ttl)
        token, entry = make_token(Role(args.role), args.subject,
                                  datetime.now(UTC).replace(microsecond=0) + ttl, make_hasher(), args.note)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(json.dumps({"token": token, "entry": entry}, indent=2))
    print(f"token {entry['id']}: role {entry['role']}, expires {entry['expires']} (shown once: give the "
          "token to its user, put the entry in the vault)", file=sys.stderr)
    return 0


@_exit_codes
def cmd_token_provision(args: argparse.Namespace) -> int:
    cfg = _with_config(args)
    if cfg is None:
        return 2
    from .clock import SystemClock
    from .tokens import parse_provisioned
    try:
        with open(args.file, encoding="utf-8") as f:
            items = json.load(f)
    except OSError as exc:
        print(f"{args.file}: cannot read: {exc.strerror}", file=sys.stderr)
        return 2
    except json.JSONDecodeError as exc:
        print(f"{args.file}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}", file=sys.stderr)
        return 2
    authority = _authority(cfg)
    try:
        entries = parse_provisioned(items, SystemClock().now(), authority.max_ttl, args.file)
        result = authority.provision(entries, actor=_actor())
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(json.dumps({"added": list(result.added), "revoked": list(result.revoked),
                      "unchanged": list(result.unchanged), "changed": result.changed}))
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    cfg = _with_config(args)
    if cfg is None:
        return 2
    from .store import Store
    with Store(cfg.database).read() as tx:
        tokens = tx.list_tokens()
    for t in tokens:
        state = "revoked" if t.revoked_at else "active"
        print(f"{t.id}  {t.role:<9} {t.subject:<24} expires {t.expires_at.isoformat()}  {state}  {t.note}")
    return 0


@_exit_codes
def cmd_token_revoke(args: argparse.Namespace) -> int:
    cfg = _with_config(args)
    if cfg is None:
        return 2
    _authority(cfg).revoke(args.token_id, actor=_actor())
    print(f"token {args.token_id} revoked", file=sys.stderr)
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from nacl.public import PrivateKey

    from .blocklog import encode_key
    from .package import pem_private, pem_public
    os.makedirs(args.out, mode=0o700, exist_ok=True)
    sign_key = Ed25519PrivateKey.generate()
    box_key = PrivateKey.generate()
    files = {
        "package-ed25519.pem": (pem_private(sign_key), 0o600),
        "package-ed25519.pub.pem": (pem_public(sign_key.public_key()), 0o644),
        "compliance-x25519.key": ((encode_key(box_key) + "\n").encode(), 0o600),
        "compliance-x25519.pub": ((encode_key(box_key.public_key) + "\n").encode(), 0o644),
    }
    for name in files:
        if os.path.exists(os.path.join(args.out, name)) and not args.force:
            print(f"{os.path.join(args.out, name)} exists; use --force to replace it", file=sys.stderr)
            return 2
    for name, (data, mode) in files.items():
        path = os.path.join(args.out, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
        print(path)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    cfg = _with_config(args)
    if cfg is None:
        return 2
    from rpz.progress import ProgressBar

    from .clock import SystemClock
    from .errors import SessionImportError, StoreError
    from .service import DisclosureService
    from .sessions import SessionKind, parse_text
    from .store import Store
    from .tokens import Principal
    try:
        with open(args.file, "rb") as f:
            raw = f.read()
        parsed = parse_text(raw.decode("utf-8"), args.file, SessionKind(args.kind) if args.kind else None,
                            args.format)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{args.file}: cannot read: {exc}", file=sys.stderr)
        return 2
    except SessionImportError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    for rej in parsed.rejected:
        print(str(rej), file=sys.stderr)
    if args.dry_run:
        print(f"{args.file}: {parsed.kind.value}: {len(parsed.rows)} valid, {len(parsed.rejected)} rejected "
              "(dry run, nothing written)")
        return 1 if parsed.rejected else 0
    from .roles import Role
    from .sessions import ParseResult
    bar = ProgressBar(f"importing {os.path.basename(args.file)}")
    who = Principal("-", _actor(), Role.OPERATOR, SystemClock().now())
    digest = hashlib.sha256(raw).hexdigest()
    totals = [0, 0, 0]
    try:
        svc = DisclosureService(Store(cfg.database), cfg, SystemClock(), None)
        batch = 2000
        for start in range(0, max(len(parsed.rows), 1), batch):
            chunk = ParseResult(parsed.kind, parsed.rows[start:start + batch],
                                parsed.rejected if start == 0 else ())
            counts = svc.import_sessions(who, chunk, args.file, digest)
            totals = [totals[0] + counts.inserted, totals[1] + counts.updated, totals[2] + counts.unchanged]
            bar(min(start + batch, len(parsed.rows)), len(parsed.rows))
    except StoreError as exc:
        bar.close()
        print(str(exc), file=sys.stderr)
        return 3
    bar.close()
    print(f"{args.file}: {parsed.kind.value}: {totals[0]} new, {totals[1]} updated, {totals[2]} unchanged, "
          f"{len(parsed.rejected)} rejected")
    return 1 if parsed.rejected else 0


@_exit_codes
def cmd_purge(args: argparse.Namespace) -> int:
    cfg = _with_config(args)
    if cfg is None:
        return 2
    from .clock import SystemClock
    from .roles import Role
    from .service import DisclosureService
    from .store import Store
    from .tokens import Principal
    svc = DisclosureService(Store(cfg.database), cfg, SystemClock(), None)
    counts = svc.purge_sessions(Principal("-", _actor(), Role.OPERATOR, SystemClock().now()))
    print(f"purged {counts['sessions']} session records and {counts['port_blocks']} port blocks "
          f"older than {cfg.session_retention_days} days")
    return 0


@_exit_codes
def cmd_audit_verify(args: argparse.Namespace) -> int:
    cfg = _with_config(args)
    if cfg is None:
        return 2
    from .store import Store
    if cfg.database != ":memory:" and not os.path.exists(cfg.database):
        print(f"{cfg.database}: no compliance database here (check [api] database or --database)", file=sys.stderr)
        return 2
    with Store(cfg.database).read() as tx:
        check = tx.verify_audit()
    if args.json:
        print(json.dumps({"ok": check.ok, "checked": check.checked, "first_bad": check.first_bad,
                          "reason": check.reason, "head": check.head.hex()}))
    else:
        print(str(check) + (f" (full head {check.head.hex()})" if check.ok else ""))
    return 0 if check.ok else 1


def _node_view(args: argparse.Namespace) -> Any:
    from rpz.errors import RpzError

    from .hotline import NodeView
    try:
        return NodeView.from_doc(config_doc(args))
    except RpzError as exc:
        print(str(exc), file=sys.stderr)
        return None


@_exit_codes
def cmd_hotline_status(args: argparse.Namespace) -> int:
    view = _node_view(args)
    if view is None:
        return 2
    st = view.status(args.order)
    if args.json:
        print(st.model_dump_json(indent=2))
        return 0 if st.active else 1
    print(f"order {st.order_ref} on node {st.node}: {'IN FORCE' if st.active else 'NOT in force'}")
    for r in st.rules:
        print(f"  rule    {r.trigger} {r.name} -> {r.action}  (zone {r.zone} serial {r.serial}"
              + (f", feed {r.feed})" if r.feed else ")"))
    if st.since is not None:
        print(f"  since   {st.since.applied_at}: feed {st.since.feed} serial {st.since.serial}")
    if st.current is not None:
        print(f"  now     feed {st.current.feed} serial {st.current.last_serial} (in force since serial "
              f"{st.current.serial}, {st.current.applied_at})")
    if st.policy_error:
        print(f"  policy  {st.policy_error}")
    for d in st.hits_per_day:
        print(f"  {d.day}  {d.hits:>8} hits  ({d.zone}, {d.action}; last {d.last_hit})")
    print(f"  total   {st.hits_total} hits" + (f", last {st.last_hit}" if st.last_hit else ""))
    return 0 if st.active else 1


@_exit_codes
def cmd_hotline_probe(args: argparse.Namespace) -> int:
    view = _node_view(args)
    if view is None:
        return 2
    p = view.probe(args.order)
    if args.json:
        print(p.model_dump_json(indent=2))
    else:
        e, a = p.expected, p.actual
        print(f"{p.verdict}: order {p.order_ref}, {p.qname} {p.qtype} asked at {p.resolver}")
        print(f"  expected  {e.action or 'not rewritten'}: rcode {e.rcode or 'any'}, EDE {e.ede}"
              + (f" {e.ede_text!r}" if e.ede_text else "") + (f", answer {e.answer}" if e.answer else ""))
        if a.answered:
            print(f"  actual    rcode {a.rcode}, EDE {[(x.code, x.text) for x in a.ede]}, answer {a.answer}"
                  + (", TC" if a.truncated else ""))
        else:
            print(f"  actual    no answer: {a.error}")
        for d in p.differences:
            print(f"  - {d}")
    return 0 if p.verdict == "ENFORCED" else 1
def _port(text: str) -> int:
    """An argparse type: a TCP/UDP port number, 1..65535."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"{n} is not a port number (1..65535)")
    return n


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DemoPorts, run
    if args.dir and os.path.isdir(args.dir) and os.listdir(args.dir):
        print(f"--dir {args.dir} is not empty: give a new or empty folder", file=sys.stderr)
        return 2
    if len({args.port, args.upstream_port, args.api_port}) < 3:
        print("--port, --upstream-port and --api-port must differ", file=sys.stderr)
        return 2
    return run(DemoPorts(dns=args.port, upstream=args.upstream_port, api=args.api_port), args.dir, sys.stdout)
