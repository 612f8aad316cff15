"""Synthetic hits for the blocked-lookup log tests (names under .test, addresses from 198.51.100.0/24)."""

from __future__ import annotations

from resolver.blocklog import DAY_MS, Raw, Template

T0 = 1_790_000_000_000            # 2026-09-21T12:53:20Z
ZONE = "hotline.rpz.test."


def template(order: str | None, name: str = "csam-site.test.", qtype: int = 1, serial: int = 7,
             action: str = "nxdomain", zone: str = ZONE) -> Template:
    return (name, qtype, zone, serial, "QNAME", name + zone, action, order)


TW42 = template("TW-2026-0042")
TW77 = template("TW-2026-0077", "nodata-order.test.", action="nodata")
NO_ORDER = template(None, "ads.example.test.", action="nxdomain")


def raws(day: int, n: int, tpl: Template = TW42, *, transport: str = "udp", start_ms: int = 0) -> list[Raw]:
    """``n`` hits on ``day`` days after T0, one client each."""
    base = T0 + day * DAY_MS + start_ms
    return [(base + i, f"198.51.100.{i % 250 + 1}", 1024 + i, (tpl,), transport) for i in range(n)]
