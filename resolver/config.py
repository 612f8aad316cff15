"""The resolver's configuration: ``[node]``, ``[resolver]``, ``[[policy.zone]]`` and ``[blocklog]``
(validated by ``blocklog_config``, which the log commands and the admin API use on their own).

Validated with line numbers from ``rpz.tomlconf``; every error is collected so ``checkconf`` can list
them all (``FILE:LINE: key.path: what is wrong``). The tables below are the documented surface:
docs/configuration.md lists the same keys and a test checks that both agree.

    cfg = load("/etc/hotline-edge/config.toml")        # ConfigErrors when anything is wrong
    cfg = from_flags(listen=["127.0.0.1:5353"], upstreams=["127.0.0.1:5300"],
                     zones=["a.rpz"], allow=["127.0.0.0/8"])
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rpz import ActionKind, Override, ZoneSettings, names
from rpz.errors import DnsNameError, PolicyConfigError
from rpz.tomlconf import ConfigDoc, ConfigError, ConfigErrors, KeyPath, load_config, parse_config

from . import blocklog_config
from .blocklog_config import BlocklogConfig, load_blocklog

DEFAULT_CONFIG = "/etc/hotline-edge/config.toml"
KNOWN_SECTIONS = ("node", "resolver", "policy", "blocklog", "feed", "api")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An IP literal and a port (``127.0.0.1:53``, ``[2001:db8::1]:53``)."""

    host: str
    port: int

    @property
    def family(self) -> int:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_endpoint(text: str, default_port: int | None = 53) -> Endpoint:
    """``ADDR:PORT``, ``[V6]:PORT``, or a bare address (``default_port``). ValueError when invalid."""
    text = text.strip()
    host, port_s = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"{text!r}: missing ']' after the IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected ':PORT' after ']'")
        port_s = rest[1:]
    elif text.count(":") == 1:
        host, port_s = text.split(":")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r}: not an IP address (host names are not accepted here)") from None
    if port_s:
        if not port_s.isdigit() or not 0 < int(port_s) < 65536:
            raise ValueError(f"{text!r}: port must be 1-65535")
        port = int(port_s)
    elif default_port is None:
        raise ValueError(f"{text!r}: a port is required (ADDR:PORT)")
    else:
        port = default_port
    return Endpoint(str(ip), port)


@dataclass(frozen=True, slots=True)
class NodeConfig:
    id: str
    state_dir: str = "/var/lib/hotline-edge"
    runtime_dir: str = "/run/hotline-edge"


@dataclass(frozen=True, slots=True)
class ZoneConfig:
    """One ``[[policy.zone]]``: where the rules come from and how they are applied."""

    source: str                 # "file" | "snapshot" | "feed"
    path: str                   # file or snapshot path; the feed's name for "feed"
    name: str = ""              # label in logs, metrics and hits (default: the zone's origin)
    origin: str | None = None
    override: Override = Override.GIVEN
    cname_target: str = ""
    max_policy_ttl: int = 60
    ede: int | None = None
    ede_text: str = ""
    long_cname_fallback: ActionKind = ActionKind.NXDOMAIN

    def settings(self) -> ZoneSettings:
        target = names.from_text(self.cname_target).lower() if self.cname_target else b""
        return ZoneSettings(name=self.name, override=self.override, cname_target=target,
                            max_policy_ttl=self.max_policy_ttl, ede_code=self.ede, ede_text=self.ede_text,
                            long_cname_fallback=self.long_cname_fallback)

    def describe(self) -> str:
        return f"{self.name or '(zone)'} from {self.source} {self.path}"


@dataclass(frozen=True, slots=True)
class ResolverConfig:
    listen: tuple[Endpoint, ...] = (Endpoint("127.0.0.1", 53), Endpoint("::1", 53))
    upstreams: tuple[Endpoint, ...] = ()
    allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    workers: int = 0
    serve_without_policy: bool = False
    not_ready_rcode: str = "refused"
    break_dnssec: bool = True
    cache_size: int = 100_000
    cache_max_ttl: int = 86_400
    cache_min_ttl: int = 0
    negative_max_ttl: int = 3_600
    upstream_timeout_ms: int = 800
    query_timeout_ms: int = 3_000
    tcp_idle_timeout_ms: int = 10_000
    max_tcp_clients: int = 1_000
    edns_udp_size: int = 1232
    upstream_sockets: int = 0
    metrics_listen: Endpoint | None = None
    control_socket: str = ""    # default: <runtime_dir>/control.sock

    @property
    def effective_workers(self) -> int:
        return self.workers or max(1, os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class Config:
    node: NodeConfig
    resolver: ResolverConfig
    zones: tuple[ZoneConfig, ...]
    file: str | None = None
    blocklog: BlocklogConfig = field(default_factory=lambda: BlocklogConfig(
        enabled=False, path="", socket_path="", node=""))

    @property
    def control_socket(self) -> str:
        return self.resolver.control_socket or os.path.join(self.node.runtime_dir, "control.sock")

    def zone_path(self, z: ZoneConfig) -> str:
        """Where a zone's data is read from now (a feed's active snapshot, else its zone text)."""
        if z.source != "feed":
            return z.path
        base = os.path.join(self.node.state_dir, "feeds", z.path)
        snap = os.path.join(base, "active.snap")
        return snap if os.path.exists(snap) else os.path.join(base, "active.rpz")


# -- validation tables ----------------------------------------------------------------------------
# key -> (default, converter(doc, path, value) -> value); converters raise ValueError with the reason.

Converter = Callable[[Any], Any]


def _int(lo: int, hi: int) -> Converter:
    def conv(v: Any) -> int:
        if not isinstance(v, int) or isinstance(v, bool):
            raise ValueError(f"expected an integer {lo}..{hi}, got {v!r}")
        if not lo <= v <= hi:
            raise ValueError(f"{v} is out of range {lo}..{hi}")
        return v
    return conv


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false, got {v!r}")
    return v


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a string, got {v!r}")
    return v


def _choice(*options: str) -> Converter:
    def conv(v: Any) -> str:
        if v not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {v!r}")
        return str(v)
    return conv


def _endpoint_list(v: Any) -> tuple[Endpoint, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError('expected a list of "ADDR:PORT" strings')
    return tuple(parse_endpoint(x) for x in v)


def _endpoint_opt(v: Any) -> Endpoint | None:
    if v == "":
        return None
    return parse_endpoint(_str(v), None)


def _prefixes(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError('expected a list of prefixes such as "198.51.100.0/24"')
    out = []
    for x in v:
        try:
            out.append(str(ipaddress.ip_network(x, strict=True)))
        except ValueError as exc:
            raise ValueError(f"{x!r}: {exc}") from None
    return tuple(out)


NODE_KEYS: dict[str, tuple[Any, Converter]] = {
    "id": (None, _str),
    "state_dir": ("/var/lib/hotline-edge", _str),
    "runtime_dir": ("/run/hotline-edge", _str),
}

RESOLVER_KEYS: dict[str, tuple[Any, Converter]] = {
    "listen": (["127.0.0.1:53", "[::1]:53"], _endpoint_list),
    "upstreams": (None, _endpoint_list),
    "allow": (["127.0.0.0/8", "::1/128"], _prefixes),
    "workers": (0, _int(0, 256)),
    "serve_without_policy": (False, _bool),
    "not_ready_rcode": ("refused", _choice("refused", "servfail")),
    "break_dnssec": (True, _bool),
    "cache_size": (100_000, _int(0, 50_000_000)),
    "cache_max_ttl": (86_400, _int(0, 604_800)),
    "cache_min_ttl": (0, _int(0, 3_600)),
    "negative_max_ttl": (3_600, _int(0, 86_400)),
    "upstream_timeout_ms": (800, _int(10, 30_000)),
    "query_timeout_ms": (3_000, _int(50, 60_000)),
    "tcp_idle_timeout_ms": (10_000, _int(100, 600_000)),
    "max_tcp_clients": (1_000, _int(1, 100_000)),
    "edns_udp_size": (1232, _int(512, 4096)),
    "upstream_sockets": (0, _int(0, 1024)),
    "metrics_listen": ("", _endpoint_opt),
    "control_socket": ("", _str),
}

_OVERRIDES = {o.value: o for o in Override}
_EDE_NAMES = {"blocked": 15, "censored": 16, "filtered": 17}
_FALLBACKS = {"nxdomain": ActionKind.NXDOMAIN, "nodata": ActionKind.NODATA, "drop": ActionKind.DROP}


def _override(v: Any) -> Override:
    if v not in _OVERRIDES:
        raise ValueError(f"expected one of {', '.join(_OVERRIDES)}, got {v!r}")
    return _OVERRIDES[v]


def _ede(v: Any) -> int | None:
    if v == "none":
        return None
    if isinstance(v, str) and v.lower() in _EDE_NAMES:
        return _EDE_NAMES[v.lower()]
    if isinstance(v, int) and not isinstance(v, bool) and v in (15, 16, 17):
        return v
    raise ValueError(f"expected 15 (blocked), 16 (censored), 17 (filtered) or \"none\", got {v!r}")


def _fallback(v: Any) -> ActionKind:
    if v not in _FALLBACKS:
        raise ValueError(f"expected nxdomain, nodata or drop, got {v!r}")
    return _FALLBACKS[v]


def _dns_name(v: Any) -> str:
    s = _str(v)
    if not s:
        return ""
    try:
        names.from_text(s if s.endswith(".") else s + ".")
    except DnsNameError as exc:
        raise ValueError(str(exc)) from None
    return s if s.endswith(".") else s + "."


ZONE_KEYS: dict[str, tuple[Any, Converter]] = {
    "name": ("", _dns_name),
    "file": (None, _str),
    "snapshot": (None, _str),
    "feed": (None, _str),
    "origin": (None, _dns_name),
    "override": ("given", _override),
    "cname_target": ("", _dns_name),
    "max_policy_ttl": (60, _int(0, 86_400)),
    "ede": ("none", _ede),
    "ede_text": ("", _str),
    "long_cname_fallback": ("nxdomain", _fallback),
}

BLOCKLOG_KEYS = blocklog_config.KEYS   # [blocklog] is validated by blocklog_config.load_blocklog


# -- loading ---------------------------------------------------------------------------------------

def load(path: str) -> Config:
    """Read and validate ``path``. ConfigError/ConfigErrors (rpz.tomlconf) on any problem."""
    return validate(load_config(path))


def parse(raw: bytes, file: str = "<config>") -> Config:
    return validate(parse_config(raw, file))


def validate(doc: ConfigDoc, require_resolver: bool = True) -> Config:
    """Every error of the sections the resolver owns, collected; ConfigErrors if any.

    ``require_resolver`` False (checkconf on a node without the resolver, e.g. the admin node):
    the upstreams and policy zones a resolver needs are not demanded, what is present is checked.
    """
    data = doc.data
    for key in data:
        if key not in KNOWN_SECTIONS:
            doc.collect((key,), f"unknown section; known: {', '.join(KNOWN_SECTIONS)}")
    node_raw = _table(doc, ("node",), data.get("node", {}))
    node_vals = _keys(doc, ("node",), node_raw, NODE_KEYS)
    res_raw = _table(doc, ("resolver",), data.get("resolver", {}))
    res_vals = _keys(doc, ("resolver",), res_raw, RESOLVER_KEYS)
    if not res_vals.get("upstreams") and (require_resolver or "upstreams" in res_raw):
        doc.collect(("resolver", "upstreams") if "upstreams" in res_raw else ("resolver",),
                    'at least one upstream resolver is required, e.g. upstreams = ["127.0.0.1:5300"]')
    if "allow" in res_raw and not res_vals.get("allow"):
        doc.collect(("resolver", "allow"), "an empty customer list would refuse every query; list the "
                                           "customer prefixes (never 0.0.0.0/0: that is an open resolver)")
    for i, prefix in enumerate(res_vals.get("allow") or ()):
        if prefix in ("0.0.0.0/0", "::/0"):
            doc.collect(("resolver", "allow", i), f"{prefix} makes this an open resolver; list the customer "
                                                  "prefixes instead")
    zones = _zones(doc, data.get("policy", {}), require_resolver)
    blocklog = load_blocklog(doc)
    for feed in blocklog.feed_retention_days if (zones or require_resolver) else ():
        if not any(z.source == "feed" and z.path == feed for z in zones):
            doc.collect(("blocklog", "feed_retention_days", feed), "no [[policy.zone]] has feed = "
                                                                   f"{feed!r}; the override would never apply")
    doc.raise_collected()
    node_id = node_vals.get("id") or socket.gethostname()
    base = os.path.dirname(os.path.abspath(doc.file)) if doc.file and not doc.file.startswith("<") else ""
    resolved = tuple(_resolve_path(z, base) for z in zones)
    node = NodeConfig(id=node_id, state_dir=node_vals["state_dir"], runtime_dir=node_vals["runtime_dir"])
    res_vals["upstreams"] = res_vals.get("upstreams") or ()
    resolver = ResolverConfig(**res_vals)
    return Config(node=node, resolver=resolver, zones=resolved, file=doc.file, blocklog=blocklog)


def _resolve_path(z: ZoneConfig, base: str) -> ZoneConfig:
    if z.source == "feed" or os.path.isabs(z.path) or not base:
        return z
    import dataclasses
    return dataclasses.replace(z, path=os.path.join(base, z.path))


def _table(doc: ConfigDoc, path: KeyPath, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        doc.collect(path, "expected a table")
        return {}
    return value


def _keys(doc: ConfigDoc, path: KeyPath, raw: dict[str, Any], spec: dict[str, tuple[Any, Converter]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, _value in raw.items():
        if key not in spec:
            doc.collect((*path, key), f"unknown key; known: {', '.join(spec)}")
    for key, (default, conv) in spec.items():
        if key not in raw:
            if default is not None:
                out[key] = conv(default)
            continue
        try:
            out[key] = conv(raw[key])
        except ValueError as exc:
            doc.collect((*path, key), str(exc))
    return out


def _zones(doc: ConfigDoc, policy: Any, required: bool = True) -> list[ZoneConfig]:
    if not isinstance(policy, dict):
        doc.collect(("policy",), "expected [[policy.zone]] tables")
        return []
    for key in policy:
        if key != "zone":
            doc.collect(("policy", key), "unknown key; policy zones are written as [[policy.zone]]")
    items = policy.get("zone", [])
    if not isinstance(items, list):
        doc.collect(("policy", "zone"), "expected [[policy.zone]] tables (an array of tables)")
        return []
    if not items and required:
        doc.collect(("policy",), "no [[policy.zone]] configured: there is nothing to enforce")
    if len(items) > 64:
        doc.collect(("policy", "zone", 64), f"{len(items)} policy zones; at most 64 are supported")
    out = []
    for i, raw in enumerate(items):
        path: KeyPath = ("policy", "zone", i)
        if not isinstance(raw, dict):
            doc.collect(path, "expected a table")
            continue
        before = len(doc.errors)
        vals = _keys(doc, path, raw, ZONE_KEYS)
        sources = [k for k in ("file", "snapshot", "feed") if k in raw]
        if len(sources) != 1:
            doc.collect(path, "give exactly one of file = \"ZONEFILE\", snapshot = \"SNAPSHOT\" or "
                              f"feed = \"FEEDNAME\" (found {', '.join(sources) or 'none'})")
        if len(doc.errors) > before:
            continue
        src = sources[0]
        if vals["override"] is Override.CNAME and not vals.get("cname_target"):
            doc.collect((*path, "override"), 'override = "cname" needs cname_target = "NAME"')
            continue
        zc = ZoneConfig(source=src, path=vals.pop(src), name=vals.pop("name", ""), origin=vals.pop("origin", None),
                        override=vals["override"], cname_target=vals.get("cname_target", ""),
                        max_policy_ttl=vals["max_policy_ttl"], ede=vals["ede"], ede_text=vals["ede_text"],
                        long_cname_fallback=vals["long_cname_fallback"])
        try:
            zc.settings()
        except PolicyConfigError as exc:
            doc.collect((*path, "ede_text") if "ede_text" in str(exc) else path, str(exc))
            continue
        if src in ("file", "snapshot"):
            base = os.path.dirname(os.path.abspath(doc.file)) if not doc.file.startswith("<") else ""
            full = zc.path if os.path.isabs(zc.path) or not base else os.path.join(base, zc.path)
            if not os.path.isfile(full):
                doc.collect((*path, src), f"{full}: no such file")
        out.append(zc)
    return out


def from_flags(listen: Sequence[str], upstreams: Sequence[str], zones: Sequence[str], allow: Sequence[str], *,
               workers: int = 1, runtime_dir: str | None = None, metrics_listen: str | None = None) -> Config:
    """A configuration from ``serve``'s quick flags (zones in the order given). ConfigErrors on errors."""
    errors: list[ConfigError] = []

    def err(key: str, reason: str) -> None:
        errors.append(ConfigError("<flags>", None, key, reason))

    def eps(flag: str, values: Sequence[str]) -> tuple[Endpoint, ...]:
        out = []
        for v in values:
            try:
                out.append(parse_endpoint(v))
            except ValueError as exc:
                err(flag, str(exc))
        return tuple(out)

    lst = eps("--listen", listen or ["127.0.0.1:53"])
    ups = eps("--upstream", upstreams)
    if not ups:
        err("--upstream", "at least one --upstream ADDR:PORT is required")
    try:
        alw = _prefixes(list(allow)) if allow else ("127.0.0.0/8", "::1/128")
    except ValueError as exc:
        err("--allow", str(exc))
        alw = ()
    if any(p in ("0.0.0.0/0", "::/0") for p in alw):
        err("--allow", "0.0.0.0/0 or ::/0 makes this an open resolver; list the customer prefixes")
    if not zones:
        err("--rpz", "at least one --rpz ZONEFILE is required")
    zcs = []
    for z in zones:
        if not os.path.isfile(z):
            err("--rpz", f"{z}: no such file")
        zcs.append(ZoneConfig(source="file", path=os.path.abspath(z)))
    mlisten = None
    if metrics_listen:
        try:
            mlisten = parse_endpoint(metrics_listen, None)
        except ValueError as exc:
            err("--metrics", str(exc))
    if errors:
        raise ConfigErrors(errors)
    rt = runtime_dir or os.environ.get("RUNTIME_DIRECTORY") or "/run/hotline-edge"
    node = NodeConfig(id=socket.gethostname(), runtime_dir=rt)
    res = ResolverConfig(listen=lst, upstreams=ups, allow=alw, workers=workers, metrics_listen=mlisten)
    return Config(node=node, resolver=res, zones=tuple(zcs))
