"""Feed benchmarks: a signed bundle verified, compiled and activated; an IXFR of M changes from a
real Knot primary applied after NOTIFY (after the initial AXFR, a restart: the seed read back, and the IXFRs
continue from it). One command:

    .venv/bin/python bench/feeds.py --rules 1000000 --changes 1000 --runs 3

Everything runs on loopback: a local HTTP server for the TUF repository (made with the publish
tool), a Knot DNS primary (Debian `knot`) with a TSIG key, and a stand-in for the resolver's control
socket that confirms the serial without compiling (so the numbers are feedsync's own). Prints one
Markdown table per scenario with medians; times are wall clock, memory is the process's RSS.
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from feedsync import bundle as b
from feedsync import config as fconfig
from feedsync.control import ControlClient
from feedsync.publish import Repository, keygen, signers_from_dir
from feedsync.statedb import StateDB
from feedsync.sync import FeedSync
from tests.integration.feedsync.knot import Knot

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from resolver_bench import loopback_resolver_toml


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:   # resets the peak RSS ("VmHWM") of this process
        f.write("5")


def hwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Confirmer:
    """The resolver's control socket, reduced to loading the feed's zone the way the resolver does
    (active.snap mapped with rpz.snapshot, a delta replayed over its base; active.rpz compiled when
    there is no snapshot) and confirming its serial. ``loads`` holds how long each load took."""

    def __init__(self, path: str, zone: str, active: str) -> None:
        self.active = active
        self.zone = zone
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(4)
        self.reloaded_at: list[float] = []
        self.loaded_at: list[float] = []
        self.loads: list[float] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serial(self) -> int:
        import rpz
        from rpz.snapshot import open_snapshot
        snap = os.path.join(os.path.dirname(self.active), "active.snap")
        t0 = time.monotonic()
        if os.path.exists(snap):
            serial = open_snapshot(snap).serial
        else:
            with open(self.active, "rb") as f:
                serial = rpz.compile_text(f.read(), self.active, self.zone, fast=True).serial
        self.loads.append(time.monotonic() - t0)
        return serial

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                self.reloaded_at.append(time.monotonic())
                serial = self._serial()
                self.loaded_at.append(time.monotonic())
                conn.sendall(json.dumps({"ok": True, "zones": {self.zone: serial}}).encode() + b"\n")


def entries(n: int, now: float, salt: int = 0, changed: int = 1000) -> list[dict]:
    """n entries; the first ``changed`` targets differ from one ``salt`` to the next."""
    issued, eff, exp = b.format_time(now - 86400), b.format_time(now - 3600), b.format_time(now + 90 * 86400)
    return [{"entry_id": f"E-{i}", "order_ref": f"TW-2026-{i}", "issuing_authority": "Synthetic Court",
             "legal_basis": "Example Act art. 8", "category": "fraud",
             "target": f"s{i}-{salt}.d{i % 5000}.bad.test" if i < changed else f"s{i}.d{i % 5000}.bad.test",
             "match": "subdomains" if i % 10 == 0 else "exact", "action": "nxdomain", "stop_page": "",
             "issued_at": issued, "effective_at": eff, "expires_at": exp, "appeal_contact": "appeals@hotline.test",
             "retention_days": 180} for i in range(n)]


def bundle_repository(work: str):  # type: ignore[no-untyped-def]
    """A TUF repository made with the publish tool under ``work``, served over HTTP on loopback:
    (now, its directory, the Repository, its signers, the HTTP server)."""
    import functools
    import http.server
    now = datetime.now(UTC).replace(microsecond=0)
    repo, keys = os.path.join(work, "repo"), os.path.join(work, "keys")
    for role in ("root", "targets", "snapshot", "timestamp"):
        keygen(keys, role)
    signers = signers_from_dir(keys)
    r = Repository(repo)
    r.init(signers, {}, now)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=repo))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return now, repo, r, signers, srv


def bundle_feed(work: str, repo: str, srv: Any) -> tuple[str, str, str]:
    """(state dir, runtime dir, TOML text of [node] and the [[feed]] of the repository that
    ``bundle_repository`` serves); its trusted root copied into ``work``."""
    state, run = os.path.join(work, "state"), os.path.join(work, "run")
    root = os.path.join(work, "root.json")
    shutil.copy(os.path.join(repo, "metadata", "1.root.json"), root)
    return state, run, f"""[node]
state_dir = "{state}"
runtime_dir = "{run}"
[[feed]]
name = "hotline"
type = "bundle"
zone = "hotline.rpz.test"
url = "http://127.0.0.1:{srv.server_address[1]}/"
trusted_root = "{root}"
blast_radius = 1.0
"""

def stop(proc, timeout: float) -> None:  # type: ignore[no-untyped-def]
    """SIGTERM, then SIGKILL if ``proc`` is still there after ``timeout`` seconds."""
    import subprocess
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()


def bench_bundle(n: int, runs: int, work: str, profile: str | None = None, fmt: int = 2) -> dict:
    now, repo, r, signers, srv = bundle_repository(work)
    state, _run, feed = bundle_feed(work, repo, srv)
    cfg = fconfig.loads(feed)
    conf = Confirmer(cfg.control_socket, "hotline.rpz.test", os.path.join(cfg.feed_dir("hotline"), "active.rpz"))
    db = StateDB(os.path.join(state, "feeds", "feedsync.db"))
    times, peaks, size, to_reload = [], [], 0, []
    sync = FeedSync(cfg, cfg.feed("hotline"), db, ControlClient(cfg.control_socket))
    for k in range(runs):
        data = b.dump_bundle("hotline", k + 1, int(now.timestamp()), entries(n, now.timestamp(), k),
                             columns=fmt == 2)
        size = len(data)
        r.publish(data, k + 1, signers, now=now, fmt=b.FORMAT_COLUMNS if fmt == 2 else b.FORMAT)
        del data
        gc.collect()
        steady = rss_mb()
        reset_peak()
        t0 = time.perf_counter()
        m0 = time.monotonic()
        prof = None
        if profile:
            import cProfile
            prof = cProfile.Profile()
            prof.enable()
        res = sync.cycle()
        times.append(time.perf_counter() - t0)
        if prof is not None:
            prof.disable()
            prof.dump_stats(f"{profile}.bundle{k + 1}")
        to_reload.append(conf.reloaded_at[-1] - m0)
        peaks.append((steady, hwm_mb()))
        assert res.outcome == "applied", res
        print(f"  bundle run {k + 1} ({'cold' if k == 0 else 'warm'}): {times[-1]:.2f} s "
              f"(resolver asked after {to_reload[-1]:.2f} s), rss {steady:.0f} -> peak {hwm_mb():.0f} MB",
              file=sys.stderr)
    srv.shutdown()
    warm = times[1:] or times
    return {"rules": n, "format": fmt, "bundle_mb": size / 1e6, "cold_s": times[0], "cold_reload_s": to_reload[0],
            "warm_median_s": statistics.median(warm),
            "warm_reload_median_s": statistics.median(to_reload[1:] or to_reload),
            "runs": times, "peak_mb": max(p for _, p in peaks), "before_mb": statistics.median(s for s, _ in peaks)}


class RssSampler:
    """Samples the resident set of a process and its children every ``every`` seconds (a thread)."""

    def __init__(self, pid: int, every: float = 0.005) -> None:
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _tree(self) -> list[int]:
        pids, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            pids.append(p)
            try:
                with open(f"/proc/{p}/task/{p}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
            except OSError:
                pass
        return pids

    def rss(self) -> float:
        total = 0
        for p in self._tree():
            try:
                with open(f"/proc/{p}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
                            break
            except OSError:
                pass
        return total / 1024

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append((time.monotonic(), self.rss()))

    def window(self, t0: float, t1: float) -> list[float]:
        return [r for t, r in self.samples if t0 <= t <= t1]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _dnsperf_summary(out: str) -> dict:
    import re
    got = {}
    for key, pat in (("sent", r"Queries sent:\s+(\d+)"), ("completed", r"Queries completed:\s+(\d+)"),
                     ("lost", r"Queries lost:\s+(\d+)"), ("qps", r"Queries per second:\s+([\d.]+)"),
                     ("max_latency_s", r"Average Latency \(s\):.*max ([\d.]+)")):
        m = re.search(pat, out)
        got[key] = float(m.group(1)) if m else None
    return got


def bench_swap(n: int, runs: int, work: str, qps: int = 20_000) -> dict:
    """The resolver's memory while it swaps policy versions: a real `hotline-edge serve` (one process)
    enforces a bundle feed of n entries under dnsperf (blocked names, ``qps``), while feedsync applies
    new versions (1,000 entries changed each; every few versions the delta is compacted into a new full
    base, which the resolver then maps). Per swap: the resolver's RSS before (median of the 3 s before
    the cycle) and its peak until 3 s after feedsync's cycle, plus feedsync's own, and dnsperf's lost
    queries and worst latency over the whole run."""
    import random
    import subprocess

    import dns.message
    import dns.query
    import dns.rcode
    now, repo, r, signers, srv = bundle_repository(work)
    state, _run, feed = bundle_feed(work, repo, srv)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    text = feed + loopback_resolver_toml(port) + """[[policy.zone]]
name = "hotline.rpz.test"
feed = "hotline"
"""
    path = os.path.join(work, "config.toml")
    with open(path, "w") as f:
        f.write(text)
    cfg = fconfig.loads(text)
    db = StateDB(os.path.join(state, "feeds", "feedsync.db"))
    sync = FeedSync(cfg, cfg.feed("hotline"), db, ControlClient(cfg.control_socket))
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(work, "resolver.log"), "w") as errors:
        resolver = subprocess.Popen([sys.executable, "-m", "admin_api.cli", "serve", "--config", path],
                                    cwd=repo_root, stdout=subprocess.DEVNULL, stderr=errors)
    perf = None
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(cfg.control_socket):
            if time.monotonic() > deadline or resolver.poll() is not None:
                raise SystemExit(f"the resolver did not start (see {work}/resolver.log; KEEP=1 keeps it)")
            time.sleep(0.05)
        sampler = RssSampler(resolver.pid)
        rows = []
        qfile = os.path.join(work, "queries.txt")
        rng = random.Random(7)
        with open(qfile, "w") as f:     # names the versions all block (entries 1,000 and up never change)
            for i in rng.sample(range(1000, n), min(100_000, n - 1000)):
                f.write(f"{'x.' if i % 10 == 0 else ''}s{i}.d{i % 5000}.bad.test A\n")
        for k in range(runs):
            data = b.dump_bundle("hotline", k + 1, int(now.timestamp()),
                                 entries(n, now.timestamp(), k),
                                 columns=True)
            r.publish(data, k + 1, signers, now=now, fmt=b.FORMAT_COLUMNS)
            del data
            gc.collect()
            if k == 1:
                perf = subprocess.Popen(["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", qfile, "-l", "3600",
                                         "-Q", str(qps), "-c", "4", "-t", "2"], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
                time.sleep(20)          # every name asked (its pages resident, its answer memoised)
            elif k:
                time.sleep(3)
            steady_fs = rss_mb()
            reset_peak()
            t0 = time.monotonic()
            res = sync.cycle()
            t1 = time.monotonic()
            assert res.outcome == "applied", res
            probe = dns.query.udp(dns.message.make_query(f"s{n - 1}.d{(n - 1) % 5000}.bad.test", "A"), "127.0.0.1",
                                  port=port, timeout=2)
            assert probe.rcode() == dns.rcode.NXDOMAIN, probe
            time.sleep(3)
            before = sampler.window(t0 - 3, t0)
            during = sampler.window(t0, t1 + 3)
            snaps = sorted(x for x in os.listdir(cfg.feed_dir("hotline")) if x.endswith(".snap"))
            row = {"run": k + 1, "cycle_s": t1 - t0,
                   "resolver_before_mb": statistics.median(before) if before else None,
                   "resolver_peak_mb": max(during), "resolver_after_mb": during[-1],
                   "feedsync_before_mb": steady_fs, "feedsync_peak_mb": hwm_mb(), "snapshots": len(snaps)}
            rows.append(row)
            rb = row["resolver_before_mb"]
            ratio = f" ({row['resolver_peak_mb'] / rb:.2f}x)" if rb else ""
            print(f"  swap run {k + 1}{' (first load)' if k == 0 else ''}: cycle {row['cycle_s']:.1f} s, resolver "
                  f"{rb or 0:.0f} -> peak {row['resolver_peak_mb']:.0f} -> {row['resolver_after_mb']:.0f} MB"
                  f"{ratio}; feedsync {steady_fs:.0f} -> peak {row['feedsync_peak_mb']:.0f} MB, {len(snaps)} "
                  "snapshot files", file=sys.stderr)
        sampler.stop()
        perf_out = ""
        if perf is not None:
            perf.send_signal(signal.SIGINT)
            perf_out = perf.communicate(timeout=30)[0]
        dp = _dnsperf_summary(perf_out)
    finally:
        if perf is not None and perf.poll() is None:
            perf.kill()
        stop(resolver, 20)
        srv.shutdown()
    swaps = [x for x in rows[1:] if x["resolver_before_mb"]]
    ratios = [x["resolver_peak_mb"] / x["resolver_before_mb"] for x in swaps]
    return {"rules": n, "qps": qps, "rows": rows, "dnsperf": dp,
            "resolver_ratio_median": statistics.median(ratios) if ratios else None,
            "resolver_ratio_max": max(ratios) if ratios else None}


def bench_ixfr(n: int, changes: int, runs: int, work: str, reuse: str | None = None,
               profile: str | None = None) -> dict:
    """AXFR of n rules from Knot, then ``runs`` IXFRs of ``changes`` names each. With ``reuse``, the
    state after the AXFR (Knot's files, feedsync's state directory and its in-memory IXFR base,
    pickled) is kept in that directory and later runs start from it instead of transferring again."""
    import pickle
    zone = "feed.rpz.test"
    saved = None
    if reuse is not None:
        work = reuse
        ready = os.path.join(reuse, "ixfr-ready.pickle")
        if os.path.exists(ready):
            with open(ready, "rb") as f:
                saved = pickle.load(f)
            if saved["rules_n"] != n:
                raise SystemExit(f"{reuse} holds a state of {saved['rules_n']} rules, not {n}")
    rules = saved["rules"] if saved else [f"s{i}.d{i % 5000}.bad.test CNAME ." for i in range(n)]
    secret = saved["secret"] if saved else base64.b64encode(os.urandom(32)).decode()
    knot = Knot(os.path.join(work, "knot"), zone, rules, saved["serial"] if saved else 10, notify_port=None,
                zonemd=False, secret=secret).start()
    state, run = os.path.join(work, "xstate"), os.path.join(work, "xrun")
    cfg = fconfig.loads(f"""[node]
state_dir = "{state}"
runtime_dir = "{run}"
[[feed]]
name = "twnic"
type = "xfr"
zone = "{zone}"
primaries = ["127.0.0.1:{knot.port}"]
tsig_name = "edge-key"
tsig_secret = "{secret}"
blast_radius = 1.0
transfer_timeout = 600
""")
    if os.path.exists(cfg.control_socket):
        os.unlink(cfg.control_socket)
    conf = Confirmer(cfg.control_socket, zone, os.path.join(cfg.feed_dir("twnic"), "active.rpz"))
    try:
        return _ixfr_runs(cfg, knot, rules, changes, runs, n, conf, saved, reuse, profile)
    finally:
        knot.stop()


def _profiler(profile: str | None):  # type: ignore[no-untyped-def]
    if not profile:
        return None
    import cProfile
    prof = cProfile.Profile()
    prof.enable()
    return prof


def _dump(prof, profile: str | None, suffix: str) -> None:  # type: ignore[no-untyped-def]
    if prof is not None and profile:
        prof.disable()
        prof.dump_stats(profile + suffix)


def _ixfr_runs(cfg: fconfig.Config, knot: Knot, rules: list[str], changes: int, runs: int, n: int,
               conf: Confirmer, saved: dict | None, reuse: str | None, profile: str | None) -> dict:
    import pickle
    db = StateDB(os.path.join(cfg.node.state_dir, "feeds", "feedsync.db"))
    sync = FeedSync(cfg, cfg.feed("twnic"), db, ControlClient(cfg.control_socket))
    serial = knot.soa_serial() or 10
    if saved is None:
        prof = _profiler(profile)
        t0 = time.perf_counter()
        res = sync.cycle()
        axfr_s: float | None = time.perf_counter() - t0
        _dump(prof, profile, ".axfr")
        assert res.outcome == "applied", res
        print(f"  initial AXFR of {n} rules applied in {axfr_s:.1f} s", file=sys.stderr)
        # a restart: a new process state reads the seed back and continues by IXFR from it
        del sync
        gc.collect()
        sync = FeedSync(cfg, cfg.feed("twnic"), db, ControlClient(cfg.control_socket))
        prof = _profiler(profile)
        t0 = time.perf_counter()
        sync.load_seed()
        seed_s = time.perf_counter() - t0
        _dump(prof, profile, ".seed")
        assert sync._base is not None, "the seed did not load"
        print(f"  restart: the seed of {n} rules read back in {seed_s:.1f} s", file=sys.stderr)
        if reuse is not None and sync._base is not None:
            psl, sync._base[1].psl = sync._base[1].psl, None      # a closure: not picklable
            with open(os.path.join(reuse, "ixfr-ready.pickle"), "wb") as f:
                pickle.dump({"rules_n": n, "rules": rules, "secret": knot.secret, "serial": serial,
                             "base": sync._base, "axfr_s": axfr_s, "run": 0}, f, protocol=5)
            sync._base[1].psl = psl
    else:
        axfr_s = seed_s = None
        sync._base = saved["base"]
        sync._base[1].psl = sync.psl
        print(f"  state after the AXFR of {n} rules reused from {reuse} (serial {serial})", file=sys.stderr)
    first = saved["run"] if saved else 0
    times, mems, to_reload, loads, to_loaded = [], [], [], [], []
    for k in range(first, first + runs):
        # M changes: half removed, half added
        lo = k * changes // 2
        rules = rules[:lo] + rules[lo + changes // 2:] + [f"new{k}-{j}.fresh.test CNAME ." for j in range(changes // 2)]
        serial += 10
        knot.write_zone(rules, serial)
        knot.reload()
        knot.wait_serial(serial, timeout=600)
        gc.collect()
        steady = rss_mb()
        reset_peak()
        prof = None
        if profile and k == first + runs - 1:
            import cProfile
            prof = cProfile.Profile()
            prof.enable()
        t0 = time.perf_counter()
        m0 = time.monotonic()
        res = sync.cycle()
        times.append(time.perf_counter() - t0)
        if prof is not None:
            prof.disable()
            prof.dump_stats(profile)
        to_reload.append(conf.reloaded_at[-1] - m0)
        to_loaded.append(conf.loaded_at[-1] - m0)
        loads.append(conf.loads[-1])
        mems.append((steady, hwm_mb()))
        assert res.outcome == "applied" and db.audit("twnic", limit=1)[0].record["extra"]["transfer"] == "ixfr", res
        print(f"  IXFR run {k + 1}: resolver asked after {to_reload[-1]:.2f} s, loaded after {to_loaded[-1]:.2f} s "
              f"(its load {loads[-1]:.2f} s), cycle {times[-1]:.2f} s, rss {steady:.0f} -> peak {hwm_mb():.0f} MB",
              file=sys.stderr)
    if reuse is not None:
        ready = os.path.join(reuse, "ixfr-ready.pickle")
        if os.path.exists(ready) and saved is not None:
            os.unlink(ready)     # the state moved on: the pickled base no longer matches it
        if sync._base is not None:
            psl, sync._base[1].psl = sync._base[1].psl, None
            with open(ready, "wb") as f:
                pickle.dump({"rules_n": n, "rules": rules, "secret": knot.secret, "serial": serial,
                             "base": sync._base, "axfr_s": saved["axfr_s"] if saved else axfr_s,
                             "run": first + runs}, f, protocol=5)
    return {"rules": n, "changes": changes, "axfr_s": axfr_s if axfr_s is not None else (saved or {}).get("axfr_s"),
            "seed_s": seed_s,
            "median_s": statistics.median(times), "runs": times,
            "reload_median_s": statistics.median(to_reload), "reload_runs": to_reload,
            "loaded_median_s": statistics.median(to_loaded), "loaded_runs": to_loaded, "resolver_loads": loads,
            "steady_mb": statistics.median(s for s, _ in mems), "peak_mb": statistics.median(p for _, p in mems)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rules", type=int, default=1_000_000)
    ap.add_argument("--changes", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", choices=["bundle", "ixfr", "swap"])
    ap.add_argument("--qps", type=int, default=20_000, help="swap: dnsperf's rate during the swaps")
    ap.add_argument("--bundle-format", type=int, choices=(1, 2), default=2, help="bundle: the document format")
    ap.add_argument("--reuse", metavar="DIR", help="ixfr: keep the state after the AXFR in DIR and start from it "
                    "when it is there (skips the AXFR; the first run in DIR does it)")
    ap.add_argument("--profile", metavar="FILE", help="cProfiles: each bundle cycle into FILE.bundleN, the "
                    "initial AXFR into FILE.axfr, the seed read back into FILE.seed, the last IXFR cycle into FILE")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="feedbench-")
    out: dict = {"machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, Python "
                            f"{platform.python_version()}", "load": os.getloadavg()}
    try:
        if args.only in (None, "bundle"):
            out["bundle"] = bench_bundle(args.rules, args.runs, work, args.profile, args.bundle_format)
        if args.only == "swap":
            out["swap"] = bench_swap(args.rules, args.runs, work, args.qps)
        if args.only in (None, "ixfr"):
            if args.reuse:
                os.makedirs(args.reuse, exist_ok=True)
            out["ixfr"] = bench_ixfr(args.rules, args.changes, args.runs, work, args.reuse, args.profile)
    finally:
        if not os.environ.get("KEEP"):
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=2))
    if "bundle" in out:
        x = out["bundle"]
        print(f"\n| bundle: {x['rules']:,} entries (format {x['format']}, {x['bundle_mb']:.0f} MB) | "
              f"cold {x['cold_s']:.1f} s "
              f"(resolver asked at {x['cold_reload_s']:.1f} s) | warm median {x['warm_median_s']:.1f} s (asked at "
              f"{x['warm_reload_median_s']:.1f} s) | target <= 10 s | RSS {x['before_mb']:.0f} -> peak "
              f"{x['peak_mb']:.0f} MB |")
    if "swap" in out:
        x = out["swap"]
        print("\n| run | feedsync cycle | resolver RSS before -> peak (-> after) | ratio "
              "| feedsync RSS before -> peak |")
        print("|---|---|---|---|---|")
        for row in x["rows"]:
            rb = row["resolver_before_mb"]
            print(f"| {row['run']} | {row['cycle_s']:.1f} s | {rb or 0:.0f} -> {row['resolver_peak_mb']:.0f} "
                  f"(-> {row['resolver_after_mb']:.0f}) MB | {row['resolver_peak_mb'] / rb if rb else 0:.2f}x | "
                  f"{row['feedsync_before_mb']:.0f} -> {row['feedsync_peak_mb']:.0f} MB |")
        print(f"resolver peak/steady over the swaps: median {x['resolver_ratio_median']}, max "
              f"{x['resolver_ratio_max']}; dnsperf during them: {x['dnsperf']}")
    if "ixfr" in out:
        x = out["ixfr"]
        axfr = f"{x['axfr_s']:.1f} s" if x["axfr_s"] is not None else "reused"
        print(f"| IXFR: {x['changes']:,} changes on {x['rules']:,} rules | resolver asked after median "
              f"{x['reload_median_s']:.2f} s, loaded after median {x['loaded_median_s']:.2f} s (target <= 1 s) | "
              f"whole cycle median {x['median_s']:.2f} s | RSS {x['steady_mb']:.0f} -> peak {x['peak_mb']:.0f} MB "
              f"({x['peak_mb'] / max(x['steady_mb'], 1):.2f}x) | initial AXFR {axfr} | restart from the seed "
              f"{'reused' if x['seed_s'] is None else format(x['seed_s'], '.1f') + ' s'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
