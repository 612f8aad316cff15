#!/usr/bin/env python3
"""Blocked-lookup log benchmark (issue 5, "Speed"): results go to BENCHMARKS.md by hand.

  writer   1. the store alone: BlocklogStore.write_batch (seal, chain, insert, aggregates, commit with
              fsync) on batches of what 50,000 hits/s bring in one writer tick (flush/4 = 50 ms)
           2. the whole path: producer processes with the data plane's ShippingSink (deque, flusher
              thread, unix socket) at a fixed total rate into one BlocklogWriter thread: records
              written, drops (must be 0), the writer's CPU, how far behind it ends
  path     our resolver under dnsperf (max rate, 100 % blocked names, demo policy), logging off and
           on, alternating in the same run. The data plane (one worker) runs on CPU 1; with logging
           on, the main process holding the writer runs on CPU 0 beside dnsperf, as a node gives
           the writer a core of its own (--writer-cpu 1 puts it beside the worker instead).

    .venv/bin/python bench/blocklog_bench.py                      both, 3 passes of 20 s
    .venv/bin/python bench/blocklog_bench.py --only writer --seconds 10
    .venv/bin/python bench/blocklog_bench.py --only path --passes 5 --seconds 15
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from nacl.public import PrivateKey  # noqa: E402

TPL = ("q1.csam-site.test.", 1, "hotline.rpz.test.", 2026112201, "QNAME", "*.csam-site.test.hotline.rpz.test.",
       "nxdomain", "TW-2026-0042")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


# -- writer -----------------------------------------------------------------------------------------

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
    from resolver.blocklog_ship import ShippingSink
    sink = ShippingSink(path, queue_size=queue_size, interval_s=0.05)
    tpls = tuple((f"q{i}.csam-site.test.", 1, *TPL[2:]) for i in range(64))
    sent, t0 = 0, time.monotonic()
    ip, submit = "198.51.100.7", sink.submit_hits
    while (now := time.monotonic() - t0) < seconds:
        due = int(now * rate)
        while sent < due:
            submit(int(time.time() * 1000), ip, 1024 + sent % 60000, (tpls[sent % 64],), "udp")
            sent += 1
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


def bench_sink(tmp: Path, n: int = 500_000) -> float:
    from resolver.blocklog_config import BlocklogConfig
    from resolver.blocklog_ship import BlocklogWriter
    cfg = BlocklogConfig(enabled=True, path=str(tmp / f"sink-{time.monotonic_ns()}.sqlite"),
                         socket_path=str(tmp / f"sink-{time.monotonic_ns()}.sock"), node="bench", queue_size=10_000_000)
    writer = BlocklogWriter(cfg).start()
    ctx = multiprocessing.get_context("spawn")
    q: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    p = ctx.Process(target=sink_cost, args=(cfg.socket_path, n, q))
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

def config(tmp: Path, port: int, logging: bool, key: PrivateKey) -> Path:
    pub = tmp / "c.pub"
    pub.write_text(base64.b64encode(bytes(key.public_key)).decode())
    cfg = tmp / f"config-{'on' if logging else 'off'}.toml"
    cfg.write_text(f"""
[node]
id = "bench"
state_dir = "{tmp}/state-{'on' if logging else 'off'}"
runtime_dir = "{tmp}/run-{'on' if logging else 'off'}"
[resolver]
listen = ["127.0.0.1:{port}"]
upstreams = ["127.0.0.1:9"]
allow = ["127.0.0.0/8"]
workers = 1
[[policy.zone]]
file = "{REPO}/rpz/data/demo-hotline.rpz"
ede = 17
""" + (f'[blocklog]\ncompliance_public_key = "{pub}"\n' if logging else ""))
    return cfg


def pin(pid: int, cpu: int) -> None:
    subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(pid)], check=True, capture_output=True)


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    return [int(x) for x in out.split()]


def run_resolver(tmp: Path, port: int, logging: bool, key: PrivateKey, writer_cpu: int) -> subprocess.Popen[bytes]:
    cfg = config(tmp, port, logging, key)
    env = dict(os.environ, PYTHONPATH=str(REPO))
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


def dnsperf(port: int, data: Path, seconds: float, qps: int | None = None) -> tuple[float, int]:
    """(queries per second answered, queries completed)."""
    argv = ["taskset", "-c", "0", "dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(data), "-l", str(seconds),
            "-c", "4", "-q", "200", *(["-Q", str(qps)] if qps else [])]
    out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    m = re.search(r"Queries per second:\s+([\d.]+)", out)
    done = re.search(r"Queries completed:\s+(\d+)", out)
    if not m or not done:
        raise RuntimeError(out)
    return float(m.group(1)), int(done.group(1))


def ticks(pid: int) -> int:
    """CPU time (user + system, in clock ticks) of every thread of ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[-1].split()
    return int(fields[11]) + int(fields[12])


def one_run(tmp: Path, mode: str, data: Path, seconds: float, qps: int | None, key: PrivateKey,
            writer_cpu: int) -> dict[str, float]:
    from tests.integration.resolver.peers import free_port
    port = free_port()
    proc = run_resolver(tmp, port, mode == "on", key, writer_cpu)
    try:
        kids = [k for k in children(proc.pid) if "spawn_main" in Path(f"/proc/{k}/cmdline").read_text()]
        plane = kids[0] if mode == "on" else proc.pid
        p0, m0 = ticks(plane), ticks(proc.pid)
        rate, done = dnsperf(port, data, seconds, qps)
        p1, m1 = ticks(plane), ticks(proc.pid)
        hz = os.sysconf("SC_CLK_TCK")
        out = {"qps": rate, "done": float(done), "plane_us": (p1 - p0) / hz * 1e6 / max(done, 1),
               "writer_us": (m1 - m0) / hz * 1e6 / max(done, 1) if mode == "on" else 0.0}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    if mode == "on":
        from resolver.blocklog import BlocklogStore
        store = BlocklogStore(str(tmp / "state-on" / "blocklog.sqlite"), readonly=True)
        out["logged"] = float(store.counts()["records"])
        store.close()
        shutil.rmtree(tmp / "state-on", ignore_errors=True)
    return out


def bench_path(tmp: Path, seconds: float, passes: int, writer_cpu: int, qps: int) -> dict[str, list[dict[str, float]]]:
    """Per pass: at a fixed rate (CPU per answer of the data-plane process, off vs on) and at max rate."""
    key = PrivateKey.generate()
    data = tmp / "blocked.txt"
    data.write_text("".join(f"q{i}.csam-site.test A\n" for i in range(5000)))
    out: dict[str, list[dict[str, float]]] = {"off@fixed": [], "on@fixed": [], "off@max": [], "on@max": []}
    for n in range(passes):
        for rate, label in ((qps, "fixed"), (None, "max")):
            for mode in ("off", "on") if n % 2 == 0 else ("on", "off"):
                r = one_run(tmp, mode, data, seconds, rate, key, writer_cpu)
                out[f"{mode}@{label}"].append(r)
                log(f"pass {n + 1} {label:>5} logging {mode:>3}: {r['qps']:,.0f} q/s answered, data plane "
                    f"{r['plane_us']:.1f} us CPU per answer" + (f", writer {r['writer_us']:.1f} us per record, "
                    f"{r.get('logged', 0):,.0f} records for {r['done']:,.0f} answers" if mode == "on" else ""))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["writer", "path"])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--rate", type=int, default=50_000, help="total records/s of the producers (writer part)")
    ap.add_argument("--producers", type=int, default=2)
    ap.add_argument("--writer-cpu", type=int, default=0, choices=[0, 1])
    ap.add_argument("--path-rate", type=int, default=20_000, help="fixed blocked-query rate for the CPU comparison")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="blocklog-bench-"))
    log(f"machine: {platform.node()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, Python "
        f"{platform.python_version()}; temp {tmp}")
    try:
        if a.only in (None, "writer"):
            store = [bench_store(tmp, min(a.seconds, 10)) for _ in range(a.passes)]
            log("store alone: " + ", ".join(f"{r:,.0f} rec/s" for r, _ in store)
                + f"; median {statistics.median(r for r, _ in store):,.0f} rec/s, "
                f"{statistics.median(b for _, b in store) * 1000:.1f} ms per 2,500-record batch")
            sinks = [bench_sink(tmp) for _ in range(a.passes)]
            log("data-plane side (ShippingSink: submit_hits + flusher thread), CPU per hit: "
                + ", ".join(f"{x:.2f} us" for x in sinks) + f"; median {statistics.median(sinks):.2f} us")
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

            def med(key: str, field: str) -> float:
                return float(statistics.median(x[field] for x in r[key]))
            off_cpu, on_cpu = med("off@fixed", "plane_us"), med("on@fixed", "plane_us")
            log(f"blocked path at {a.path_rate:,} q/s, median of {a.passes}: data plane {off_cpu:.1f} us CPU per "
                f"answer off, {on_cpu:.1f} on: logging costs the path {(1 - off_cpu / on_cpu):.1%} of its throughput; "
                f"the writer {med('on@fixed', 'writer_us'):.1f} us CPU per record (CPU {a.writer_cpu})")
            off_max, on_max = med("off@max", "qps"), med("on@max", "qps")
            log(f"max rate on this machine (dnsperf on CPU 0, data plane on CPU 1, writer on CPU {a.writer_cpu}): "
                f"off {off_max:,.0f} q/s, on {on_max:,.0f} q/s ({on_max / off_max:.2f}x)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
