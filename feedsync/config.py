"""The ``[[feed]]`` sections of the configuration, validated with line-precise errors (rpz.tomlconf).

    [node]                                   # owned by the resolver; feedsync reads id and dirs
    id = "edge-1"
    state_dir = "/var/lib/hotline-edge"
    runtime_dir = "/run/hotline-edge"

    [[feed]]
    name = "twnic"                           # [a-z0-9-], unique
    type = "xfr"                             # RPZ over AXFR/IXFR with TSIG
    zone = "rpz.twnic.test"
    primaries = ["192.0.2.53", "[2001:db8::53]:5353"]
    tsig_name = "edge-key"
    tsig_algorithm = "hmac-sha256"           # hmac-sha256 | hmac-sha384 | hmac-sha512 (weaker refused)
    tsig_secret_file = "/etc/hotline-edge/twnic.tsig"   # or tsig_secret = "base64..."
    notify_listen = "0.0.0.0:5300"

    [[feed]]
    name = "hotline"
    type = "bundle"                          # TUF-signed takedown bundle over HTTPS
    zone = "hotline.rpz.test"
    url = "https://feeds.hotline.test/metadata/"
    trusted_root = "/etc/hotline-edge/hotline-root.json"

Every key is listed in ``KEYS`` with its type and default; docs/feeds.md documents each and a test
checks that the two agree.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rpz.tomlconf import ConfigDoc, ConfigError, KeyPath, load_config, parse_config

from .errors import FeedConfigError

ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512")
WEAK_ALGORITHMS = ("hmac-md5", "hmac-sha1", "hmac-sha224", "hmac-md5.sig-alg.reg.int")
MIN_KEEP_DAYS = 180
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
_HOST = re.compile(r"^([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.?$")


@dataclass(frozen=True, slots=True)
class Primary:
    host: str
    port: int = 53

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class FeedConfig:
    name: str
    type: str                       # "xfr" | "bundle"
    zone: str
    freshness: int = 86400
    max_entries: int = 2_000_000
    max_bytes: int = 512 * 1024 * 1024
    blast_radius: float = 0.25
    blast_min_entries: int = 20
    max_duration_days: int = 400
    protected: tuple[str, ...] = ()
    stop_pages: Mapping[str, str] = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    authorities: tuple[str, ...] = ()
    keep_days: int = MIN_KEEP_DAYS
    receipt_url: str = ""
    ttl: int = 60
    # xfr
    primaries: tuple[Primary, ...] = ()
    tsig_name: str = ""
    tsig_algorithm: str = "hmac-sha256"
    tsig_secret: bytes = b""
    require_zonemd: bool = False
    transfer_timeout: float = 60.0
    notify_listen: str = ""
    refresh_min: int = 30
    refresh_max: int = 86400
    # bundle
    url: str = ""
    targets_url: str = ""
    trusted_root: str = ""
    target: str = "takedowns.json"
    refresh: int = 300
    feed_id: str = ""


@dataclass(frozen=True, slots=True)
class NodeConfig:
    id: str
    state_dir: str
    runtime_dir: str


@dataclass(frozen=True, slots=True)
class Config:
    node: NodeConfig
    feeds: tuple[FeedConfig, ...]
    file: str = "<config>"

    def feed(self, name: str) -> FeedConfig:
        for f in self.feeds:
            if f.name == name:
                return f
        known = ", ".join(f.name for f in self.feeds) or "none configured"
        raise FeedConfigError([f"{self.file}: no [[feed]] named {name!r} (known: {known})"])

    def feed_dir(self, name: str) -> str:
        return os.path.join(self.node.state_dir, "feeds", name)

    @property
    def control_socket(self) -> str:
        return os.path.join(self.node.runtime_dir, "control.sock")


# key -> (types accepted, applies to: "all" | "xfr" | "bundle", required)
KEYS: dict[str, tuple[tuple[type, ...], str, bool]] = {
    "name": ((str,), "all", True),
    "type": ((str,), "all", True),
    "zone": ((str,), "all", True),
    "freshness": ((int,), "all", False),
    "max_entries": ((int,), "all", False),
    "max_bytes": ((int,), "all", False),
    "blast_radius": ((float, int), "all", False),
    "blast_min_entries": ((int,), "all", False),
    "max_duration_days": ((int,), "all", False),
    "protected": ((list,), "all", False),
    "stop_pages": ((dict,), "all", False),
    "categories": ((list,), "all", False),
    "authorities": ((list,), "all", False),
    "keep_days": ((int,), "all", False),
    "receipt_url": ((str,), "all", False),
    "ttl": ((int,), "all", False),
    "primaries": ((list,), "xfr", True),
    "tsig_name": ((str,), "xfr", True),
    "tsig_algorithm": ((str,), "xfr", False),
    "tsig_secret": ((str,), "xfr", False),
    "tsig_secret_file": ((str,), "xfr", False),
    "require_zonemd": ((bool,), "xfr", False),
    "transfer_timeout": ((int, float), "xfr", False),
    "notify_listen": ((str,), "xfr", False),
    "refresh_min": ((int,), "xfr", False),
    "refresh_max": ((int,), "xfr", False),
    "url": ((str,), "bundle", True),
    "targets_url": ((str,), "bundle", False),
    "trusted_root": ((str,), "bundle", True),
    "target": ((str,), "bundle", False),
    "refresh": ((int,), "bundle", False),
    "feed_id": ((str,), "bundle", False),
}


def parse_primary(text: str) -> Primary:
    """``192.0.2.1``, ``192.0.2.1:5353``, ``2001:db8::1``, ``[2001:db8::1]:5353``."""
    t = text.strip()
    port = 53
    m = re.match(r"^\[([^\]]+)\](?::(\d+))?$", t)
    if m:
        host, p = m.group(1), m.group(2)
        port = int(p) if p else 53
    elif t.count(":") == 1:
        host, p = t.split(":")
        port = int(p) if p.isdigit() else -1
    else:
        host = t
    ipaddress.ip_address(host)  # ValueError when not an address
    if not 0 < port < 65536:
        raise ValueError(f"port out of range in {text!r}")
    return Primary(host, port)


def parse_listen(text: str) -> tuple[str, int]:
    p = parse_primary(text)
    return p.host, p.port


def _check_type(doc: ConfigDoc, path: KeyPath, value: Any, types: tuple[type, ...]) -> bool:
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        names = " or ".join("number" if t is float else t.__name__.replace("str", "text").replace("dict", "table")
                            for t in types)
        doc.collect(path, f"must be {names}, not {type(value).__name__}")
    return ok


def _names(doc: ConfigDoc, path: KeyPath, values: list[Any]) -> tuple[str, ...]:
    out = []
    for i, v in enumerate(values):
        if not isinstance(v, str) or not _HOST.match(v.lower()):
            doc.collect((*path, i), f"{v!r} is not a DNS name")
        else:
            out.append(v.lower().rstrip("."))
    return tuple(out)


def _positive(doc: ConfigDoc, path: KeyPath, value: int | float, lo: float = 1) -> None:
    if value < lo:
        doc.collect(path, f"must be at least {lo:g}")


def _feed(doc: ConfigDoc, i: int, raw: Any, read: Callable[[str], bytes]) -> FeedConfig | None:
    base: KeyPath = ("feed", i)
    if not isinstance(raw, dict):
        doc.collect(base, "each [[feed]] must be a table")
        return None
    kind = raw.get("type")
    if kind not in ("xfr", "bundle"):
        doc.collect((*base, "type"), f"type must be \"xfr\" or \"bundle\", not {kind!r}")
        return None
    vals: dict[str, Any] = {}
    for key, value in raw.items():
        spec = KEYS.get(key)
        if spec is None:
            doc.collect((*base, key), f"unknown key (known for type {kind}: "
                                      f"{', '.join(k for k, s in KEYS.items() if s[1] in ('all', kind))})")
            continue
        if spec[1] not in ("all", kind):
            doc.collect((*base, key), f"only for type = \"{spec[1]}\" feeds")
            continue
        if _check_type(doc, (*base, key), value, spec[0]):
            vals[key] = value
    for key, spec in KEYS.items():
        if spec[2] and spec[1] in ("all", kind) and key not in raw:
            doc.collect(base, f"missing required key {key!r}")
    n_err = len(doc.errors)
    out: dict[str, Any] = {"name": vals.get("name", ""), "type": kind}
    if "name" in vals and not _NAME.match(vals["name"]):
        doc.collect((*base, "name"), "use 1-40 of a-z, 0-9 and '-', starting with a letter or digit")
    if "zone" in vals:
        out["zone"] = vals["zone"].lower().rstrip(".")
        if not _HOST.match(out["zone"]):
            doc.collect((*base, "zone"), f"{vals['zone']!r} is not a DNS name")
    for key in ("freshness", "max_entries", "max_bytes", "max_duration_days", "ttl", "refresh",
                "refresh_min", "refresh_max", "transfer_timeout", "blast_min_entries"):
        if key in vals:
            _positive(doc, (*base, key), vals[key], 0 if key == "blast_min_entries" else 1)
            out[key] = vals[key]
    if "blast_radius" in vals:
        if not 0 < vals["blast_radius"] <= 1:
            doc.collect((*base, "blast_radius"), "a share of entries: more than 0, at most 1 (0.25 = 25 %)")
        out["blast_radius"] = float(vals["blast_radius"])
    if "keep_days" in vals:
        if vals["keep_days"] < MIN_KEEP_DAYS:
            doc.collect((*base, "keep_days"), f"versions must be kept at least {MIN_KEEP_DAYS} days")
        out["keep_days"] = vals["keep_days"]
    for key in ("protected",):
        if key in vals:
            out[key] = _names(doc, (*base, key), vals[key])
    for key in ("categories", "authorities"):
        if key in vals:
            if not all(isinstance(v, str) and v for v in vals[key]):
                doc.collect((*base, key), "must be a list of non-empty texts")
            out[key] = tuple(str(v) for v in vals[key])
    if "stop_pages" in vals:
        pages = {}
        for ref, host in vals["stop_pages"].items():
            if not isinstance(host, str) or not _HOST.match(host.lower()):
                doc.collect((*base, "stop_pages", ref), f"{host!r} is not a host name")
            else:
                pages[ref] = host.lower().rstrip(".")
        out["stop_pages"] = pages
    for key in ("receipt_url", "url", "targets_url"):
        if key in vals:
            if vals[key] and not re.match(r"^https?://", vals[key]):
                doc.collect((*base, key), "must be an http:// or https:// URL")
            out[key] = vals[key]
    if kind == "xfr":
        _xfr(doc, base, vals, out, read)
    else:
        _bundle(doc, base, vals, out)
    if len(doc.errors) > n_err or "name" not in vals or "zone" not in vals:
        return None
    return FeedConfig(**out)


def _xfr(doc: ConfigDoc, base: KeyPath, vals: dict[str, Any], out: dict[str, Any],
         read: Callable[[str], bytes]) -> None:
    prims = []
    for j, p in enumerate(vals.get("primaries", [])):
        try:
            prims.append(parse_primary(str(p)))
        except ValueError:
            doc.collect((*base, "primaries", j), f"{p!r} is not an address (192.0.2.1, 192.0.2.1:5353 or "
                                                 "[2001:db8::1]:5353)")
    if "primaries" in vals and not vals["primaries"]:
        doc.collect((*base, "primaries"), "at least one primary is needed")
    out["primaries"] = tuple(prims)
    if "tsig_name" in vals:
        out["tsig_name"] = vals["tsig_name"].lower().rstrip(".")
    alg = vals.get("tsig_algorithm", "hmac-sha256").lower().rstrip(".")
    if alg in WEAK_ALGORITHMS:
        doc.collect((*base, "tsig_algorithm"), f"{alg} is too weak; use hmac-sha256 or stronger (RFC 8945)")
    elif alg not in ALGORITHMS:
        doc.collect((*base, "tsig_algorithm"), f"unknown algorithm {alg!r} (use {', '.join(ALGORITHMS)})")
    out["tsig_algorithm"] = alg
    secret_text = vals.get("tsig_secret")
    if "tsig_secret_file" in vals:
        if secret_text is not None:
            doc.collect((*base, "tsig_secret_file"), "give tsig_secret or tsig_secret_file, not both")
        try:
            secret_text = read(vals["tsig_secret_file"]).decode("ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            doc.collect((*base, "tsig_secret_file"), f"cannot read the secret: {exc}")
            return
    if secret_text is None:
        doc.collect(base, "missing tsig_secret or tsig_secret_file (TSIG is required)")
        return
    try:
        secret = base64.b64decode(secret_text, validate=True)
    except ValueError:
        doc.collect((*base, "tsig_secret_file" if "tsig_secret_file" in vals else "tsig_secret"),
                    "the secret is not base64")
        return
    if len(secret) < 16:
        doc.collect((*base, "tsig_secret_file" if "tsig_secret_file" in vals else "tsig_secret"),
                    f"a {len(secret)}-byte secret is too short (use at least 32 random bytes)")
    out["tsig_secret"] = secret
    if "require_zonemd" in vals:
        out["require_zonemd"] = vals["require_zonemd"]
    if "notify_listen" in vals:
        try:
            parse_listen(vals["notify_listen"])
        except ValueError:
            doc.collect((*base, "notify_listen"), f"{vals['notify_listen']!r} is not ADDRESS:PORT")
        out["notify_listen"] = vals["notify_listen"]


def _bundle(doc: ConfigDoc, base: KeyPath, vals: dict[str, Any], out: dict[str, Any]) -> None:
    for key in ("trusted_root", "target", "feed_id"):
        if key in vals:
            out[key] = vals[key]
    if "trusted_root" in vals and not os.path.isfile(vals["trusted_root"]):
        doc.collect((*base, "trusted_root"), f"{vals['trusted_root']} is not a readable file (the hotline's "
                                             "root.json, delivered out of band)")
    if "target" in vals and (not vals["target"].strip() or vals["target"].startswith("/")):
        doc.collect((*base, "target"), "must name the bundle's target path (relative, e.g. takedowns.json)")


def _node(doc: ConfigDoc) -> NodeConfig:
    raw = doc.data.get("node", {})
    if not isinstance(raw, dict):
        raw = {}
    def text(key: str, default: str) -> str:
        v = raw.get(key)
        return v if isinstance(v, str) and v else default

    return NodeConfig(text("id", socket.gethostname()), text("state_dir", "/var/lib/hotline-edge"),
                      text("runtime_dir", "/run/hotline-edge"))


def validate(doc: ConfigDoc, read: Callable[[str], bytes] | None = None) -> tuple[Config, list[ConfigError]]:
    """Validate the [[feed]] sections of a parsed document; every error, located."""
    reader = read or _read_file
    before = len(doc.errors)
    feeds: list[FeedConfig] = []
    raw = doc.data.get("feed", [])
    if not isinstance(raw, list):
        doc.collect(("feed",), "write each feed as a [[feed]] table")
        raw = []
    names: set[str] = set()
    for i, item in enumerate(raw):
        f = _feed(doc, i, item, reader)
        if f is None:
            continue
        if f.name in names:
            doc.collect(("feed", i, "name"), f"feed name {f.name!r} used twice")
            continue
        names.add(f.name)
        feeds.append(f)
    return Config(_node(doc), tuple(feeds), doc.file), doc.errors[before:]


def check_config(doc: ConfigDoc) -> None:
    """For ``checkconf``: validate the [[feed]] sections when present, every error collected in
    ``doc`` (the same shape as admin_api.config.check_config)."""
    if "feed" in doc.data:
        validate(doc)


def _read_file(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def load(path: str) -> Config:
    """Read and validate; FeedConfigError with every located error."""
    try:
        doc = load_config(path)
    except ConfigError as exc:
        raise FeedConfigError([str(exc)]) from exc
    cfg, errors = validate(doc)
    if errors:
        raise FeedConfigError([str(e) for e in errors])
    return cfg


def loads(text: str, file: str = "<config>") -> Config:
    try:
        doc = parse_config(text.encode("utf-8"), file)
    except ConfigError as exc:
        raise FeedConfigError([str(exc)]) from exc
    cfg, errors = validate(doc)
    if errors:
        raise FeedConfigError([str(e) for e in errors])
    return cfg
