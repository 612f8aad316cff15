"""The ``[blocklog]`` configuration section, validated with line-precise errors (``rpz.tomlconf``).

    [blocklog]
    path = "/var/lib/hotline-edge/blocklog.sqlite"      # default: <node.state_dir>/blocklog.sqlite
    queue_size = 100000                 # records each in-memory queue holds before it drops (counted)
    flush_interval_ms = 200             # a record older than this is on disk (WAL, fsync per batch)
    compliance_public_key = "base64 of 32 bytes"   # or a file holding it; seals client addresses
    retention_days = 180                # records older than this are purged (unless a legal hold covers them)
    feed_retention_days = { hotline-tw = 365 }     # per feed (the [[policy.zone]] with feed = NAME)

A ``[blocklog]`` table turns the log on (``enabled = false`` keeps it off); without the table the
resolver logs nothing but its counters. Without ``compliance_public_key`` the records carry no client
address at all (privacy by default: only the hit, never who). Used by the resolver (writer),
``hotline-edge log | retention`` and the admin API (hotline routes, legal holds), so it reads
``[node]`` itself and needs no ``[resolver]`` section.
"""

from __future__ import annotations

import base64
import binascii
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rpz.tomlconf import ConfigDoc, KeyPath

DEFAULT_STATE_DIR = "/var/lib/hotline-edge"
DEFAULT_RUNTIME_DIR = "/run/hotline-edge"
SOCKET_NAME = "blocklog.sock"


@dataclass(frozen=True, slots=True)
class BlocklogConfig:
    enabled: bool
    path: str
    socket_path: str                     # <runtime_dir>/blocklog.sock: data-plane processes ship hits here
    node: str
    queue_size: int = 100_000
    flush_interval_ms: int = 200
    compliance_public_key: bytes | None = None   # raw 32 bytes (X25519)
    retention_days: int = 180
    feed_retention_days: Mapping[str, int] = field(default_factory=dict)

    def retention_for_feed(self, feed: str | None) -> int:
        if feed is not None and feed in self.feed_retention_days:
            return self.feed_retention_days[feed]
        return self.retention_days


KEYS: tuple[str, ...] = ("enabled", "path", "queue_size", "flush_interval_ms", "compliance_public_key",
                         "retention_days", "feed_retention_days")
_INTS = {"queue_size": (1_000, 10_000_000), "flush_interval_ms": (20, 10_000), "retention_days": (1, 3650)}


def decode_public_key(value: str, read: Callable[[str], bytes] | None = None) -> bytes:
    """The 32 raw bytes of an X25519 public key given as base64, or as a file holding the base64
    (``hotline-edge api keygen`` writes ``compliance-x25519.pub``). ValueError says what is wrong."""
    text = value.strip()
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == 32:
        return raw
    if "/" not in text and not os.path.exists(text):
        raise ValueError("expected base64 of a 32-byte X25519 public key (compliance-x25519.pub from "
                         "`hotline-edge api keygen`) or the path of that file")
    reader = read or _read_file
    try:
        data = reader(text).decode("ascii").strip()
        raw = base64.b64decode(data, validate=True)
    except OSError as exc:
        raise ValueError(f"{text}: cannot read the compliance public key: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, binascii.Error, ValueError):
        raise ValueError(f"{text}: not base64 of a 32-byte X25519 public key") from None
    if len(raw) != 32:
        raise ValueError(f"{text}: holds {len(raw)} bytes, an X25519 public key has 32")
    return raw


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def load_blocklog(doc: ConfigDoc, read: Callable[[str], bytes] | None = None) -> BlocklogConfig:
    """Validate ``[blocklog]`` (and the ``[node]`` keys it needs), collecting every error into
    ``doc``; the caller raises them (``doc.raise_collected()``)."""
    node = doc.data.get("node", {})
    node = node if isinstance(node, dict) else {}
    state_dir = _text(node.get("state_dir"), DEFAULT_STATE_DIR)
    runtime_dir = _text(node.get("runtime_dir"), DEFAULT_RUNTIME_DIR)
    node_id = _text(node.get("id"), "") or socket.gethostname()
    raw = doc.data.get("blocklog")
    present = raw is not None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        doc.collect(("blocklog",), "expected a table: [blocklog]")
        raw = {}
    vals: dict[str, Any] = {}
    for key, value in raw.items():
        path: KeyPath = ("blocklog", key)
        if key not in KEYS:
            doc.collect(path, f"unknown key; known: {', '.join(KEYS)}")
        elif key == "enabled":
            if isinstance(value, bool):
                vals[key] = value
            else:
                doc.collect(path, f"expected true or false, got {value!r}")
        elif key in _INTS:
            lo, hi = _INTS[key]
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                doc.collect(path, f"expected a whole number {lo}..{hi}, got {value!r}")
            else:
                vals[key] = value
        elif key == "path":
            if not isinstance(value, str) or not value.strip():
                doc.collect(path, "expected the path of the log database, e.g. "
                                  '"/var/lib/hotline-edge/blocklog.sqlite"')
            else:
                vals[key] = value
        elif key == "compliance_public_key":
            if not isinstance(value, str) or not value.strip():
                doc.collect(path, "expected base64 of the compliance X25519 public key (or its file)")
                continue
            try:
                vals[key] = decode_public_key(value, read)
            except ValueError as exc:
                doc.collect(path, str(exc))
        elif key == "feed_retention_days":
            vals[key] = _feed_days(doc, value)
    file_dir = os.path.dirname(os.path.abspath(doc.file)) if doc.file and not doc.file.startswith("<") else ""
    db_path = vals.get("path") or os.path.join(state_dir, "blocklog.sqlite")
    if not os.path.isabs(db_path) and file_dir:
        db_path = os.path.join(file_dir, db_path)
    return BlocklogConfig(
        enabled=bool(vals.get("enabled", present)), path=db_path,
        socket_path=os.path.join(runtime_dir, SOCKET_NAME), node=node_id,
        queue_size=vals.get("queue_size", 100_000), flush_interval_ms=vals.get("flush_interval_ms", 200),
        compliance_public_key=vals.get("compliance_public_key"), retention_days=vals.get("retention_days", 180),
        feed_retention_days=vals.get("feed_retention_days", {}))


def _text(value: Any, default: str) -> str:
    return value if isinstance(value, str) and value else default


def _feed_days(doc: ConfigDoc, value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        doc.collect(("blocklog", "feed_retention_days"), 'expected a table of feed = days, e.g. '
                                                         '{ hotline-tw = 365 }')
        return {}
    out = {}
    lo, hi = _INTS["retention_days"]
    for feed, days in value.items():
        if not isinstance(days, int) or isinstance(days, bool) or not lo <= days <= hi:
            doc.collect(("blocklog", "feed_retention_days", feed), f"expected a whole number {lo}..{hi} of days, "
                                                                   f"got {days!r}")
        else:
            out[str(feed)] = days
    return out


def check_config(doc: ConfigDoc) -> None:
    """For ``checkconf``: every error of ``[blocklog]`` collected into ``doc``."""
    load_blocklog(doc)
