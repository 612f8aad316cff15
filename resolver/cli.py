"""``hotline-edge serve | checkconf | reload``: the data plane's commands."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import socket
import sys
from typing import Any

HELP_SERVE = """\
Run the resolver: answer customers' DNS queries, enforce the policy zones, forward the rest to the
upstream resolvers. With a configuration file (the default /etc/hotline-edge/config.toml, or
--config, or $HOTLINE_EDGE_CONFIG):

  hotline-edge serve --config /etc/hotline-edge/config.toml

or, for a quick run without a file, the essentials as flags (each repeatable; zones apply in the
order given, the first has the highest precedence):

  hotline-edge serve --listen 127.0.0.1:5353 --upstream 127.0.0.1:5300 \\
      --rpz hotline.rpz --rpz local.rpz --allow 127.0.0.0/8 --allow 198.51.100.0/24

Until a policy has loaded, queries get REFUSED (or SERVFAIL, resolver.not_ready_rcode); they are
never answered unfiltered. SIGHUP, `hotline-edge reload` or the control socket load a new policy
without dropping queries. Clients outside the allowed prefixes get REFUSED.

Triggers evaluated: CLIENT-IP and QNAME before forwarding; every CNAME/DNAME target and every A/AAAA
address of the answer (rpz-ip) after. NSDNAME and NSIP rules load but are not evaluated in this
forwarding mode (a forwarder does not see the delegations); see docs/operations.md.

Exit status: 0 stopped cleanly, 2 bad configuration, 3 cannot listen (port in use, no permission).
"""

HELP_CHECKCONF = """\
Validate a configuration file offline, the way `serve` does at start, and list every error as
FILE:LINE: key: what is wrong. Zone files named by the configuration must exist (they are not
compiled here: `hotline-edge rpz check ZONEFILE` does that).

  hotline-edge checkconf /etc/hotline-edge/config.toml
  hotline-edge checkconf --json config.toml       machine-readable result

Exit status: 0 valid, 2 errors found (or the file cannot be read).
"""

HELP_RELOAD = """\
Ask the running resolver to load its policy zones again (the same as SIGHUP), and print the zone
serials now active. The resolver builds the new policy beside the old one and swaps it only when
every zone loaded; on failure the old policy stays in force.

  hotline-edge reload                                   uses /etc/hotline-edge/config.toml
  hotline-edge reload --config /etc/hotline-edge/config.toml
  hotline-edge reload --socket /run/hotline-edge/control.sock
  hotline-edge reload --status                          only show serials, snapshot age, counters

Exit status: 0 reloaded, 1 the resolver refused the new policy (old one still active), 2 bad
configuration, 3 the resolver is not reachable.
"""

# validators of sections owned by other packages, looked up by name so resolver imports none of them
OTHER_VALIDATORS = ("feedsync.config:check_config", "admin_api.config:check_config")


def _fmt(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter


def register(sub: Any) -> None:
    s = sub.add_parser("serve", help="run the resolver", description=HELP_SERVE)
    _fmt(s)
    s.add_argument("--config", metavar="FILE", help="configuration file (default /etc/hotline-edge/config.toml)")
    s.add_argument("--listen", action="append", default=[], metavar="ADDR:PORT", help="address to answer on")
    s.add_argument("--upstream", action="append", default=[], metavar="ADDR:PORT", help="upstream resolver")
    s.add_argument("--rpz", action="append", default=[], metavar="ZONEFILE", help="policy zone, in precedence order")
    s.add_argument("--allow", action="append", default=[], metavar="PREFIX",
                   help="customer prefix allowed to query (default: loopback only)")
    s.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes (default: config, or 1 with quick flags; 0 = one per core)")
    s.add_argument("--metrics", metavar="ADDR:PORT", help="serve Prometheus metrics on ADDR:PORT/metrics")
    s.add_argument("--runtime-dir", metavar="DIR", help="where the control socket goes (quick flags)")
    s.set_defaults(func=cmd_serve)

    c = sub.add_parser("checkconf", help="validate a configuration file", description=HELP_CHECKCONF)
    _fmt(c)
    c.add_argument("file", metavar="FILE")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(func=cmd_checkconf)

    r = sub.add_parser("reload", help="load the policy zones again in the running resolver",
                       description=HELP_RELOAD)
    _fmt(r)
    r.add_argument("--config", metavar="FILE", help="configuration file, to find the control socket")
    r.add_argument("--socket", metavar="PATH", help="control socket (default <runtime_dir>/control.sock)")
    r.add_argument("--status", action="store_true", help="do not reload; show what is active")
    r.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the reload (default 120)")
    r.set_defaults(func=cmd_reload)


def _config_path(arg: str | None) -> str:
    from .config import DEFAULT_CONFIG
    return arg or os.environ.get("HOTLINE_EDGE_CONFIG") or DEFAULT_CONFIG


def _print_config_error(exc: Exception) -> None:
    from rpz.tomlconf import ConfigErrors
    errs = exc.errors if isinstance(exc, ConfigErrors) else [exc]
    for e in errs:
        print(f"error: {e}", file=sys.stderr)


def cmd_serve(args: argparse.Namespace) -> int:
    from rpz.tomlconf import ConfigError, ConfigErrors

    from . import config as config_mod
    quick = args.listen or args.upstream or args.rpz or args.allow
    try:
        if quick:
            if args.config:
                print("error: give either --config or the quick flags (--listen, --upstream, --rpz, --allow)",
                      file=sys.stderr)
                return 2
            cfg = config_mod.from_flags(args.listen, args.upstream, args.rpz, args.allow,
                                        workers=1 if args.workers is None else args.workers,
                                        runtime_dir=args.runtime_dir, metrics_listen=args.metrics)
        else:
            cfg = config_mod.load(_config_path(args.config))
            if args.workers is not None:
                import dataclasses
                cfg = dataclasses.replace(cfg, resolver=dataclasses.replace(cfg.resolver, workers=args.workers))
            if args.metrics:
                import dataclasses
                cfg = dataclasses.replace(cfg, resolver=dataclasses.replace(
                    cfg.resolver, metrics_listen=config_mod.parse_endpoint(args.metrics, None)))
    except (ConfigError, ConfigErrors) as exc:
        _print_config_error(exc)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run_supervisor(cfg)


def run_supervisor(cfg: Any, sink_spec: str | None = None) -> int:
    import uvloop

    from .logs import Logger
    from .service import tune_collector
    from .supervisor import Supervisor
    log = Logger("resolver", journald_prefix=bool(os.environ.get("JOURNAL_STREAM")))
    sink_spec = sink_spec or os.environ.get("HOTLINE_EDGE_HIT_SINK") or None
    tune_collector()
    return uvloop.run(Supervisor(cfg, log, sink_spec=sink_spec).run())


def cmd_checkconf(args: argparse.Namespace) -> int:
    from rpz.tomlconf import ConfigError, ConfigErrors, load_config

    from . import config as config_mod
    errors: list[str] = []
    cfg = None
    try:
        doc = load_config(args.file)
    except ConfigError as exc:
        errors.append(str(exc))
    else:
        runs_resolver = "resolver" in doc.data or "policy" in doc.data
        try:
            cfg = config_mod.validate(doc, require_resolver=runs_resolver)
        except ConfigErrors as exc:
            errors.extend(str(e) for e in exc.errors)
        doc.errors.clear()
        errors.extend(other_section_errors(doc))
    if args.json:
        out: dict[str, Any] = {"file": args.file, "ok": not errors, "errors": errors}
        if cfg is not None and not errors:
            out["zones"] = [z.describe() for z in cfg.zones]
        print(json.dumps(out, indent=2))
    elif errors:
        for e in errors:
            print(e, file=sys.stderr)
        print(f"{args.file}: {len(errors)} error(s)", file=sys.stderr)
    else:
        assert cfg is not None
        r = cfg.resolver
        if cfg.zones or r.upstreams:
            print(f"{args.file}: ok: listen {', '.join(map(str, r.listen))}; upstreams "
                  f"{', '.join(map(str, r.upstreams))}; {len(cfg.zones)} policy zone(s): "
                  + "; ".join(z.describe() for z in cfg.zones))
        else:
            print(f"{args.file}: ok (no [resolver] on this node)")
    return 2 if errors else 0


def other_section_errors(doc: Any) -> list[str]:
    """The problems the other packages' validators (OTHER_VALIDATORS: feedsync's [[feed]], the admin
    API's [api]) find in a parsed configuration; a package that is not installed is skipped."""
    from rpz.tomlconf import ConfigError, ConfigErrors
    errors: list[str] = []
    for spec in OTHER_VALIDATORS:
        mod_name, _, func = spec.partition(":")
        try:
            validator = getattr(importlib.import_module(mod_name), func)
        except (ImportError, AttributeError):
            continue
        try:
            validator(doc)
        except ConfigErrors as exc:
            errors.extend(str(e) for e in exc.errors)
        except ConfigError as exc:
            errors.append(str(exc))
        errors.extend(str(e) for e in doc.errors)
        doc.errors.clear()
    return errors


def control_request(path: str, request: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One request on the control socket. ControlError when unreachable or not understood."""
    from .errors import ControlError
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(json.dumps(request).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
    except OSError as exc:
        raise ControlError(f"{path}: cannot reach the resolver's control socket: {exc.strerror or exc}; "
                           "is it running? (or send SIGHUP to its main process)") from exc
    try:
        reply = json.loads(buf)
    except ValueError as exc:
        raise ControlError(f"{path}: the resolver's answer is not JSON: {buf[:200]!r}") from exc
    if not isinstance(reply, dict):
        raise ControlError(f"{path}: unexpected answer {reply!r}")
    return reply


def cmd_reload(args: argparse.Namespace) -> int:
    from rpz.tomlconf import ConfigError, ConfigErrors

    from . import config as config_mod
    from .errors import ControlError
    path = args.socket
    if not path:
        try:
            path = config_mod.load(_config_path(args.config)).control_socket
        except (ConfigError, ConfigErrors) as exc:
            _print_config_error(exc)
            return 2
    try:
        reply = control_request(path, {"cmd": "status" if args.status else "reload"}, args.timeout)
    except ControlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(reply, indent=2))
    return 0 if reply.get("ok") else 1
