"""The ``[api]`` configuration section, validated with line-precise errors (``rpz.tomlconf``).

    [api]
    listen = "127.0.0.1:8080"                 # loopback by default; put TLS in front for remote use
    database = "/var/lib/hotline-edge/compliance.sqlite"   # default: <node.state_dir>/compliance.sqlite
    isp_name = "Example Broadband"
    jurisdiction = "HK"                       # instruments must be issued here (WRONG_JURISDICTION)
    case_prefix = "HE"                        # case ids look like HE-2026-000001
    signing_key = "/etc/hotline-edge/keys/package-ed25519.pem"     # Ed25519, PKCS#8 PEM
    compliance_private_key = "/etc/hotline-edge/keys/compliance-x25519.key"  # opens blocked-lookup addresses
    cgnat_pools = ["203.0.113.0/24"]          # shared public IPv4: queries need port + protocol
    session_retention_days = 365              # older session records are NO_DATA
    emergency_followup_hours = 48             # follow-up instrument due after an emergency release
    followup_reminder_hours = 12              # FOLLOWUP_DUE this long before the deadline
    token_max_ttl_days = 90
    argon2_time_cost = 3                      # token hashing cost (argon2id)
    argon2_memory_kib = 65536
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, fields
from typing import Any

from rpz.tomlconf import ConfigDoc, KeyPath

from .model import IPNetwork

DEFAULT_STATE_DIR = "/var/lib/hotline-edge"


@dataclass(frozen=True, slots=True)
class ApiConfig:
    database: str
    listen: str = "127.0.0.1:8080"
    isp_name: str = "Example Broadband"
    jurisdiction: str = "HK"
    case_prefix: str = "HE"
    signing_key: str | None = None
    compliance_private_key: str | None = None
    cgnat_pools: tuple[IPNetwork, ...] = ()
    session_retention_days: int = 365
    emergency_followup_hours: int = 48
    followup_reminder_hours: int = 12
    token_max_ttl_days: int = 90
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536

    @property
    def host_port(self) -> tuple[str, int]:
        return split_listen(self.listen)


KEYS = tuple(f.name for f in fields(ApiConfig))


def split_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:8080 or [::1]:8080)")
    return host.strip("[]"), int(port)


_INTS = {"session_retention_days": (1, 3650), "emergency_followup_hours": (1, 24 * 30),
         "followup_reminder_hours": (0, 24 * 30), "token_max_ttl_days": (1, 3650),
         "argon2_time_cost": (1, 20), "argon2_memory_kib": (8, 4 * 1024 * 1024)}
_STRS = ("listen", "database", "isp_name", "jurisdiction", "case_prefix", "signing_key", "compliance_private_key")


def load_api_config(doc: ConfigDoc) -> ApiConfig:
    """Validate ``[api]`` (collecting every error into ``doc``); raises ConfigErrors if any."""
    section = doc.data.get("api", {})
    node = doc.data.get("node", {})
    if not isinstance(section, dict):
        doc.collect(("api",), "must be a table")
        doc.raise_collected()
    values: dict[str, Any] = {}
    for key, value in section.items():
        path: KeyPath = ("api", key)
        if key not in KEYS:
            doc.collect(path, f"unknown key (known: {', '.join(KEYS)})")
        elif key in _INTS:
            lo, hi = _INTS[key]
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                doc.collect(path, f"must be a whole number in {lo}..{hi}")
            else:
                values[key] = value
        elif key == "cgnat_pools":
            values[key] = _pools(doc, value)
        elif key in _STRS:
            if not isinstance(value, str) or not value.strip():
                doc.collect(path, "must be a non-empty string")
            else:
                values[key] = value
    if "listen" in values:
        try:
            split_listen(values["listen"])
        except ValueError as exc:
            doc.collect(("api", "listen"), str(exc))
    if "case_prefix" in values and not values["case_prefix"].isalnum():
        doc.collect(("api", "case_prefix"), "letters and digits only")
    if values.get("followup_reminder_hours", 12) >= values.get("emergency_followup_hours", 48):
        doc.collect(("api", "followup_reminder_hours"), "must be shorter than emergency_followup_hours")
    state_dir = node.get("state_dir", DEFAULT_STATE_DIR) if isinstance(node, dict) else DEFAULT_STATE_DIR
    values.setdefault("database", os.path.join(str(state_dir), "compliance.sqlite"))
    doc.raise_collected()
    return ApiConfig(**values)


def _pools(doc: ConfigDoc, value: Any) -> tuple[IPNetwork, ...]:
    if not isinstance(value, list):
        doc.collect(("api", "cgnat_pools"), "must be a list of prefixes, e.g. [\"203.0.113.0/24\"]")
        return ()
    out = []
    for n, item in enumerate(value):
        try:
            net = ipaddress.ip_network(str(item), strict=True)
        except ValueError as exc:
            doc.collect(("api", "cgnat_pools", n), f"not a prefix: {exc}")
            continue
        if net.version != 4:
            doc.collect(("api", "cgnat_pools", n), "CGNAT pools are IPv4")
            continue
        out.append(net)
    return tuple(out)


def check_config(doc: ConfigDoc) -> None:
    """For ``checkconf``: validate [api] when present, reporting every error."""
    if "api" in doc.data:
        load_api_config(doc)
