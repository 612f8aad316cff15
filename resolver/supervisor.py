"""The resolver's main process: workers, policy reloads, control socket, systemd, metrics.

Lifecycle:

1. With ``[blocklog]`` on, open the blocked-lookup log and its writer thread here (the one writer
   every worker ships its hits to; resolver.blocklog_ship). Start the workers (one per core by
   default; ``workers = 1`` serves from this process unless the log is on: the writer then keeps
   this process to itself). Their sockets are bound at once; until a policy has loaded they answer
   REFUSED (or SERVFAIL, per ``not_ready_rcode``), never unfiltered.
2. Load the policy: zone text is compiled once into snapshots (in a child process when big), every
   worker maps them beside the running policy (prepare); when all succeeded and agree on the
   serials, every worker swaps its reference (commit). Any failure aborts the whole
   reload and the running policy stays. The first success sends READY=1 to systemd.
3. Reload on SIGHUP, ``hotline-edge reload`` or ``{"cmd": "reload"}`` on the control socket
   (docs/contracts.md). A reload re-reads the ``[[policy.zone]]`` list of the configuration file;
   other changes need a restart.
4. WATCHDOG=1 every WatchdogSec/2 while every worker is alive; a worker that dies is replaced (it
   loads the current policy before it binds).
5. SIGTERM or SIGINT: STOPPING=1, workers stop receiving, queries in flight finish, exit 0.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import signal
import time
from typing import TYPE_CHECKING, Any

from rpz.tomlconf import ConfigError, ConfigErrors

from . import mmsg, sdnotify
from .active import compile_snapshots, remove_old_snapshots
from .config import Config, load
from .errors import BlocklogError, PolicyLoadError
from .hits import HitSink
from .logs import Logger
from .metrics import ResolverCollector, merge, serve_metrics
from .workers import InlineLink, ProcessLink, WorkerFailed, WorkerLink

if TYPE_CHECKING:
    from .blocklog_ship import BlocklogWriter

BIG_ZONE_BYTES = 8 * 1024 * 1024   # zone text above this is compiled in a child process


class Supervisor:
    def __init__(self, cfg: Config, log: Logger, sink_spec: str | None = None,
                 env: dict[str, str] | None = None, sink: HitSink | None = None) -> None:
        """``sink_spec`` (``module:factory``) builds each worker's hit sink; ``sink`` is used as is when
        the resolver runs in this process (one worker)."""
        self.cfg = cfg
        self.sink = sink
        self.log = log
        self.sink_spec = sink_spec
        self.env = dict(os.environ if env is None else env)
        self.links: list[WorkerLink] = []
        self.generation = 0
        self.serials: dict[str, int] = {}
        self.loaded_at: float | None = None
        self.reloads = {"ok": 0, "failed": 0}
        self.lock = asyncio.Lock()
        self.stopping = asyncio.Event()
        self.ready = asyncio.Event()
        self.last_stats: dict[str, dict[str, Any]] = {}
        self.control: asyncio.Server | None = None
        self.metrics_server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.worker_cfg = cfg
        self.snapshot_dir = os.path.join(cfg.node.runtime_dir, "policy")
        self.writer: BlocklogWriter | None = None

    # -- running ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Workers up and listening, control socket open, first policy load attempted."""
        n = self.cfg.resolver.effective_workers
        logging_hits = self.cfg.blocklog.enabled and not self.sink_spec and self.sink is None
        if logging_hits:
            from .blocklog import LEAF_HASHING
            from .blocklog_ship import PACKED_DECODING, BlocklogWriter
            self.writer = BlocklogWriter(self.cfg.blocklog, self.log.child("resolver.blocklog")).start()
            self.log("info", "blocklog_open", path=self.cfg.blocklog.path, socket=self.cfg.blocklog.socket_path,
                     head_seq=self.writer.stats.head_seq, sealed=self.cfg.blocklog.compliance_public_key is not None,
                     leaf_hashing=LEAF_HASHING, packed_decoding=PACKED_DECODING)
            if LEAF_HASHING != "openssl":
                self.log("warning", "blocklog_slow_leaf_hashing", hint="resolver._leafhash was not built (no C "
                         "compiler, Python or OpenSSL headers at install time): each record's leaf is hashed "
                         "through hashlib, about 1 us more CPU per record; reinstall with gcc, python3-dev and "
                         "libssl-dev present")
            if PACKED_DECODING != "c":
                self.log("warning", "blocklog_slow_decoding", hint="resolver._packed was not built (no C compiler "
                         "or Python headers at install time): the log writer decodes hits with numpy, about "
                         "0.1 us more CPU per record; reinstall with gcc and python3-dev present")
            if self.cfg.blocklog.compliance_public_key is None:
                self.log("warning", "blocklog_without_client_addresses", hint="no [blocklog] "
                         "compliance_public_key: hits are logged without who asked")
        if n == 1 and not logging_hits:
            self.links = [InlineLink(self.cfg, self.sink_spec, self.log, self.sink)]
        else:
            self.links = [ProcessLink(i, self.cfg, self.sink_spec, self.log) for i in range(n)]
        try:
            await asyncio.gather(*(link.start() for link in self.links))
        except BaseException:
            await self.shutdown(0)
            raise
        for link in self.links:
            if isinstance(link, ProcessLink):
                link.on_exit = self._worker_exited
        self.log("info", "listening", listen=[str(e) for e in self.cfg.resolver.listen], workers=n,
                 upstreams=[str(e) for e in self.cfg.resolver.upstreams],
                 udp_io="recvmmsg/sendmmsg" if mmsg.available() else "recvfrom/sendto")
        if self.cfg.resolver.serve_without_policy:
            self.log("warning", "unfiltered_until_policy", hint="resolver.serve_without_policy = true: queries are "
                     "forwarded unfiltered until the first policy loads; keep it false for court-ordered lists")
        await self._open_control()
        if self.cfg.resolver.metrics_listen is not None:
            extra = []
            if self.writer is not None:
                from .blocklog_ship import BlocklogCollector
                extra.append(BlocklogCollector(self.writer.stats))
            self.metrics_server = await serve_metrics(self.cfg.resolver.metrics_listen,
                                                      ResolverCollector(self.metrics_source), *extra)
            self._spawn(self._poll_stats())
        result = await self.reload("start")
        if not result["ok"]:
            self.log("error", "not_serving", reason="no policy loaded; answering "
                     f"{self.cfg.resolver.not_ready_rcode.upper()} until a reload succeeds", error=result["error"])
        self._spawn(self._watchdog())

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload("SIGHUP")))
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        try:
            await self.start()
        except BlocklogError as exc:
            self.log("error", "blocklog_unavailable", error=str(exc),
                     hint="the blocked-lookup log cannot be opened; fix [blocklog] path / the state directory, "
                          "or set [blocklog] enabled = false to serve without it")
            await self.shutdown(0)
            return 3
        except (OSError, WorkerFailed) as exc:
            self.log("error", "cannot_listen", error=str(exc),
                     hint="another server on the port, or no permission for ports below 1024 "
                          "(CAP_NET_BIND_SERVICE)")
            return 3
        await self.stopping.wait()
        await self.shutdown()
        return 0

    async def shutdown(self, grace: float = 5.0) -> None:
        sdnotify.notify("STOPPING=1", self.env)
        self.log("info", "stopping")
        for t in list(self._tasks):
            t.cancel()
        if self.control is not None:
            self.control.close()
            with contextlib.suppress(OSError):
                os.unlink(self.cfg.control_socket)
        if self.metrics_server is not None:
            self.metrics_server.close()
        await asyncio.gather(*(link.stop(grace) for link in self.links), return_exceptions=True)
        if self.writer is not None:    # after the workers: they ship what they hold as they stop
            await asyncio.get_running_loop().run_in_executor(None, self.writer.close)
            self.log("info", "blocklog_closed", records=self.writer.stats.records, dropped=self.writer.stats.dropped,
                     head_seq=self.writer.stats.head_seq)
            self.writer = None
        self.log("info", "stopped")

    def _spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # -- policy -------------------------------------------------------------------------------
    async def reload(self, reason: str = "control") -> dict[str, Any]:
        """Prepare the policy in every worker, then swap it in all of them; or change nothing."""
        async with self.lock:
            t0 = time.monotonic()
            try:
                cfg = self._fresh_config()
            except (ConfigError, ConfigErrors) as exc:
                return self._failed(reason, f"configuration: {exc}")
            gen = self.generation + 1
            try:   # compile zone text once; every worker maps the snapshots (shared pages)
                worker_cfg = await self._compile(cfg, gen)
            except PolicyLoadError as exc:
                return self._failed(reason, str(exc))
            results = await asyncio.gather(*(link.prepare(gen, worker_cfg) for link in self.links),
                                           return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            oks = [r for r in results if not isinstance(r, BaseException)]
            if not errors and len({json.dumps(r["zones"], sort_keys=True) for r in oks}) > 1:
                errors = [PolicyLoadError("workers loaded different zone versions (a file changed during the "
                                          "reload); reload again")]
            if errors:
                await asyncio.gather(*(link.abort(gen) for link in self.links), return_exceptions=True)
                return self._failed(reason, str(errors[0]))
            loaded_at = time.time()
            await asyncio.gather(*(link.commit(gen, loaded_at) for link in self.links))
            self.generation = gen
            self.cfg = cfg
            self.worker_cfg = worker_cfg
            remove_old_snapshots(self.snapshot_dir, gen)
            self.serials = oks[0]["zones"]
            self.loaded_at = loaded_at
            self.reloads["ok"] += 1
            self.log("info", "policy_active", reason=reason, generation=gen, zones=self.serials,
                     rules=oks[0].get("rules"), rejected=oks[0].get("rejected"),
                     seconds=round(time.monotonic() - t0, 3))
            status = "serving policy " + ", ".join(f"{z} serial {s}" for z, s in self.serials.items())
            if not self.ready.is_set():
                self.ready.set()
                sdnotify.notify("READY=1\nSTATUS=" + status, self.env)
            else:
                sdnotify.notify("STATUS=" + status, self.env)
            return {"ok": True, "zones": self.serials, "generation": gen}

    async def _compile(self, cfg: Config, gen: int) -> Config:
        """Zone text -> snapshots under <runtime_dir>/policy. Big zones are compiled in a child
        process, so neither the queries served here nor this process's memory feel it (a 1M-rule
        zone peaks near 500 MB while compiling; the mapped snapshot is about 60 MB)."""
        loop = asyncio.get_running_loop()
        text_bytes = 0
        for z in cfg.zones:
            path = cfg.zone_path(z)
            if z.source != "snapshot" and not path.endswith(".snap"):
                with contextlib.suppress(OSError):
                    text_bytes += os.path.getsize(path)
        if text_bytes < BIG_ZONE_BYTES:
            return await loop.run_in_executor(None, compile_snapshots, cfg, self.snapshot_dir, gen, self.log)
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            return await loop.run_in_executor(pool, compile_snapshots, cfg, self.snapshot_dir, gen, self.log)

    def _failed(self, reason: str, error: str) -> dict[str, Any]:
        self.reloads["failed"] += 1
        self.log("error", "policy_reload_failed", reason=reason, error=error,
                 keeping=f"generation {self.generation}" if self.generation else "nothing (not serving)")
        return {"ok": False, "error": error}

    def _fresh_config(self) -> Config:
        """The zones to load: re-read from the configuration file when there is one."""
        if not self.cfg.file:
            return self.cfg
        new = load(self.cfg.file)
        import dataclasses
        return dataclasses.replace(self.cfg, zones=new.zones)

    # -- workers, systemd, metrics -----------------------------------------------------------
    def _worker_exited(self, link: ProcessLink) -> None:
        if self.stopping.is_set():
            return
        self.log("error", "worker_died", worker=link.name, exitcode=link.proc.exitcode)
        self._spawn(self._replace(link))

    async def _replace(self, link: ProcessLink) -> None:
        await asyncio.sleep(0.5)  # do not spin if the worker dies at once
        if self.stopping.is_set():
            return
        async with self.lock:
            preload = (self.generation, self.worker_cfg, self.loaded_at or time.time()) if self.generation else None
            try:
                await link.start(preload)
                link.on_exit = self._worker_exited
                self.log("info", "worker_replaced", worker=link.name)
            except (WorkerFailed, OSError) as exc:
                self.log("error", "worker_restart_failed", worker=link.name, error=str(exc))

    async def _watchdog(self) -> None:
        interval = sdnotify.watchdog_interval(self.env)
        if interval is None:
            return
        while True:
            await asyncio.sleep(interval / 2)
            if all(link.alive() for link in self.links):
                sdnotify.notify("WATCHDOG=1", self.env)

    async def _poll_stats(self) -> None:
        while True:
            await self.collect_stats()
            await asyncio.sleep(1.0)

    async def collect_stats(self) -> dict[str, Any]:
        for link in self.links:
            if link.alive():
                with contextlib.suppress(TimeoutError, WorkerFailed, PolicyLoadError):
                    self.last_stats[link.name] = await asyncio.wait_for(link.stats(), 2)
        return merge(self.last_stats.values())

    def policy_state(self) -> dict[str, Any]:
        return {"zones": dict(self.serials), "loaded_at": self.loaded_at, "reloads": dict(self.reloads),
                "ready": self.ready.is_set(), "workers": sum(1 for link in self.links if link.alive()),
                "generation": self.generation}

    def metrics_source(self) -> tuple[dict[str, Any], dict[str, Any]]:
        if len(self.links) == 1 and isinstance(self.links[0], InlineLink):
            self.last_stats = {"inline": self.links[0].service.stats()}
        return merge(self.last_stats.values()), self.policy_state()

    # -- control socket -------------------------------------------------------------------------
    async def _open_control(self) -> None:
        path = self.cfg.control_socket
        try:
            os.makedirs(os.path.dirname(path), mode=0o750, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            self.control = await asyncio.start_unix_server(self._control_client, path)
            os.chmod(path, 0o660)
        except OSError as exc:
            self.log("warning", "no_control_socket", path=path, error=str(exc),
                     hint="reload with SIGHUP instead, or set resolver.control_socket / node.runtime_dir")

    async def _control_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    req = json.loads(line)
                    cmd = req.get("cmd") if isinstance(req, dict) else None
                except ValueError:
                    cmd = None
                if cmd == "reload":
                    resp = await self.reload("control")
                elif cmd == "status":
                    resp = await self.status()
                else:
                    resp = {"ok": False, "error": "unknown request; send one JSON object per line: "
                                                  '{"cmd": "reload"} or {"cmd": "status"}'}
                writer.write(json.dumps(resp).encode() + b"\n")
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def status(self) -> dict[str, Any]:
        m = await self.collect_stats() if not isinstance(self.links[0], InlineLink) else merge(
            [self.links[0].service.stats()])
        p = self.policy_state()
        return {"ok": True, "ready": p["ready"], "generation": p["generation"], "zones": p["zones"],
                "loaded_at": p["loaded_at"],
                "snapshot_age_s": round(time.time() - p["loaded_at"], 3) if p["loaded_at"] else None,
                "workers": p["workers"], "reloads": p["reloads"],
                "counters": {"queries": sum(m["responses"].values()), "hits": sum(m["hits"].values()),
                             "cache_entries": m["cache"]["entries"]}}
