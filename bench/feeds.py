"""Feed benchmarks: a signed bundle verified, compiled and activated; an IXFR of M changes from a
real Knot primary applied after NOTIFY. One command:

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
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from feedsync import bundle as b
from feedsync import config as fconfig
from feedsync.control import ControlClient
from feedsync.publish import Repository, keygen, signers_from_dir
from feedsync.statedb import StateDB
from feedsync.sync import FeedSync
from tests.integration.feedsync.knot import Knot


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
    """The resolver's control socket, reduced to confirming the serial of active.rpz's SOA line."""

    def __init__(self, path: str, zone: str, active: str) -> None:
        self.active = active
        self.zone = zone
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(4)
        self.reloaded_at: list[float] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serial(self) -> int:
        with open(self.active, "rb") as f:
            for _ in range(50):
                line = f.readline()
                parts = line.split()
                if b"SOA" in parts:
                    return int(parts[parts.index(b"SOA") + 3])
        return -1

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                self.reloaded_at.append(time.monotonic())
                conn.sendall(json.dumps({"ok": True, "zones": {self.zone: self._serial()}}).encode() + b"\n")


def entries(n: int, now: float, salt: int = 0) -> list[dict]:
    issued, eff, exp = b.format_time(now - 86400), b.format_time(now - 3600), b.format_time(now + 90 * 86400)
    return [{"entry_id": f"E-{i}", "order_ref": f"TW-2026-{i}", "issuing_authority": "Synthetic Court",
             "legal_basis": "Example Act art. 8", "category": "fraud",
             "target": f"s{i}-{salt}.d{i % 5000}.bad.test" if i < 1000 else f"s{i}.d{i % 5000}.bad.test",
             "match": "subdomains" if i % 10 == 0 else "exact", "action": "nxdomain", "stop_page": "",
             "issued_at": issued, "effective_at": eff, "expires_at": exp, "appeal_contact": "appeals@hotline.test",
             "retention_days": 180} for i in range(n)]


def bench_bundle(n: int, runs: int, work: str) -> dict:
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

    handler = functools.partial(Quiet, directory=repo)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    state, run = os.path.join(work, "state"), os.path.join(work, "run")
    root = os.path.join(work, "root.json")
    shutil.copy(os.path.join(repo, "metadata", "1.root.json"), root)
    cfg = fconfig.loads(f"""[node]
state_dir = "{state}"
runtime_dir = "{run}"
[[feed]]
name = "hotline"
type = "bundle"
zone = "hotline.rpz.test"
url = "http://127.0.0.1:{srv.server_address[1]}/"
trusted_root = "{root}"
blast_radius = 1.0
""")
    conf = Confirmer(cfg.control_socket, "hotline.rpz.test", os.path.join(cfg.feed_dir("hotline"), "active.rpz"))
    db = StateDB(os.path.join(state, "feeds", "feedsync.db"))
    times, peaks, size, to_reload = [], [], 0, []
    sync = FeedSync(cfg, cfg.feed("hotline"), db, ControlClient(cfg.control_socket))
    for k in range(runs):
        data = b.dump_bundle("hotline", k + 1, int(now.timestamp()), entries(n, now.timestamp(), k))
        size = len(data)
        r.publish(data, k + 1, signers, now=now)
        del data
        gc.collect()
        steady = rss_mb()
        reset_peak()
        t0 = time.perf_counter()
        m0 = time.monotonic()
        res = sync.cycle()
        times.append(time.perf_counter() - t0)
        to_reload.append(conf.reloaded_at[-1] - m0)
        peaks.append((steady, hwm_mb()))
        assert res.outcome == "applied", res
        print(f"  bundle run {k + 1} ({'cold' if k == 0 else 'warm'}): {times[-1]:.2f} s "
              f"(resolver asked after {to_reload[-1]:.2f} s), rss {steady:.0f} -> peak {hwm_mb():.0f} MB",
              file=sys.stderr)
    srv.shutdown()
    warm = times[1:] or times
    return {"rules": n, "bundle_mb": size / 1e6, "cold_s": times[0], "cold_reload_s": to_reload[0],
            "warm_median_s": statistics.median(warm),
            "warm_reload_median_s": statistics.median(to_reload[1:] or to_reload),
            "runs": times, "peak_mb": max(p for _, p in peaks), "before_mb": statistics.median(s for s, _ in peaks)}


def bench_ixfr(n: int, changes: int, runs: int, work: str) -> dict:
    zone = "feed.rpz.test"
    rules = [f"s{i}.d{i % 5000}.bad.test CNAME ." for i in range(n)]
    knot = Knot(os.path.join(work, "knot"), zone, rules, 10, notify_port=None, zonemd=False,
                secret=base64.b64encode(os.urandom(32)).decode()).start()
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
tsig_secret = "{knot.secret}"
blast_radius = 1.0
transfer_timeout = 600
""")
    conf = Confirmer(cfg.control_socket, zone, os.path.join(cfg.feed_dir("twnic"), "active.rpz"))
    try:
        return _ixfr_runs(cfg, knot, rules, zone, state, changes, runs, n, conf)
    finally:
        knot.stop()


def _ixfr_runs(cfg: fconfig.Config, knot: Knot, rules: list[str], zone: str, state: str, changes: int, runs: int,
               n: int, conf: Confirmer) -> dict:
    db = StateDB(os.path.join(state, "feeds", "feedsync.db"))
    sync = FeedSync(cfg, cfg.feed("twnic"), db, ControlClient(cfg.control_socket))
    t0 = time.perf_counter()
    res = sync.cycle()
    axfr_s = time.perf_counter() - t0
    assert res.outcome == "applied", res
    print(f"  initial AXFR of {n} rules applied in {axfr_s:.1f} s", file=sys.stderr)
    times, mems, to_reload = [], [], []
    serial = knot.soa_serial() or 10
    for k in range(runs):
        # M changes: half removed, half added
        lo = k * changes // 2
        cur = rules[:lo] + rules[lo + changes // 2:] + [f"new{k}-{j}.fresh.test CNAME ." for j in range(changes // 2)]
        rules = cur
        serial += 10
        knot.write_zone(rules, serial)
        knot.reload()
        knot.wait_serial(serial, timeout=600)
        gc.collect()
        steady = rss_mb()
        reset_peak()
        t0 = time.perf_counter()
        m0 = time.monotonic()
        res = sync.cycle()
        times.append(time.perf_counter() - t0)
        to_reload.append(conf.reloaded_at[-1] - m0)
        mems.append((steady, hwm_mb()))
        assert res.outcome == "applied" and db.audit("twnic", limit=1)[0].record["extra"]["transfer"] == "ixfr", res
        print(f"  IXFR run {k + 1}: resolver asked after {to_reload[-1]:.2f} s, cycle {times[-1]:.2f} s, "
              f"rss {steady:.0f} -> peak {hwm_mb():.0f} MB", file=sys.stderr)
    return {"rules": n, "changes": changes, "axfr_s": axfr_s, "median_s": statistics.median(times), "runs": times,
            "reload_median_s": statistics.median(to_reload), "reload_runs": to_reload,
            "steady_mb": statistics.median(s for s, _ in mems), "peak_mb": statistics.median(p for _, p in mems)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rules", type=int, default=1_000_000)
    ap.add_argument("--changes", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", choices=["bundle", "ixfr"])
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="feedbench-")
    out: dict = {"machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, Python "
                            f"{platform.python_version()}", "load": os.getloadavg()}
    try:
        if args.only in (None, "bundle"):
            out["bundle"] = bench_bundle(args.rules, args.runs, work)
        if args.only in (None, "ixfr"):
            out["ixfr"] = bench_ixfr(args.rules, args.changes, args.runs, work)
    finally:
        if not os.environ.get("KEEP"):
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=2))
    if "bundle" in out:
        x = out["bundle"]
        print(f"\n| bundle: {x['rules']:,} entries ({x['bundle_mb']:.0f} MB) | cold {x['cold_s']:.1f} s "
              f"(resolver asked at {x['cold_reload_s']:.1f} s) | warm median {x['warm_median_s']:.1f} s (asked at "
              f"{x['warm_reload_median_s']:.1f} s) | target <= 10 s | RSS {x['before_mb']:.0f} -> peak "
              f"{x['peak_mb']:.0f} MB |")
    if "ixfr" in out:
        x = out["ixfr"]
        print(f"| IXFR: {x['changes']:,} changes on {x['rules']:,} rules | resolver asked after median "
              f"{x['reload_median_s']:.2f} s (target <= 1 s) | whole cycle median {x['median_s']:.2f} s | "
              f"RSS {x['steady_mb']:.0f} -> peak {x['peak_mb']:.0f} MB "
              f"({x['peak_mb'] / max(x['steady_mb'], 1):.2f}x) | initial AXFR {x['axfr_s']:.1f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
