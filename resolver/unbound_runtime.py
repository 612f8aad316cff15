"""What the Unbound plugin does beside answering queries: load the policy, swap it, and be told to.

Runs in threads of the Unbound process (pythonmod releases the interpreter lock between module
calls, so they make progress while Unbound serves):

    loader      reads the configuration (the resolver's own file, ``[[policy.zone]]`` in order),
                compiles zone text into snapshots (big zones in a child process, so Unbound's memory
                never holds a compiler's peak), maps them, and swaps ONE reference in the engine
    watcher     every ``WATCH_INTERVAL_S`` compares the configuration file and every zone source
                (a feed's ``active.snap`` is replaced by rename, so its inode changes) with what was
                loaded, and reloads on a difference
    control     ``<runtime_dir>/control.sock``, the resolver's protocol (docs/contracts.md): one JSON
                request per line, ``{"cmd": "reload"}`` -> ``{"ok": true, "zones": {...}}`` and
                ``{"cmd": "status"}``; so ``hotline-edge reload`` and feedsync work unchanged

Queries are never held for a reload: the new policy is built beside the old one, then the engine's
reference is replaced in one assignment. A query reads the reference once and finishes on it.
A failed load keeps the running policy (or none: queries are then refused, never unfiltered).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from rpz.tomlconf import ConfigError, ConfigErrors, load_config

from . import sdnotify
from .active import build_policy, remove_old_snapshots, sources_of
from .config import Config, validate
from .errors import PolicyLoadError, ResolverError
from .unbound_glue import Engine

WATCH_INTERVAL_S = 0.25
TALLY_INTERVAL_S = 0.25
FLUSH_DEADLINE_S = 5.0
PRUNE_INTERVAL_S = 30.0
RETRY_INTERVAL_S = 5.0          # with no policy loaded, try again this often even without a change
BIG_ZONE_BYTES = 8 * 1024 * 1024
MAX_REQUEST = 4096
Log = Callable[..., None]


def load_plugin_config(path: str) -> Config:
    """The resolver's configuration file as the plugin needs it: Unbound resolves, so no upstreams
    are demanded (``require_resolver=False``), but there must be policy zones to enforce."""
    doc = load_config(path)
    cfg = validate(doc, require_resolver=False)
    if not cfg.zones:
        raise ConfigError(path, None, "policy",
                          "no [[policy.zone]] configured: there is nothing for the Unbound plugin to enforce")
    return cfg


def signature(cfg: Config) -> tuple[tuple[str, int, int, int], ...]:
    """What a reload depends on: the configuration file and each zone's current source file."""
    paths = ([cfg.file] if cfg.file else []) + [cfg.zone_path(z) for z in cfg.zones]
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((os.path.abspath(p), st.st_ino, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((os.path.abspath(p), -1, -1, -1))
    return tuple(out)


class Runtime:
    """Loads, swaps and reports the policy of one Unbound process."""

    def __init__(self, config_path: str, engine: Engine, log: Log, *, python: str | None = None,
                 watch_interval: float = WATCH_INTERVAL_S) -> None:
        self.config_path = config_path
        self.engine = engine
        self.log = log
        self.python = python or venv_python()
        self.watch_interval = watch_interval
        self.flush_target: tuple[str, int] | None = None
        # called once, with the first configuration that loads, before any policy takes effect
        self.on_config: Callable[[Config], None] | None = None
        self.cfg: Config | None = None
        self.generation = 0
        self.serials: dict[str, int] = {}
        self.loaded_at = 0.0
        self.loaded_sig: tuple[tuple[str, int, int, int], ...] = ()
        self.tried_sig: tuple[tuple[str, int, int, int], ...] | None = None
        self.tried_at = 0.0
        self.reloads = {"ok": 0, "failed": 0}
        self.last_error = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: socket.socket | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Load the first policy (failures are logged: queries are refused until a load works),
        then start the watcher and the control socket."""
        self.reload("start")
        self._spawn(self._watch, "hotline-edge-watch")
        self._spawn(self._tally, "hotline-edge-tally")
        sock = self.control_path()
        if sock:
            try:
                self._server = listen_unix(sock)
            except OSError as exc:
                self.log("error", "control_socket_failed", path=sock, error=str(exc),
                         hint="the runtime directory must exist and be writable by Unbound's user")
            else:
                self._spawn(self._serve, "hotline-edge-control")

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            path = self.control_path()
            with contextlib.suppress(OSError):
                self._server.close()
            if path:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()
        self.engine.count_served()

    def control_path(self) -> str:
        return self.cfg.control_socket if self.cfg is not None else ""

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    # -- loading -----------------------------------------------------------------------------
    def reload(self, reason: str) -> dict[str, Any]:
        """Build the policy of the configuration as it is now and swap it in; or change nothing."""
        with self._lock:
            t0 = time.monotonic()
            try:
                cfg = load_plugin_config(self.config_path)
            except (ConfigError, ConfigErrors) as exc:
                return self._failed(reason, f"configuration: {exc}", None)
            except OSError as exc:
                return self._failed(reason, f"{self.config_path}: {exc.strerror}", None)
            if self.cfg is None:
                if self.on_config is not None:       # the first configuration: the hit sink opens here
                    try:
                        self.on_config(cfg)
                    except ResolverError as exc:
                        return self._failed(reason, str(exc), None)
                self.cfg = cfg
            sig = signature(cfg)
            gen = self.generation + 1
            snapdir = os.path.join(cfg.node.runtime_dir, "unbound-policy")
            try:
                mapped = self._compile(cfg, snapdir, gen)
                policy, loads = build_policy(mapped, self.log)
            except PolicyLoadError as exc:
                return self._failed(reason, str(exc), sig)
            expired = self._expire_vetted(policy)
            loaded_at = time.time()
            self.engine.swap(policy, gen, loaded_at, sources_of(cfg))
            self.engine.vetting.end_swap()
            remove_old_snapshots(snapdir, gen)
            self.cfg = cfg
            self.generation = gen
            self.serials = policy.serials()
            self.loaded_at = loaded_at
            self.loaded_sig = self.tried_sig = sig
            self.reloads["ok"] += 1
            self.last_error = ""
            self.log("info", "policy_active", reason=reason, generation=gen, zones=self.serials,
                     rules=sum(z.rules for z in loads), rejected=sum(z.rejected for z in loads),
                     cached_answers_expired=expired, seconds=round(time.monotonic() - t0, 3))
            sdnotify.notify("STATUS=hotline-edge policy " + ", ".join(f"{z} serial {s}"
                                                                       for z, s in self.serials.items()))
            return {"ok": True, "zones": self.serials, "generation": gen}

    def _expire_vetted(self, policy: Any) -> int:
        """Before ``policy`` takes effect: the answers Unbound serves from its cache on its own that
        ``policy`` would hit are expired there (by a worker thread, asked with a flush query)."""
        vetting = self.engine.vetting
        n = vetting.begin_swap(policy, time.monotonic())
        deadline = time.monotonic() + FLUSH_DEADLINE_S
        while vetting.queue and time.monotonic() < deadline:
            if not self._send_flush():
                break
        if vetting.queue:
            self.log("error", "cached_answers_not_expired", left=len(vetting.queue), target=str(self.flush_target),
                     effect="until client queries let the plugin expire them, Unbound may serve these "
                            "cached answers without the new policy (at most their TTL)",
                     hint="Unbound must answer on 127.0.0.1 or ::1 (interface, access-control)")
        return n

    def _send_flush(self) -> bool:
        """One flush request to Unbound (a query the plugin answers after expiring a chunk)."""
        if self.flush_target is None:
            return False
        host, port = self.flush_target
        qid = int.from_bytes(os.urandom(2), "big")
        pkt = (qid.to_bytes(2, "big") + bytes.fromhex("01000001000000000000") + self.engine.flush_name
               + bytes.fromhex("00100001"))       # RD=1, one question: TXT IN
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(fam, socket.SOCK_DGRAM) as s:
            s.settimeout(1.0)
            for _ in range(3):
                try:
                    s.sendto(pkt, (host, port))
                    while s.recv(4096)[:2] != pkt[:2]:
                        pass
                    return True
                except TimeoutError:
                    continue
                except OSError:
                    return False
        return False

    def _failed(self, reason: str, error: str, sig: tuple[tuple[str, int, int, int], ...] | None) -> dict[str, Any]:
        self.reloads["failed"] += 1
        self.last_error = error
        self.tried_sig = sig
        self.tried_at = time.monotonic()
        self.log("error", "policy_reload_failed", reason=reason, error=error,
                 keeping=f"generation {self.generation}" if self.generation else "nothing (queries are refused)")
        return {"ok": False, "error": error}

    def _compile(self, cfg: Config, snapdir: str, gen: int) -> Config:
        """Zone text -> snapshots (a child process for big zones); snapshots are used as they are."""
        zones = []
        for i, z in enumerate(cfg.zones):
            path = cfg.zone_path(z)
            if z.source == "snapshot" or path.endswith(".snap"):
                zones.append(z)
                continue
            try:
                size = os.path.getsize(path)
            except OSError:
                size = 0
            if size < BIG_ZONE_BYTES:
                zones.append(z)      # small: build_policy compiles it here
                continue
            os.makedirs(snapdir, mode=0o750, exist_ok=True)
            out = os.path.join(snapdir, f"gen{gen}-zone{i}.snap")
            self._compile_child(path, out, z.origin)
            zones.append(dataclasses.replace(z, source="snapshot", path=out))
        return dataclasses.replace(cfg, zones=tuple(zones))

    def _compile_child(self, path: str, out: str, origin: str | None) -> None:
        argv = [self.python, "-c", "import sys; from admin_api.cli import main; sys.exit(main())",
                "rpz", "compile", path, "-o", out] + (["--origin", origin] if origin else [])
        t0 = time.monotonic()
        try:
            r = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=3600,
                               env=dict(os.environ, PYTHONNOUSERSITE="1"))
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PolicyLoadError(f"{path}: cannot compile in a child process ({self.python}): {exc}") from exc
        if r.returncode not in (0, 1) or not os.path.exists(out):   # 1: compiled, some records rejected
            raise PolicyLoadError(f"{path}: compile failed in a child process ({self.python}, exit "
                                  f"{r.returncode}): {(r.stderr or r.stdout).strip()[-500:]}")
        self.log("info", "zone_compiled", file=path, snapshot=out, seconds=round(time.monotonic() - t0, 3),
                 summary=r.stdout.strip()[-300:])

    # -- watching ----------------------------------------------------------------------------
    def _watch(self) -> None:
        pruned = time.monotonic()
        while not self._stop.wait(self.watch_interval):
            try:
                self.check()
                if time.monotonic() - pruned > PRUNE_INTERVAL_S:
                    pruned = time.monotonic()
                    self.engine.vetting.prune(pruned)
            except Exception as exc:   # the watcher must outlive any one failure
                self.log("error", "watch_failed", error=repr(exc))

    def _tally(self) -> None:
        """Count the policy answers Unbound served from its cache (not in the watcher: a reload
        may keep that busy for a while, and the list would grow meanwhile)."""
        while not self._stop.wait(TALLY_INTERVAL_S):
            try:
                self.engine.count_served()
            except Exception as exc:
                self.log("error", "tally_failed", error=repr(exc))

    def check(self) -> dict[str, Any] | None:
        """Reload when a source changed since the last attempt (or, with nothing loaded, every
        RETRY_INTERVAL_S). Returns the reload's reply, or None when nothing was done."""
        cfg = self.cfg
        if cfg is None:
            if time.monotonic() - self.tried_at >= RETRY_INTERVAL_S:
                return self.reload("retry")
            return None
        sig = signature(cfg)
        if sig in (self.loaded_sig, self.tried_sig):
            if self.generation == 0 and time.monotonic() - self.tried_at >= RETRY_INTERVAL_S:
                return self.reload("retry")
            return None
        return self.reload("watch")

    # -- control socket ----------------------------------------------------------------------
    def _serve(self) -> None:
        server = self._server
        assert server is not None
        server.settimeout(0.5)
        while not self._stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), name="hotline-edge-control-client",
                             daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            buf = b""
            try:
                while not self._stop.is_set():
                    while b"\n" not in buf:
                        chunk = conn.recv(4096)
                        if not chunk:
                            return
                        buf += chunk
                        if len(buf) > MAX_REQUEST:
                            return
                    line, buf = buf.split(b"\n", 1)
                    conn.sendall(json.dumps(self.handle(line)).encode() + b"\n")
            except OSError:
                return

    def handle(self, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
            cmd = req.get("cmd") if isinstance(req, dict) else None
        except ValueError:
            cmd = None
        if cmd == "reload":
            return self.reload("control")
        if cmd == "status":
            return self.status()
        return {"ok": False, "error": 'unknown request; send one JSON object per line: {"cmd": "reload"} '
                                      'or {"cmd": "status"}'}

    def status(self) -> dict[str, Any]:
        self.engine.count_served()
        c = self.engine.counters
        return {"ok": True, "ready": self.generation > 0, "mode": "unbound_plugin", "generation": self.generation,
                "zones": self.serials, "loaded_at": self.loaded_at or None,
                "snapshot_age_s": round(time.time() - self.loaded_at, 3) if self.loaded_at else None,
                "reloads": dict(self.reloads), "last_error": self.last_error or None,
                "vetted": {"answers": len(self.engine.vetting.entries), "total": self.engine.vetting.vetted,
                           "expired": self.engine.vetting.invalidated},
                "counters": {"queries": c.queries, "hits": c.total_hits(), **c.as_dict()},
                **self._blocklog_status()}

    def _blocklog_status(self) -> dict[str, Any]:
        stats = getattr(self.engine.sink, "stats", None)     # the blocked-lookup log writer's
        if stats is None:
            return {}
        return {"blocklog": {"records": stats.records, "dropped": stats.dropped, "write_errors": stats.write_errors,
                             "head_seq": stats.head_seq, "last_commit": stats.last_commit or None}}


def listen_unix(path: str) -> socket.socket:
    """A unix stream socket at ``path`` (a stale file from an earlier run is replaced), mode 0660."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(path)
        os.chmod(path, 0o660)
        s.listen(16)
    except OSError:
        s.close()
        raise
    return s


def venv_python() -> str:
    """The interpreter of the environment our package is installed in (not Unbound's binary)."""
    here = os.path.dirname(os.path.abspath(__file__))
    prefix = os.environ.get("HOTLINE_EDGE_VENV") or sys.prefix
    for cand in (os.path.join(prefix, "bin", "python3"), os.path.join(prefix, "bin", "python")):
        if os.access(cand, os.X_OK) and not cand.endswith("unbound"):
            return cand
    repo_venv = os.path.join(os.path.dirname(here), ".venv", "bin", "python")
    return repo_venv if os.access(repo_venv, os.X_OK) else "/usr/bin/python3"


def checkconf(path: str) -> list[str]:
    """Every problem of ``path`` for a node whose policy runs inside Unbound: the resolver's sections
    without upstreams (Unbound resolves), at least one policy zone, and feedsync's and the admin API's
    sections as ``hotline-edge checkconf`` checks them. Empty when the file is fine."""
    from .cli import other_section_errors
    errors: list[str] = []
    try:
        load_plugin_config(path)
    except ConfigErrors as exc:
        errors.extend(str(e) for e in exc.errors)
    except ConfigError as exc:
        errors.append(str(exc))
        return errors
    except OSError as exc:
        return [f"{path}: {exc.strerror}"]
    errors.extend(other_section_errors(load_config(path)))
    return errors


def main(argv: list[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(
        prog="python -m resolver.unbound_runtime",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Check the configuration file the Unbound plugin reads (hotline_edge_mode: unbound_plugin).\n\n"
                    "Like `hotline-edge checkconf`, but Unbound resolves, so [resolver] upstreams are not\n"
                    "required; at least one [[policy.zone]] is. Exit codes as hotline-edge checkconf: 0 ok, 2 the\n"
                    "file has problems (one per line on stderr).\n\n"
                    "example:\n  /opt/hotline-edge/venv/bin/python -m resolver.unbound_runtime checkconf "
                    "/etc/hotline-edge/config.toml")
    ap.add_argument("command", choices=["checkconf"])
    ap.add_argument("file")
    a = ap.parse_args(argv)
    errors = checkconf(a.file)
    for e in errors:
        print(e, file=sys.stderr)
    if not errors:
        print(f"{a.file}: ok (Unbound plugin)")
    return 2 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
