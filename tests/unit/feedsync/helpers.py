"""Synthetic takedown entries and configs for feedsync tests (names under .test only)."""

from __future__ import annotations

from typing import Any

from feedsync.bundle import format_time

T0 = 1_795_000_000  # 2026-11-18T...Z, a fixed "now" for pure tests
DAY = 86400


def entry(n: int | str, target: str | None = None, **over: Any) -> dict[str, Any]:
    e: dict[str, Any] = {
        "entry_id": f"E-{n}", "order_ref": f"TW-2026-{n:0>4}" if isinstance(n, int) else f"TW-{n}",
        "issuing_authority": "Synthetic Court of Example", "legal_basis": "Example Act art. 8",
        "category": "fraud", "target": target or f"site{n}.bad.test", "match": "exact", "action": "nxdomain",
        "stop_page": "", "issued_at": format_time(T0 - DAY), "effective_at": format_time(T0 - 3600),
        "expires_at": format_time(T0 + 30 * DAY), "appeal_contact": "appeals@hotline.test",
        "retention_days": 180,
    }
    e.update(over)
    return e
