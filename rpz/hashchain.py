"""Hash chains for tamper-evident, append-only records (feed audit, blocked-lookup log,
compliance audit). Pure functions; each store owns its own table and calls these.

    link_i = SHA-256(link_{i-1} || SHA-256(canonical(record_i)))       link_{-1} = GENESIS

Changing, removing or reordering any record breaks every later link; ``verify`` names the first
broken one. A purge that deletes old records keeps the link of the last deleted record as the new
anchor, so what remains still verifies.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = bytes(32)


def canonical(record: Mapping[str, Any]) -> bytes:
    """Deterministic bytes of a JSON-like record (sorted keys, no whitespace, UTF-8)."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode("utf-8")


def link(prev: bytes, payload: bytes) -> bytes:
    return hashlib.sha256(prev + hashlib.sha256(payload).digest()).digest()


@dataclass(frozen=True, slots=True)
class ChainCheck:
    ok: bool
    checked: int
    first_bad: int | None = None
    reason: str = ""
    head: bytes = GENESIS

    def __str__(self) -> str:
        if self.ok:
            return f"chain intact: {self.checked} records, head {self.head.hex()[:16]}"
        return f"chain broken at record {self.first_bad}: {self.reason} ({self.checked} verified before it)"


def verify(entries: Iterable[tuple[Any, bytes, bytes]], anchor: bytes = GENESIS) -> ChainCheck:
    """Check (id, payload, stored link) triples in order, starting from ``anchor``."""
    prev = anchor
    n = 0
    for ident, payload, stored in entries:
        expect = link(prev, payload)
        if expect != stored:
            return ChainCheck(False, n, ident, "stored link does not match the record and its predecessor",
                              prev)
        prev = stored
        n += 1
    return ChainCheck(True, n, head=prev)
