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


# --- a tiny fake of the resolver's control socket (docs/contracts.md) ------------------------------

import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
from collections.abc import Callable  # noqa: E402

import rpz  # noqa: E402
from rpz.snapshot import open_snapshot  # noqa: E402


class FakeResolver:
    """Answers ``{"cmd": "reload"}`` like the resolver: it loads every feed's active.rpz with rpz and
    reports the serials it loaded. ``mode``: "ok", "fail" (ok=false), "stale" (reports the serials
    it had before), "garbage" (not JSON). ``on_reload`` runs before answering."""

    def __init__(self, path: str, zones: dict[str, str]) -> None:
        self.path = path
        self.zones = zones            # zone name -> active.rpz path
        self.mode = "ok"
        self.loaded: dict[str, int] = {}
        self.reloads = 0
        self.on_reload: Callable[[], None] | None = None
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                buf = b""
                while b"\n" not in buf:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    buf += chunk
                try:
                    req = json.loads(buf.split(b"\n")[0])
                except ValueError:
                    continue
                with contextlib.suppress(OSError):   # the client may have been killed meanwhile
                    conn.sendall(self._answer(req))

    def _answer(self, req: dict) -> bytes:
        if req.get("cmd") != "reload":
            return json.dumps({"ok": False, "error": "unknown command"}).encode() + b"\n"
        self.reloads += 1
        if self.on_reload is not None:
            self.on_reload()
        if self.mode == "garbage":
            return b"this is not json\n"
        if self.mode == "fail":
            return json.dumps({"ok": False, "error": "policy failed to load: synthetic failure"}).encode() + b"\n"
        if self.mode == "stale":
            return json.dumps({"ok": True, "zones": self.loaded}).encode() + b"\n"
        loaded = {}
        for zone, path in self.zones.items():
            snap = os.path.join(os.path.dirname(path), "active.snap")
            if os.path.exists(snap):        # what the resolver maps when it exists (docs/contracts.md);
                loaded[zone] = open_snapshot(snap).serial   # active.rpz follows it (snapshot_matches_text)
            elif os.path.exists(path):
                with open(path, "rb") as f:
                    loaded[zone] = rpz.compile_text(f.read(), path, zone).serial
        self.loaded = loaded
        return json.dumps({"ok": True, "zones": loaded}).encode() + b"\n"

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def write_config(path: str, state_dir: str, runtime_dir: str, feeds: list[dict]) -> str:
    """A config.toml with [node] and the given [[feed]] tables (values as TOML literals)."""
    lines = ["[node]", 'id = "edge-test-1"', f'state_dir = "{state_dir}"', f'runtime_dir = "{runtime_dir}"', ""]
    for f in feeds:
        lines.append("[[feed]]")
        for k, v in f.items():
            lines.append(f"{k} = {_toml(v)}")
        lines.append("")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write("\n".join(lines))
    return path


def _toml(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def snapshot_matches_text(feed_dir: str, zone: str) -> int:
    """active.snap (a full snapshot or a delta over its base) decides every rule owner of active.rpz,
    and names under them, exactly as active.rpz compiled from text does. Returns the names checked."""
    text = open(os.path.join(feed_dir, "active.rpz"), "rb").read()  # noqa: SIM115
    a = rpz.Policy([rpz.PolicyZone(rpz.compile_text(text, "text", zone), rpz.ZoneSettings())])
    snap = open_snapshot(os.path.join(feed_dir, "active.snap"))
    assert snap.serial == a.zones[0].zone.serial, "active.snap and active.rpz are different versions"
    b = rpz.Policy([rpz.PolicyZone(snap, rpz.ZoneSettings())])
    names_checked = 0
    for line in text.decode().splitlines():
        if not line or line[0] in "$;@ \t":
            continue
        owner = line.split()[0].lstrip("*.")
        for q in (owner, "x." + owner, "y.z." + owner):
            wire = rpz.names.from_text(q + "." + zone + ".")[: -len(rpz.names.from_text(zone + "."))] + b"\x00"
            da = a.evaluate("192.0.2.1", 1, [rpz.Stage(wire)])
            db = b.evaluate("192.0.2.1", 1, [rpz.Stage(wire)])
            assert (getattr(da, "action", None), getattr(da, "owner", None)) == \
                (getattr(db, "action", None), getattr(db, "owner", None)), q
            names_checked += 1
    return names_checked


def xfr_feed(zone: str, *, tsig_name: str, tsig_secret: str, primaries: str = '["192.0.2.53"]',
             protected: str = "[]") -> Any:
    """A FeedConfig of one xfr feed "t" (values as TOML literals where they are lists)."""
    from feedsync import config as fconfig
    cfg = fconfig.loads(f"""[node]
state_dir = "/nonexistent"
[[feed]]
name = "t"
type = "xfr"
zone = "{zone}"
primaries = {primaries}
tsig_name = "{tsig_name}"
tsig_secret = "{tsig_secret}"
protected = {protected}
""")
    return cfg.feed("t")
