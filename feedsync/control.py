"""A small client for the resolver's control socket (docs/contracts.md, "Policy activation").

    <runtime_dir>/control.sock, unix stream, one JSON request per line:
    {"cmd": "reload"}  ->  {"ok": true, "zones": {"<zone>": <serial>, ...}}  |  {"ok": false, "error": "..."}
    {"cmd": "status"}  ->  serials, snapshot age, counters

feedsync only needs ``reload``: after switching ``active.rpz`` it asks the resolver to load, then
checks that the serial the resolver reports for the feed's zone is the one it activated.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import ControlError

MAX_REPLY = 1 << 20


@dataclass(frozen=True, slots=True)
class ReloadReply:
    ok: bool
    zones: dict[str, int]
    error: str = ""

    def serial_of(self, zone: str) -> int | None:
        return self.zones.get(normalize_zone(zone))


def normalize_zone(zone: str) -> str:
    return zone.lower().rstrip(".")


class Reloader(Protocol):
    """The seam activation uses: something that makes the resolver load the active versions."""

    def available(self) -> bool: ...

    def reload(self) -> ReloadReply: ...


class ControlClient:
    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout

    def available(self) -> bool:
        return os.path.exists(self.path)

    def request(self, req: dict[str, Any]) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(self.timeout)
                s.connect(self.path)
                s.sendall(json.dumps(req).encode() + b"\n")
                buf = b""
                while b"\n" not in buf:
                    s.settimeout(max(0.01, deadline - time.monotonic()))
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                    if len(buf) > MAX_REPLY:
                        raise ControlError(f"{self.path}: reply longer than {MAX_REPLY} bytes")
        except OSError as exc:
            raise ControlError(f"{self.path}: control socket: {exc} (is the resolver running?)") from exc
        line = buf.split(b"\n", 1)[0]
        try:
            reply = json.loads(line)
        except ValueError as exc:
            raise ControlError(f"{self.path}: reply is not JSON: {line[:200]!r}") from exc
        if not isinstance(reply, dict):
            raise ControlError(f"{self.path}: reply is not a JSON object")
        return reply

    def reload(self) -> ReloadReply:
        reply = self.request({"cmd": "reload"})
        zones_raw = reply.get("zones") or {}
        zones: dict[str, int] = {}
        if isinstance(zones_raw, dict):
            for k, v in zones_raw.items():
                if isinstance(v, int) and not isinstance(v, bool):
                    zones[normalize_zone(str(k))] = v
        return ReloadReply(bool(reply.get("ok")), zones, str(reply.get("error") or ""))
