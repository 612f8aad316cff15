"""Structured logs: one JSON object per line on stderr (journald stores them as they are).

    log = Logger("resolver")
    log("info", "policy_loaded", generation=3, zones={"hotline.rpz.test.": 2026112201})
    # {"ts": "2026-11-22T10:00:00.123Z", "level": "info", "component": "resolver", "event": "policy_loaded", ...}

Never pass secrets as fields: there is no redaction layer, by design nothing secret reaches here.
Each line starts with the sd-daemon priority prefix when ``journald_prefix`` is set, so journald
files errors as errors.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

_PRIORITY = {"debug": 7, "info": 6, "notice": 5, "warning": 4, "error": 3, "critical": 2}


class Logger:
    __slots__ = ("component", "journald_prefix", "min_level", "stream")

    def __init__(self, component: str, stream: TextIO | None = None, min_level: str = "info",
                 journald_prefix: bool = False) -> None:
        self.component = component
        self.stream = stream
        self.min_level = _PRIORITY[min_level]
        self.journald_prefix = journald_prefix

    def __call__(self, level: str, event: str, **fields: Any) -> None:
        prio = _PRIORITY.get(level, 6)
        if prio > self.min_level:
            return
        now = time.time()
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
        rec = {"ts": ts, "level": level, "component": self.component, "event": event, **fields}
        line = json.dumps(rec, default=str, separators=(",", ":"))
        if self.journald_prefix:
            line = f"<{prio}>{line}"
        stream = self.stream or sys.stderr
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass

    def child(self, component: str) -> Logger:
        return Logger(component, self.stream, _name(self.min_level), self.journald_prefix)


def _name(prio: int) -> str:
    return next(k for k, v in _PRIORITY.items() if v == prio)
