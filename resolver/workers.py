"""Worker links: how the supervisor talks to a data-plane process.

``InlineLink`` drives a ResolverService in the supervisor's own process (``workers = 1``);
``ProcessLink`` drives one in a worker process (spawned, SO_REUSEPORT sockets of its own) over a
pipe carrying small dicts:

    -> {"id": 7, "op": "prepare", "generation": 3, "config": Config}
    <- {"id": 7, "ok": true, "zones": {...}, "seconds": 0.4}
    -> {"id": 8, "op": "commit", "generation": 3, "loaded_at": 1795000000.1}
    -> {"id": 9, "op": "stats"}       -> {"id": 9, "ok": true, "stats": {...}}
    -> {"id": 10, "op": "stop", "grace": 5}

A worker started to replace one that died loads the current policy before it binds its sockets,
so it never answers without a policy once the node is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
from multiprocessing.connection import Connection
from typing import Any, Protocol

from .config import Config
from .errors import PolicyLoadError
from .hits import HitSink
from .logs import Logger
from .service import ResolverService, make_sink, tune_collector


class WorkerLink(Protocol):
    name: str

    async def start(self, preload: tuple[int, Config, float] | None = None) -> None: ...
    async def prepare(self, generation: int, cfg: Config) -> dict[str, Any]: ...
    async def commit(self, generation: int, loaded_at: float) -> None: ...
    async def abort(self, generation: int) -> None: ...
    async def stats(self) -> dict[str, Any]: ...
    async def stop(self, grace: float) -> None: ...
    def alive(self) -> bool: ...


class InlineLink:
    def __init__(self, cfg: Config, sink_spec: str | None, log: Logger, sink: HitSink | None = None) -> None:
        self.name = "inline"
        self.service = ResolverService(cfg, sink if sink is not None else make_sink(sink_spec, cfg), log)

    async def start(self, preload: tuple[int, Config, float] | None = None) -> None:
        await self.service.start()

    async def prepare(self, generation: int, cfg: Config) -> dict[str, Any]:
        return await self.service.prepare(generation, cfg)

    async def commit(self, generation: int, loaded_at: float) -> None:
        self.service.commit(generation, loaded_at)

    async def abort(self, generation: int) -> None:
        self.service.abort(generation)

    async def stats(self) -> dict[str, Any]:
        return self.service.stats()

    async def stop(self, grace: float) -> None:
        await self.service.stop(grace)

    def alive(self) -> bool:
        return True


class WorkerFailed(Exception):
    pass


class ProcessLink:
    def __init__(self, index: int, cfg: Config, sink_spec: str | None, log: Logger) -> None:
        self.index = index
        self.name = f"worker-{index}"
        self.cfg = cfg
        self.sink_spec = sink_spec
        self.log = log
        self.proc: Any = None
        self.conn: Connection | None = None
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.next_id = 0
        self.started: asyncio.Future[dict[str, Any]] | None = None
        self.on_exit: Any = None

    async def start(self, preload: tuple[int, Config, float] | None = None) -> None:
        loop = asyncio.get_running_loop()
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker_main, name=f"hotline-edge-{self.name}",
                                args=(child, self.cfg, self.index, self.sink_spec, preload), daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent
        self.started = loop.create_future()
        loop.add_reader(parent.fileno(), self._readable)
        loop.add_reader(self.proc.sentinel, self._exited)
        msg = await self.started
        if not msg.get("ok"):
            raise WorkerFailed(f"{self.name}: {msg.get('error')}")

    def _readable(self) -> None:
        assert self.conn is not None
        try:
            msg = self.conn.recv()
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
            return
        if msg.get("event") == "started":
            if self.started is not None and not self.started.done():
                self.started.set_result(msg)
            return
        fut = self.pending.pop(msg.get("id", -1), None)
        if fut is not None and not fut.done():
            fut.set_result(msg)

    def _exited(self) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(self.proc.sentinel)
        if self.conn is not None:
            with contextlib.suppress(OSError, ValueError):
                loop.remove_reader(self.conn.fileno())
        err = {"ok": False, "error": f"{self.name} exited (code {self.proc.exitcode})"}
        if self.started is not None and not self.started.done():
            self.started.set_result(err)
        for fut in self.pending.values():
            if not fut.done():
                fut.set_result(err)
        self.pending.clear()
        if self.on_exit is not None:
            self.on_exit(self)

    async def _call(self, op: str, **kw: Any) -> dict[str, Any]:
        if self.conn is None or not self.alive():
            raise WorkerFailed(f"{self.name} is not running")
        self.next_id += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = fut
        self.conn.send({"id": self.next_id, "op": op, **kw})
        msg = await fut
        if not msg.get("ok"):
            raise PolicyLoadError(str(msg.get("error")))
        return msg

    async def prepare(self, generation: int, cfg: Config) -> dict[str, Any]:
        self.cfg = cfg
        return await self._call("prepare", generation=generation, config=cfg)

    async def commit(self, generation: int, loaded_at: float) -> None:
        await self._call("commit", generation=generation, loaded_at=loaded_at)

    async def abort(self, generation: int) -> None:
        with contextlib.suppress(WorkerFailed, PolicyLoadError):
            await self._call("abort", generation=generation)

    async def stats(self) -> dict[str, Any]:
        return (await self._call("stats"))["stats"]  # type: ignore[no-any-return]

    async def stop(self, grace: float) -> None:
        if self.alive():
            self.on_exit = None
            with contextlib.suppress(TimeoutError, WorkerFailed, PolicyLoadError):
                await asyncio.wait_for(self._call("stop", grace=grace), grace + 5)
            await asyncio.get_running_loop().run_in_executor(None, self.proc.join, 5)
            if self.proc.is_alive():
                self.proc.kill()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.is_alive()


def worker_main(conn: Connection, cfg: Config, index: int, sink_spec: str | None,
                preload: tuple[int, Config, float] | None) -> None:
    """Entry point of a worker process."""
    import uvloop
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # Ctrl-C reaches the whole group: the supervisor decides
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    log = Logger(f"resolver.worker-{index}", journald_prefix=bool(os.environ.get("JOURNAL_STREAM")))
    tune_collector()
    uvloop.run(_worker(conn, cfg, sink_spec, preload, log))


async def _worker(conn: Connection, cfg: Config, sink_spec: str | None,
                  preload: tuple[int, Config, float] | None, log: Logger) -> None:
    loop = asyncio.get_running_loop()
    svc = ResolverService(cfg, make_sink(sink_spec, cfg, loop), log)   # hits shipped from this loop
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        if preload is not None:
            gen, pcfg, loaded_at = preload
            await svc.prepare(gen, pcfg)
            svc.commit(gen, loaded_at)
        await svc.start()
    except (OSError, PolicyLoadError) as exc:
        conn.send({"event": "started", "ok": False, "error": str(exc)})
        return
    conn.send({"event": "started", "ok": True, "pid": os.getpid()})

    async def handle(msg: dict[str, Any]) -> None:
        op = msg.get("op")
        reply: dict[str, Any] = {"id": msg.get("id"), "ok": True}
        try:
            if op == "prepare":
                reply.update(await svc.prepare(msg["generation"], msg["config"]))
            elif op == "commit":
                svc.commit(msg["generation"], msg["loaded_at"])
            elif op == "abort":
                svc.abort(msg["generation"])
            elif op == "stats":
                reply["stats"] = svc.stats()
            elif op == "stop":
                await svc.stop(float(msg.get("grace", 5)))
                stop.set()
            else:
                reply = {"id": msg.get("id"), "ok": False, "error": f"unknown op {op!r}"}
        except PolicyLoadError as exc:
            reply = {"id": msg.get("id"), "ok": False, "error": str(exc)}
        try:
            conn.send(reply)
        except OSError:
            stop.set()

    tasks: set[asyncio.Task[None]] = set()

    def readable() -> None:
        try:
            msg = conn.recv()
        except (EOFError, OSError):   # the supervisor is gone: stop serving
            loop.remove_reader(conn.fileno())
            stop.set()
            return
        t = loop.create_task(handle(msg))
        tasks.add(t)
        t.add_done_callback(tasks.discard)

    loop.add_reader(conn.fileno(), readable)
    await stop.wait()
    await svc.stop(5)
