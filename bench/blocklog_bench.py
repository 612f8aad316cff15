#!/usr/bin/env python3
"""Blocked-lookup log benchmark (issue 5, "Speed"): results go to BENCHMARKS.md by hand.

  writer   0. the writer's CPU per record end to end: decode protocol 2 messages (1,024 answers each,
              as the data plane's flusher packs them) and write them as one batch (seal, chain, insert,
              aggregates, commit with fsync), 5,000-record batches, median of 10
           1. the store alone: BlocklogStore.write_batch (seal, chain, insert, aggregates, commit with
              fsync) on batches of what 50,000 hits/s bring in one writer tick (flush/4 = 50 ms)
           2. the whole path: producer processes with the data plane's ShippingSink (deque, flusher
              thread, unix socket) at a fixed total rate into one BlocklogWriter thread: records
              written, drops (must be 0), the writer's CPU, how far behind it ends
  path     our resolver under dnsperf (a fixed rate, then max rate; 100 % blocked names, demo
           policy) in three modes, alternating in the same run: off (no log); ship (the data plane
           ships every hit, as with the log on, to a stand-in writer that only counts them: the data
           plane's own cost); on (the real writer in the main process, on CPU 0 beside dnsperf;
           --writer-cpu 1 puts it beside the data plane instead, --writer-cpu 0,1 lets the kernel
           place it, as a deployed node does). The data plane runs on CPU 1.
  ratio    the throughput cost alone, measured so that the VM's drift cancels: rounds of four
           short max-rate runs in the order off, on, on, off (the next round on, off, off, on), each
           round's estimate the sum of its two "on" rates over the sum of its two "off" rates; the
           median of the rounds, their range, and per mode the CPU per answer of dnsperf, the data
           plane and the writer (where the cost goes).

    .venv/bin/python bench/blocklog_bench.py                      both, 3 passes of 20 s
    .venv/bin/python bench/blocklog_bench.py --only writer --seconds 10
    .venv/bin/python bench/blocklog_bench.py --only path --passes 5 --seconds 15
    .venv/bin/python bench/blocklog_bench.py --only ratio --rounds 8 --seconds 10
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(HERE))

from nacl.public import PrivateKey  # noqa: E402
from resolver_bench import loopback_resolver_toml  # noqa: E402

from resolver.blocklog import Template  # noqa: E402

TPL = ("q1.csam-site.test.", 1, "hotline.rpz.test.", 2026112201, "QNAME", "*.csam-site.test.hotline.rpz.test.",
       "nxdomain", "TW-2026-0042")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


# -- writer -----------------------------------------------------------------------------------------

def packed_messages(records: int, base_ms: int, per_batch: int = 64, per_message: int = 1024) -> list[bytes]:
    """Protocol 2 messages as ShippingSink packs them: receive batches of ``per_batch`` IPv4 answers
    (address slots as the kernel writes them), 64 template tuples numbered in the first message."""
    import array
    import marshal
    import socket
    import struct
    tpls = [((f"q{i}.csam-site.test.", 1 + (i % 2) * 27, *TPL[2:]),) for i in range(64)]
    msgs, done, defined = [], 0, False
    while done < records:
        batches, names, at, numbers = [], bytearray(), bytearray(), array.array("I")
        while done < records and len(at) < per_message:
            k = min(per_batch, records - done)
            for j in range(k):
                i = done + j
                names += struct.pack("=H", socket.AF_INET) + struct.pack(">H", 1024 + i % 60000) + \
                    bytes([198, 51, 100, i % 250 + 1]) + bytes(20)
                numbers.append(i % 64)
            at += bytes(range(k))
            batches.append((base_ms + done, "udp", int(socket.AF_INET), k, k))
            done += k
        msgs.append(marshal.dumps((2, 4242, 0, [], batches, bytes(names), bytes(at), numbers.tobytes(),
                                   None if defined else (0, tpls))))
        defined = True
    return msgs


def bench_writer_cpu(tmp: Path, batch: int = 5000, rounds: int = 10) -> list[float]:
    """The writer's CPU (process time) per record: decode a batch's protocol 2 messages and write
    them as one batch; one value per round."""
    from resolver import blocklog_ship
    from resolver.blocklog import BlocklogStore
    pk = bytes(PrivateKey.generate().public_key)
    store = BlocklogStore(str(tmp / f"writer-{time.monotonic_ns()}.sqlite"), node="bench")
    base = int(time.time() * 1000)
    msgs = packed_messages(batch, base)
    columns = hasattr(blocklog_ship, "decode_columns")     # (so the same code measures the row writer too)
    out = []
    for r in range(rounds + 1):
        table = blocklog_ship.TemplateTable() if hasattr(blocklog_ship, "TemplateTable") else []
        t0 = time.process_time()
        if columns:
            from resolver.blocklog import Columns
            cols = Columns.concat([blocklog_ship.decode_columns(m, table)[2] for m in msgs])
            n = store.write_columns(cols, now_ms=base + r, public_key=pk)
        else:
            raws = [x for m in msgs for x in blocklog_ship.decode(m, table)[2]]
            n = store.write_batch(raws, now_ms=base + r, public_key=pk)
        if r:                       # the first round creates the templates
            out.append((time.process_time() - t0) / n * 1e6)
    assert store.verify().ok
    store.close()
    return out


def bench_store(tmp: Path, seconds: float, batch: int = 2500) -> tuple[float, float]:
    """records/s of write_batch alone, and seconds per batch (median)."""
    from resolver.blocklog import BlocklogStore
    pk = bytes(PrivateKey.generate().public_key)
    store = BlocklogStore(str(tmp / f"store-{time.monotonic_ns()}.sqlite"), node="bench")
    tpls = [(f"q{i}.csam-site.test.", 1 + (i % 2) * 27, *TPL[2:]) for i in range(64)]
    base = int(time.time() * 1000)
    raws = [(base + i, f"198.51.100.{i % 250 + 1}", 1024 + i % 60000, (tpls[i % 64],), "udp") for i in range(batch)]
    n, busy, per = 0, 0.0, []
    while busy < seconds:       # the same hits again and again: the store does not look at them twice
        b0 = time.perf_counter()
        n += store.write_batch(raws, now_ms=base + n, public_key=pk)
        per.append(time.perf_counter() - b0)
        busy += per[-1]
    assert store.verify().ok
    store.close()
    return n / busy, statistics.median(per)


def producer(path: str, rate: int, seconds: float, queue_size: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """Hits as the batched UDP reader hands them over (submit_packed, up to 64 answers per receive
    batch, 5,000 distinct names, 64 senders), at ``rate`` answers per second."""
    import socket

    from resolver.blocklog_ship import ShippingSink
    from resolver.mmsg import NAME_SIZE
    sink = ShippingSink(path, queue_size=queue_size, interval_s=0.05)
    tpls: list[tuple[Template, ...]] = [((f"q{i}.csam-site.test.", 1, *TPL[2:]),) for i in range(5000)]
    family = int(socket.AF_INET)
    names = b"".join((family.to_bytes(2, "little") + (1024 + i).to_bytes(2, "big") + bytes([198, 51, 100, 1 + i]))
                     .ljust(NAME_SIZE, b"\0") for i in range(64))
    sent, t0 = 0, time.monotonic()
    submit = sink.submit_packed
    while (now := time.monotonic() - t0) < seconds:
        due = int(now * rate)
        while sent < due:
            k = min(64, due - sent)
            first = sent % 4936
            submit(int(time.time() * 1000), family, names[:k * NAME_SIZE], bytes(range(k)), tpls[first:first + k],
                   "udp")
            sent += k
        time.sleep(0.002)
    sink.close()
    out.put((sent, sink.dropped))


def sink_cost(path: str, n: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """CPU per hit a data-plane process pays: ShippingSink.submit_hits plus its flusher thread
    (marshal, send), minus the same loop without the call."""
    from resolver.blocklog_ship import ShippingSink
    tpls = tuple((f"q{i}.csam-site.test.", 1, *TPL[2:]) for i in range(64))
    t_ms, ip = int(time.time() * 1000), "198.51.100.7"
    c0 = cpu_seconds()
    for i in range(n):
        (t_ms, ip, 1024 + i % 60000, (tpls[i % 64],), "udp")
    base = cpu_seconds() - c0
    sink = ShippingSink(path, queue_size=10_000_000, interval_s=0.05)
    submit = sink.submit_hits
    c0 = cpu_seconds()
    for i in range(n):
        submit(t_ms, ip, 1024 + i % 60000, (tpls[i % 64],), "udp")
    sink.close()
    out.put(((cpu_seconds() - c0 - base) / n * 1e6, sink.dropped))


def packed_cost(path: str, n: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """The same for the batched UDP reader's way (ShippingSink.submit_packed): per batch of 64
    answers with hits, two list appends per answer as the reader does them, then one call with
    the batch's address slots; minus the same loop without the appends and the call."""
    import socket

    from resolver.blocklog_ship import ShippingSink
    from resolver.mmsg import NAME_SIZE
    tpls = tuple(((f"q{i}.csam-site.test.", 1, *TPL[2:]),) for i in range(64))
    slot = int(socket.AF_INET).to_bytes(2, "little") + (5353).to_bytes(2, "big") + bytes([198, 51, 100, 7])
    names = memoryview(bytearray(slot.ljust(NAME_SIZE, b"\0") * 64))
    t_ms, family = int(time.time() * 1000), int(socket.AF_INET)
    c0 = cpu_seconds()
    for _ in range(n // 64):
        for i in range(64):
            tpls[i]
    base = cpu_seconds() - c0
    sink = ShippingSink(path, queue_size=10_000_000, interval_s=0.05)
    submit = sink.submit_packed
    c0 = cpu_seconds()
    for _ in range(n // 64):
        at: list[int] = []
        tp: list[object] = []
        for i in range(64):
            at.append(i)
            tp.append(tpls[i])
        submit(t_ms, family, bytes(names[:64 * NAME_SIZE]), bytes(at), tp, "udp")  # type: ignore[arg-type]
    sink.close()
    out.put(((cpu_seconds() - c0 - base) / (n // 64 * 64) * 1e6, sink.dropped))


def bench_sink(tmp: Path, n: int = 500_000, target: Callable[..., None] = sink_cost) -> float:
    from resolver.blocklog_config import BlocklogConfig
    from resolver.blocklog_ship import BlocklogWriter
    cfg = BlocklogConfig(enabled=True, path=str(tmp / f"sink-{time.monotonic_ns()}.sqlite"),
                         socket_path=str(tmp / f"sink-{time.monotonic_ns()}.sock"), node="bench", queue_size=10_000_000)
    writer = BlocklogWriter(cfg).start()
    ctx = multiprocessing.get_context("spawn")
    q: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    p = ctx.Process(target=target, args=(cfg.socket_path, n, q))
    p.start()
    us, dropped = q.get(timeout=300)
    p.join()
    writer.close(timeout=60)
    assert dropped == 0
    return float(us)


def bench_pipeline(tmp: Path, seconds: float, rate: int, producers: int) -> dict[str, float]:
    from resolver.blocklog_config import BlocklogConfig
    from resolver.blocklog_ship import BlocklogWriter
    pk = bytes(PrivateKey.generate().public_key)
    cfg = BlocklogConfig(enabled=True, path=str(tmp / f"pipe-{time.monotonic_ns()}.sqlite"),
                         socket_path=str(tmp / f"bl-{time.monotonic_ns()}.sock"), node="bench",
                         queue_size=100_000, compliance_public_key=pk)
    writer = BlocklogWriter(cfg).start()
    ctx = multiprocessing.get_context("spawn")
    q: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [ctx.Process(target=producer, args=(cfg.socket_path, rate // producers, seconds, cfg.queue_size, q))
             for _ in range(producers)]
    c0, t0 = cpu_seconds(), time.monotonic()
    for p in procs:
        p.start()
    results = [q.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    submitted = sum(r[0] for r in results)
    end_submit = time.monotonic()
    while writer.stats.records < submitted and time.monotonic() - end_submit < 30:
        time.sleep(0.01)
    lag = time.monotonic() - end_submit
    writer.close()
    cpu = cpu_seconds() - c0
    wall = time.monotonic() - t0
    return {"submitted": submitted, "written": writer.stats.records, "dropped": sum(r[1] for r in results)
            + writer.stats.dropped, "rate": submitted / seconds, "writer_cpu_share": cpu / wall,
            "drain_s": lag, "batch_p50": _hist_median(writer.stats)}


def _hist_median(stats: object) -> float:
    from resolver.blocklog_ship import BATCH_BUCKETS
    hist = stats.batch_hist  # type: ignore[attr-defined]
    total, acc = sum(hist), 0
    for b, n in zip((*BATCH_BUCKETS, float("inf")), hist, strict=True):
        acc += n
        if acc * 2 >= total:
            return b
    return float("inf")


# -- the blocked-answer path ------------------------------------------------------------------------
#
# Three modes, alternating in the same run:
#   off   no log: the data plane runs in the main process (workers = 1 serves inline)
#   ship  the data plane does everything logging asks of it (hits queued, packed, marshalled and sent
#         every flush/4 by its ShippingSink) to a stand-in writer that only counts what arrives: the
#         data plane's own cost, in the same layout as "off", without the writer's CPU beside dnsperf
#   on    the real thing: the data plane in a worker process, the writer (seal, chain, SQLite) in the
#         main process on --writer-cpu
# Per run: the data plane's CPU per answer (user and system), its event-loop wake-ups per answer (at a
# fixed rate below saturation the CPU per answer depends mostly on how many answers one wake-up finds,
# which depends on what shares the load generator's CPU), and in "on" the writer's CPU per record.

MODES = ("off", "ship", "on")


class Load:
    outstanding = 200     # dnsperf -q: queries in flight at most (--outstanding)
DRAIN_ENV = "HOTLINE_EDGE_BENCH_DRAIN"


def standin_sink() -> object:
    """HOTLINE_EDGE_HIT_SINK factory of the "ship" mode: the data plane's own ShippingSink, shipping
    to the stand-in writer at $HOTLINE_EDGE_BENCH_DRAIN, flushed from the data plane's loop as a
    worker's is (resolver.workers)."""
    import asyncio

    from resolver.blocklog_ship import ShippingSink
    return ShippingSink(os.environ[DRAIN_ENV], queue_size=100_000, interval_s=0.05, loop=asyncio.get_running_loop())


def drain(path: str, stop: object, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """The stand-in writer: accepts the data plane's connection and counts the answers whose hits
    arrive (a marshal.loads per message, nothing else)."""
    import marshal
    import select
    import socket
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    srv.bind(path)
    srv.listen(4)
    poll = select.poll()
    poll.register(srv.fileno(), select.POLLIN)
    conns: dict[int, socket.socket] = {}
    answers = messages = 0
    while not stop.is_set() or conns:  # type: ignore[attr-defined]
        for fd, _ev in poll.poll(100):
            if fd == srv.fileno():
                c, _ = srv.accept()
                conns[c.fileno()] = c
                poll.register(c.fileno(), select.POLLIN)
                continue
            data = conns[fd].recv(1 << 20)
            if not data:
                poll.unregister(fd)
                conns.pop(fd).close()
                continue
            msg = marshal.loads(data)
            messages += 1
            answers += len(msg[3]) + len(msg[6])      # per-query records, batched answers
        if stop.is_set() and not conns:  # type: ignore[attr-defined]
            break
    out.put((answers, messages))


def config(tmp: Path, port: int, logging: bool, key: PrivateKey) -> Path:
    pub = tmp / "c.pub"
    pub.write_text(base64.b64encode(bytes(key.public_key)).decode())
    cfg = tmp / f"config-{'on' if logging else 'off'}.toml"
    cfg.write_text(f"""
[node]
id = "bench"
state_dir = "{tmp}/state-{'on' if logging else 'off'}"
runtime_dir = "{tmp}/run-{'on' if logging else 'off'}"
""" + loopback_resolver_toml(port) + f"""[[policy.zone]]
file = "{REPO}/rpz/data/demo-hotline.rpz"
ede = 17
""" + (f'[blocklog]\ncompliance_public_key = "{pub}"\n' if logging else ""))
    return cfg


def pin(pid: int, cpu: int | str) -> None:
    subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(pid)], check=True, capture_output=True)


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    return [int(x) for x in out.split()]


def run_resolver(tmp: Path, port: int, mode: str, key: PrivateKey, writer_cpu: str,
                 drain_path: str | None = None) -> subprocess.Popen[bytes]:
    logging = mode == "on"
    cfg = config(tmp, port, logging, key)
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{HERE}")
    if mode == "ship":
        assert drain_path is not None
        env.update({"HOTLINE_EDGE_HIT_SINK": "blocklog_bench:standin_sink", DRAIN_ENV: drain_path})
    proc = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c",
                             "import sys; from admin_api.cli import main; sys.exit(main())", "serve", "--config",
                             str(cfg)], stdout=subprocess.DEVNULL, stderr=(tmp / "resolver.log").open("ab"),
                            env=env, cwd=str(REPO))
    sock = tmp / f"run-{'on' if logging else 'off'}" / "control.sock"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if sock.exists() and "NXDOMAIN" in subprocess.run(
                ["dig", "+tries=1", "+time=1", "-p", str(port), "@127.0.0.1", "csam-site.test"],
                capture_output=True, text=True, check=False).stdout:
            break
        time.sleep(0.2)
    else:
        raise RuntimeError("resolver did not start; see " + str(tmp / "resolver.log"))
    if logging:   # the worker keeps CPU 1; the main process (the writer) goes where it is told
        kids = [k for k in children(proc.pid) if "spawn_main" in Path(f"/proc/{k}/cmdline").read_text()]
        for k in kids:
            pin(k, 1)
        pin(proc.pid, writer_cpu)
    return proc


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's waited-for children so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def dnsperf(port: int, data: Path, seconds: float, qps: int | None = None) -> tuple[float, int]:
    """(queries per second answered, queries completed)."""
    argv = ["taskset", "-c", "0", "dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(data), "-l", str(seconds),
            "-c", "4", "-q", str(Load.outstanding), *(["-Q", str(qps)] if qps else [])]
    out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    m = re.search(r"Queries per second:\s+([\d.]+)", out)
    done = re.search(r"Queries completed:\s+(\d+)", out)
    if not m or not done:
        raise RuntimeError(out)
    return float(m.group(1)), int(done.group(1))


def ticks(pid: int) -> int:
    """CPU time (user + system, in clock ticks) of every thread of ``pid`` so far."""
    return sum(cpu_ticks(pid))


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(user, system) CPU time in clock ticks of every thread of ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[-1].split()
    return int(fields[11]), int(fields[12])


def wakeups(pid: int) -> int:
    """Voluntary context switches of ``pid``'s main thread (the event loop): how often it slept."""
    with open(f"/proc/{pid}/task/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    return 0


def writer_settled(pid: int, timeout: float = 120.0) -> int:
    """The CPU ticks of ``pid`` once it has been idle for half a second: a writer that fell behind
    during the run writes its backlog after the load has stopped, and that is its work too."""
    last, since, end = ticks(pid), time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < end:
        time.sleep(0.1)
        now = ticks(pid)
        if now - last > 2:          # more than 2 ticks per 0.1 s: still working
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= 0.5:
            return now
    return ticks(pid)


def busy_ticks() -> tuple[int, int, int]:
    """Clock ticks of all CPUs so far (/proc/stat): (busy: user, nice, system, interrupts and
    softirqs, which the kernel charges to the tasks they interrupt in their own times too;
    stolen by the hypervisor; total)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[0] + v[1] + v[2] + v[5] + v[6], v[7], sum(v)


def settle(limit: float = 0.1, window: float = 0.5, timeout: float = 30.0) -> float:
    """Wait until the machine is idle (at most ``limit`` of its CPU busy over ``window`` seconds):
    what a run leaves behind (its process's exit, its deleted log's pages, the kernel's deferred
    frees) must not land in the next run, which would penalise whichever mode comes next. Returns
    the seconds waited (``timeout`` at most)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        a = busy_ticks()
        time.sleep(window)
        b = busy_ticks()
        if b[2] > a[2] and (b[0] - a[0] + b[1] - a[1]) / (b[2] - a[2]) <= limit:
            break
    return time.monotonic() - start


def one_run(tmp: Path, mode: str, data: Path, seconds: float, qps: int | None, key: PrivateKey,
            writer_cpu: str) -> dict[str, float]:
    from tests.integration.resolver.peers import free_port
    port = free_port()
    drainer = None
    if mode == "ship":
        ctx = multiprocessing.get_context("spawn")
        stop, q = ctx.Event(), ctx.Queue()
        drain_path = str(tmp / f"drain-{time.monotonic_ns()}.sock")
        drainer = ctx.Process(target=drain, args=(drain_path, stop, q))
        drainer.start()
        pin(drainer.pid, 0)     # type: ignore[arg-type]
        while not os.path.exists(drain_path):
            time.sleep(0.01)
    proc = run_resolver(tmp, port, mode, key, writer_cpu, drain_path if drainer else None)
    try:
        kids = [k for k in children(proc.pid) if "spawn_main" in Path(f"/proc/{k}/cmdline").read_text()]
        plane = kids[0] if mode == "on" else proc.pid
        settled = settle()
        p0, m0, w0, g0, s0 = cpu_ticks(plane), ticks(proc.pid), wakeups(plane), children_cpu(), busy_ticks()
        rate, done = dnsperf(port, data, seconds, qps)
        p1, w1, g1, s1 = cpu_ticks(plane), wakeups(plane), children_cpu(), busy_ticks()
        m_run = ticks(proc.pid)
        m1 = writer_settled(proc.pid) if mode == "on" else ticks(proc.pid)
        hz = os.sysconf("SC_CLK_TCK")
        per = 1e6 / hz / max(done, 1)
        out = {"qps": rate, "done": float(done), "plane_us": (sum(p1) - sum(p0)) * per,
               "plane_user_us": (p1[0] - p0[0]) * per, "plane_sys_us": (p1[1] - p0[1]) * per,
               "answers_per_wakeup": done / max(w1 - w0, 1), "writer_cpu_s": (m1 - m0) / hz if mode == "on" else 0.0,
               "dnsperf_us": (g1 - g0) * 1e6 / max(done, 1), "settled_s": settled,
               # busy CPU during the run that was neither dnsperf nor the resolver's processes (the
               # kernel's own threads, anything else on the VM): a disturbed run shows here
               "other_us": ((s1[0] - s0[0]) - (sum(p1) - sum(p0)) - (m_run - m0 if mode == "on" else 0)) * per
               - (g1 - g0) * 1e6 / max(done, 1),
               "steal_us": (s1[1] - s0[1]) * per}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    if drainer is not None:
        stop.set()
        out["logged"], out["messages"] = (float(x) for x in q.get(timeout=60))
        drainer.join(10)
    if mode == "on":
        from resolver.blocklog import BlocklogStore
        store = BlocklogStore(str(tmp / "state-on" / "blocklog.sqlite"), readonly=True)
        out["logged"] = float(store.counts()["records"])
        store.close()
        shutil.rmtree(tmp / "state-on", ignore_errors=True)
        out["writer_us"] = out["writer_cpu_s"] * 1e6 / max(out["logged"], 1)
    return out


def bench_path(tmp: Path, seconds: float, passes: int, writer_cpu: str, qps: int) -> dict[str, list[dict[str, float]]]:
    """Per pass: at a fixed rate and at max rate, every mode (the order alternates between passes)."""
    key = PrivateKey.generate()
    data = tmp / "blocked.txt"
    data.write_text("".join(f"q{i}.csam-site.test A\n" for i in range(5000)))
    out: dict[str, list[dict[str, float]]] = {f"{m}@{r}": [] for m in MODES for r in ("fixed", "max")}
    for n in range(passes):
        for rate, label in ((qps, "fixed"), (None, "max")):
            for mode in MODES if n % 2 == 0 else MODES[::-1]:
                r = one_run(tmp, mode, data, seconds, rate, key, writer_cpu)
                out[f"{mode}@{label}"].append(r)
                log(f"pass {n + 1} {label:>5} {mode:>4}: {r['qps']:,.0f} q/s answered, data plane "
                    f"{r['plane_us']:.2f} us CPU per answer ({r['plane_user_us']:.2f} user, {r['plane_sys_us']:.2f} "
                    f"system), {r['answers_per_wakeup']:.1f} answers per wake-up"
                    + (f"; {r['logged']:,.0f} answers' hits arrived in {r['messages']:,.0f} messages"
                       if mode == "ship" else "")
                    + (f"; writer {r['writer_us']:.1f} us CPU per record, {r['logged']:,.0f} records for "
                       f"{r['done']:,.0f} answers" if mode == "on" else ""))
    return out


def summarize_path(r: dict[str, list[dict[str, float]]], rate: int, passes: int, writer_cpu: str) -> None:
    def med(key: str, field: str) -> float:
        return float(statistics.median(x[field] for x in r[key]))

    for label, what in (("fixed", f"at {rate:,} q/s"), ("max", "at max rate")):
        off = med(f"off@{label}", "plane_us")
        parts = []
        for mode in MODES:
            k = f"{mode}@{label}"
            parts.append(f"{mode} {med(k, 'qps'):,.0f} q/s, {med(k, 'plane_us'):.2f} us "
                         f"({med(k, 'plane_user_us'):.2f} user + {med(k, 'plane_sys_us'):.2f} system, "
                         f"{med(k, 'answers_per_wakeup'):.1f} answers per wake-up)")
        log(f"blocked path {what}, median of {passes}: data plane CPU per answer: " + "; ".join(parts))
        for mode in ("ship", "on"):
            x = med(f"{mode}@{label}", "plane_us")
            log(f"  {what}, {mode} vs off: data plane CPU per answer {x - off:+.2f} us ({x / off - 1:+.1%}): "
                f"logging costs the path {1 - off / x:.1%} of its throughput")
        log(f"  {what}, on: the writer {med(f'on@{label}', 'writer_us'):.1f} us CPU per record (CPU {writer_cpu}), "
            f"{med(f'on@{label}', 'logged') / med(f'on@{label}', 'done'):.2f} records per answer")
    off_max, on_max = med("off@max", "qps"), med("on@max", "qps")
    log(f"max rate on this machine (dnsperf on CPU 0, data plane on CPU 1, writer on CPU {writer_cpu}): "
        f"off {off_max:,.0f} q/s, ship {med('ship@max', 'qps'):,.0f} q/s, on {on_max:,.0f} q/s "
        f"({on_max / off_max:.2f}x)")


def bench_ratio(tmp: Path, seconds: float, rounds: int, writer_cpu: str) -> list[dict[str, float]]:
    """Rounds of four max-rate runs, off on on off (then on off off on): a drift that is linear over
    a round cancels from its estimate, (on + on) / (off + off)."""
    key = PrivateKey.generate()
    data = tmp / "blocked.txt"
    data.write_text("".join(f"q{i}.csam-site.test A\n" for i in range(5000)))
    out = []
    for n in range(rounds):
        order = ("off", "on", "on", "off") if n % 2 == 0 else ("on", "off", "off", "on")
        runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
        for mode in order:
            runs[mode].append(one_run(tmp, mode, data, seconds, None, key, writer_cpu))
        r = {"ratio": sum(x["qps"] for x in runs["on"]) / sum(x["qps"] for x in runs["off"])}
        for mode, rs in runs.items():
            for f in ("qps", "plane_us", "dnsperf_us", "answers_per_wakeup", "other_us", "steal_us"):
                r[f"{mode}_{f}"] = statistics.fmean(x[f] for x in rs)
        r["writer_us"] = statistics.fmean(x["writer_us"] for x in runs["on"])
        r["logged_per_answer"] = sum(x["logged"] for x in runs["on"]) / sum(x["done"] for x in runs["on"])
        out.append(r)
        log(f"round {n + 1} ({' '.join(order)}): on/off {r['ratio']:.3f}; q/s off {r['off_qps']:,.0f} on "
            f"{r['on_qps']:,.0f}; CPU per answer off: data plane {r['off_plane_us']:.2f} + dnsperf "
            f"{r['off_dnsperf_us']:.2f} us; on: data plane {r['on_plane_us']:.2f} + dnsperf {r['on_dnsperf_us']:.2f} "
            f"+ writer {r['writer_us']:.2f} us; answers per wake-up off {r['off_answers_per_wakeup']:.1f} on "
            f"{r['on_answers_per_wakeup']:.1f}; {r['logged_per_answer']:.4f} records per answer; other tasks' CPU "
            f"off {r['off_other_us']:.2f} on {r['on_other_us']:.2f}, stolen off {r['off_steal_us']:.2f} on "
            f"{r['on_steal_us']:.2f} us per answer")
    return out


def summarize_ratio(rs: list[dict[str, float]], seconds: float, writer_cpu: str) -> None:
    def med(f: str) -> float:
        return float(statistics.median(r[f] for r in rs))

    ratios = sorted(r["ratio"] for r in rs)
    q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else (ratios[0], 0.0, ratios[0])
    log(f"throughput with logging on / off at max rate, {len(rs)} rounds of off-on-on-off ({seconds:g} s runs; "
        f"dnsperf on CPU 0, data plane on CPU 1, writer on CPU {writer_cpu}): median {med('ratio'):.3f}x, "
        f"quartiles {q1:.3f}-{q3:.3f}, range {ratios[0]:.3f}-{ratios[-1]:.3f}; rounds at or above 0.90: "
        f"{sum(r >= 0.9 for r in ratios)} of {len(ratios)}")
    log(f"  medians: off {med('off_qps'):,.0f} q/s, on {med('on_qps'):,.0f} q/s; CPU per answer, off: data plane "
        f"{med('off_plane_us'):.2f} us, dnsperf {med('off_dnsperf_us'):.2f} us; on: data plane "
        f"{med('on_plane_us'):.2f} us, dnsperf {med('on_dnsperf_us'):.2f} us, writer {med('writer_us'):.2f} us "
        f"per record; answers per wake-up off {med('off_answers_per_wakeup'):.1f}, on "
        f"{med('on_answers_per_wakeup'):.1f}; records per answer {min(r['logged_per_answer'] for r in rs):.4f} "
        f"at least; other tasks' CPU off {med('off_other_us'):.2f} on {med('on_other_us'):.2f} us per answer, "
        f"stolen off {med('off_steal_us'):.2f} on {med('on_steal_us'):.2f} us per answer")


def positive(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} is below 1")
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["writer", "path", "ratio"])
    ap.add_argument("--rounds", type=positive, default=8, help="rounds of off-on-on-off (ratio)")
    ap.add_argument("--outstanding", type=positive, default=Load.outstanding,
                    help="dnsperf's queries in flight at most (-q): a closed loop, its rate bound by latency")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--rate", type=int, default=50_000, help="total records/s of the producers (writer part)")
    ap.add_argument("--producers", type=int, default=2)
    ap.add_argument("--writer-cpu", default="0", choices=["0", "1", "0,1"],
                    help="where the writer (the resolver's main process) runs: beside dnsperf (0, the default), "
                         "beside the data plane (1), or where the kernel puts it (0,1)")
    ap.add_argument("--path-rate", type=int, default=20_000, help="fixed blocked-query rate for the CPU comparison")
    a = ap.parse_args()
    Load.outstanding = a.outstanding
    tmp = Path(tempfile.mkdtemp(prefix="blocklog-bench-"))
    log(f"machine: {platform.node()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, Python "
        f"{platform.python_version()}; temp {tmp}")
    try:
        if a.only in (None, "writer"):
            cpu = bench_writer_cpu(tmp)
            log("writer CPU per record, decode of protocol 2 messages + one 5,000-record batch: "
                + ", ".join(f"{x:.2f}" for x in cpu) + f" us; median {statistics.median(cpu):.2f} us")
            store = [bench_store(tmp, min(a.seconds, 10)) for _ in range(a.passes)]
            log("store alone: " + ", ".join(f"{r:,.0f} rec/s" for r, _ in store)
                + f"; median {statistics.median(r for r, _ in store):,.0f} rec/s, "
                f"{statistics.median(b for _, b in store) * 1000:.1f} ms per 2,500-record batch")
            sinks = [bench_sink(tmp) for _ in range(a.passes)]
            log("data-plane side, one query at a time (ShippingSink: submit_hits + flusher thread), CPU per hit: "
                + ", ".join(f"{x:.2f} us" for x in sinks) + f"; median {statistics.median(sinks):.2f} us")
            packed = [bench_sink(tmp, target=packed_cost) for _ in range(a.passes)]
            log("data-plane side, batched UDP reader (submit_packed of 64 answers + flusher thread), CPU per hit: "
                + ", ".join(f"{x:.2f} us" for x in packed) + f"; median {statistics.median(packed):.2f} us")
            pipes = [bench_pipeline(tmp, a.seconds, a.rate, a.producers) for _ in range(a.passes)]
            for p in pipes:
                log(f"pipeline at {a.rate:,}/s: written {p['written']:,.0f} of {p['submitted']:,.0f}, dropped "
                    f"{p['dropped']:,.0f}, offered {p['rate']:,.0f} rec/s, writer process CPU "
                    f"{p['writer_cpu_share']:.0%}, drained {p['drain_s']:.2f} s after the last hit, batch p50 <= "
                    f"{p['batch_p50'] * 1000:g} ms")
        if a.only in (None, "path"):
            if not shutil.which("dnsperf"):
                log("dnsperf not installed (Debian package dnsperf): skipping the path benchmark")
                return 1
            r = bench_path(tmp, a.seconds, a.passes, a.writer_cpu, a.path_rate)
            summarize_path(r, a.path_rate, a.passes, a.writer_cpu)
        if a.only == "ratio":
            if not shutil.which("dnsperf"):
                log("dnsperf not installed (Debian package dnsperf): skipping the ratio benchmark")
                return 1
            rs = bench_ratio(tmp, a.seconds, a.rounds, a.writer_cpu)
            summarize_ratio(rs, a.seconds, a.writer_cpu)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
