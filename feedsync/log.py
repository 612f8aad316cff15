"""Structured logs: one JSON object per line on stderr (never secrets: no TSIG secret, no key)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

_stream: TextIO | None = None


def set_stream(stream: TextIO | None) -> None:
    global _stream  # noqa: PLW0603 (one process-wide sink, set by the CLI or tests)
    _stream = stream


def log(event: str, level: str = "info", **fields: Any) -> None:
    rec = {"ts": round(time.time(), 3), "level": level, "logger": "feedsync", "event": event}
    rec.update({k: v for k, v in fields.items() if v is not None})
    out = _stream or sys.stderr
    try:
        out.write(json.dumps(rec, default=str, ensure_ascii=False) + "\n")
        out.flush()
    except (OSError, ValueError):
        pass
