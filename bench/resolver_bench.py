#!/usr/bin/env python3
"""Resolver throughput benchmark: hotline-edge against Unbound, BIND and PowerDNS Recursor.

Run as root through ``bench/run.sh resolver`` (see bench/README.md). Everything runs in a private
network namespace that holds only ``lo``: the NSD authority and dnsperf on CPU 0, the server under
test on CPU 1, one worker thread/process each, all on the same RPZ zone (1,000,000 QNAME rules by
default). Per server and pass:

  load     seconds until the first answer and until the last local-data rule is enforced; RSS
  allowed  max-rate QPS on 1,000 cached allowed names        (dnsperf -c 4 -Q 500000 -l DUR)
  blocked  max-rate QPS on RPZ hits drawn from the zone
  mix      max-rate QPS on 95 % allowed / 5 % blocked
  latency  p50/p99 at a fixed LATQPS (10,000 q/s) on the mix workload (dnsperf -v)
  lost@80% (ours) queries lost at 80 % of our own max rate, mix and blocked

Our resolver forwards to a plain Unbound (no RPZ) on CPU 0; that Unbound answering the same mix
directly at LATQPS is the baseline for "latency added by our hop". Results: OUT/results.tsv,
OUT/loads.tsv and OUT/summary.md (medians over the passes, ratios to the references).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
def render_conf(name: str, **subst: str) -> str:
    """bench/conf/NAME with its {KEY} placeholders replaced (PORT is 53 unless given)."""
    text = (HERE / "conf" / name).read_text()
    for k, v in {"PORT": "53", **subst}.items():
        text = text.replace("{" + k + "}", v)
    return text


def loopback_resolver_toml(port: int) -> str:
    """The [resolver] table of a hotline-edge benchmark node: one worker on 127.0.0.1:PORT, answering
    loopback clients, with an upstream that is never asked (the benchmarks ask blocked names)."""
    return f"""[resolver]
listen = ["127.0.0.1:{port}"]
upstreams = ["127.0.0.1:9"]
allow = ["127.0.0.0/8"]
workers = 1
"""


NS = os.environ.get("NETNS", "hebench")   # a benchmark running beside another: its own namespace
ADDR = {"nsd": "127.0.0.2", "unbound": "127.0.0.11", "bind": "127.0.0.12", "pdns": "127.0.0.13",
        "upstream": "127.0.0.14", "ours": "127.0.0.20"}
SERVERS = ("ours", "unbound", "bind", "pdns")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def nsexec(*argv: str, cpu: int | None = None) -> list[str]:
    cmd = ["ip", "netns", "exec", NS]
    if cpu is not None:
        cmd += ["taskset", "-c", str(cpu)]
    return cmd + list(argv)


class Bench:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.made_netns = False      # prepare() made the namespace: stop_all() removes it
        self.data = Path(a.data)
        self.run = Path(a.run)
        self.out = Path(a.out)
        self.zone = self.data / f"rpz-{a.size}.zone"
        self.procs: list[subprocess.Popen[bytes]] = []
        for d in ("nsd", "upstream", "unbound", "bind", "pdns", "ours", "logs"):
            (self.run / d).mkdir(parents=True, exist_ok=True)
        self.out.mkdir(parents=True, exist_ok=True)
        self.results = self.out / "results.tsv"
        self.loads = self.out / "loads.tsv"
        if not self.results.exists():
            self.results.write_text("pass\tserver\tworkload\tqps\tlost\tsent\tsrv_cpu\tdnsperf_cpu\tp50_ms\tp99_ms\n")
        if not self.loads.exists():
            self.loads.write_text("pass\tserver\tfirst_answer_s\tenforced_s\trss_mb\n")

    # -- set-up --------------------------------------------------------------------------------
    def prepare(self) -> None:
        if not self.zone.exists():
            log(f"generating data into {self.data} (gen_data.py)")
            subprocess.run([sys.executable, str(HERE / "gen_data.py"), "--out", str(self.data)], check=True)
        if subprocess.run(["ip", "netns", "list"], check=False, capture_output=True, text=True).stdout.find(NS) < 0:
            subprocess.run(["ip", "netns", "add", NS], check=True)
            self.made_netns = True          # removed again by stop_all (one found here is left alone)
        subprocess.run(nsexec("ip", "link", "set", "lo", "up"), check=True)
        for addr in ADDR.values():
            subprocess.run(nsexec("ip", "addr", "add", f"{addr}/8", "dev", "lo"), check=False, capture_output=True)

    def conf(self, name: str, **subst: str) -> str:
        return render_conf(name, DATA=str(self.data), RUN=str(self.run), **subst)

    def spawn(self, argv: list[str], logname: str, cpu: int,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        f = (self.run / "logs" / f"{logname}.log").open("ab")
        p = subprocess.Popen(nsexec(*argv, cpu=cpu), stdout=f, stderr=subprocess.STDOUT, env=env)
        self.procs.append(p)
        return p

    def start_nsd(self) -> None:
        path = self.run / "nsd" / "nsd.conf"
        path.write_text(self.conf("nsd.conf"))
        self.spawn(["nsd", "-d", "-c", str(path)], "nsd", cpu=0)
        self.wait_answer("127.0.0.2", "host1.bench.test", 30)
        upstream = self.run / "upstream" / "unbound.conf"
        upstream.write_text(self.conf("unbound.conf", ADDR=ADDR["upstream"], NAME="upstream", RPZ=""))
        self.spawn(["unbound", "-d", "-c", str(upstream)], "upstream-unbound", cpu=0)
        self.wait_answer(ADDR["upstream"], "host1.bench.test", 30)
        fwd = self.data / "q-forward.txt"
        if not fwd.exists():
            fwd.write_text("".join(f"host{i}.bench.test A\n" for i in range(0, 100_000, 2)))
        subprocess.run(nsexec("dnsperf", "-s", ADDR["upstream"], "-p", "53", "-d", str(fwd), "-n", "1", "-c", "4",
                              "-Q", "20000", cpu=0), check=False, capture_output=True)   # upstream: all cached
        log("authority (NSD) and our upstream (plain Unbound, warm) up on CPU 0")

    def start(self, server: str, pool: int = 0) -> subprocess.Popen[bytes]:
        z = str(self.zone)
        if server == "unbound":
            rpz = f'rpz:\n    name: "rpz.test"\n    zonefile: "{z}"\n    rpz-log: no'
            path = self.run / "unbound" / "unbound.conf"
            path.write_text(self.conf("unbound.conf", ADDR=ADDR["unbound"], NAME="unbound", RPZ=rpz))
            return self.spawn(["unbound", "-d", "-c", str(path)], "unbound", cpu=1)
        if server == "bind":
            for j in (self.run / "bind").glob("*.jnl"):
                j.unlink()
            path = self.run / "bind" / "named.conf"
            path.write_text(self.conf("named.conf", ZONE=z))
            return self.spawn(["named", "-g", "-n", "1", "-c", str(path)], "bind", cpu=1)
        if server == "pdns":
            (self.run / "pdns" / "recursor.conf").write_text(self.conf("recursor.conf", ADDR=ADDR["pdns"]))
            (self.run / "pdns" / "rpz.lua").write_text(f'rpzFile("{z}", {{policyName="rpz.test"}})\n')
            return self.spawn(["pdns_recursor", f"--config-dir={self.run / 'pdns'}"], "pdns", cpu=1)
        cfg = self.run / "ours" / "config.toml"
        cfg.write_text(f"""[node]
id = "bench"
state_dir = "{self.run}/ours"
runtime_dir = "{self.run}/ours"

[resolver]
listen = ["{ADDR['ours']}:53"]
upstreams = ["{ADDR['upstream']}:53"]
allow = ["127.0.0.0/8"]
workers = 1
upstream_sockets = {pool}

[[policy.zone]]
file = "{z}"
ede = 17
ede_text = "order {{order_ref}}"
""")
        env = dict(os.environ, PYTHONPATH=str(REPO))
        return self.spawn([self.a.python, "-c", "import sys; from admin_api.cli import main; sys.exit(main())",
                           "serve", "--config", str(cfg)], "ours", cpu=1, env=env)

    def stop(self, p: subprocess.Popen[bytes]) -> None:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            self.stop(p)
        # NSD forks; its children follow the pidfile process, which SIGTERM above reached
        pidfile = self.run / "nsd" / "nsd.pid"
        if pidfile.exists():
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pidfile.read_text().split()[0]), signal.SIGTERM)
        if self.made_netns:                   # the namespace this run made goes with it
            time.sleep(0.5)                       # (NSD's children leave after their parent)
            r = subprocess.run(["ip", "netns", "delete", NS], check=False, capture_output=True, text=True)
            if r.returncode != 0:
                log(f"could not remove network namespace {NS}: {r.stderr.strip()} (ip netns delete {NS})")
            self.made_netns = False

    # -- probing ---------------------------------------------------------------------------------
    def query(self, addr: str, name: str, qid: int, timeout: float = 0.05) -> bytes | None:
        q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
        pkt = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + b"\x00\x01\x00\x01"
        out = subprocess.run(nsexec(self.a.python, "-c", PROBE, addr, pkt.hex(), str(timeout)),
                             check=False, capture_output=True, text=True)
        return bytes.fromhex(out.stdout.strip()) if out.stdout.strip() else None

    def wait_answer(self, addr: str, name: str, deadline: float) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < deadline:
            r = self.query(addr, name, 1, 0.2)
            if r is not None and r[3] & 0xF in (0, 3):
                return time.monotonic() - t0
            time.sleep(0.05)
        raise TimeoutError(f"{addr}: no answer for {name} within {deadline}s")

    def probe_load(self, server: str, t0: float, proc: subprocess.Popen[bytes]) -> tuple[float, float]:
        """Seconds from start until an allowed answer and until the last local-data rule works."""
        addr = ADDR[server]
        rule = (self.data / f"probes-{self.a.size}.txt").read_text().split()[0]
        first = enforced = None
        while time.monotonic() - t0 < self.a.load_timeout:
            if proc.poll() is not None:
                tail = (self.run / "logs" / f"{server}.log").read_text(errors="replace")[-1500:]
                raise RuntimeError(f"{server} exited with {proc.returncode}:\n{tail}")
            if first is None:
                r = self.query(addr, "host1.bench.test", 2, 0.1)
                if r is not None and r[3] & 0xF == 0 and len(r) > 40:
                    first = time.monotonic() - t0
            r = self.query(addr, rule, 3, 0.1)
            if r is not None and bytes([192, 0, 2, 1]) in r[12:]:
                enforced = time.monotonic() - t0
                if first is None:
                    first = enforced
                break
            time.sleep(0.05)
        if enforced is None:
            raise TimeoutError(f"{server}: policy not enforced within {self.a.load_timeout}s")
        return first or enforced, enforced

    # -- measuring -------------------------------------------------------------------------------
    def perf(self, pass_no: int, server: str, pid: int, workload: str, qfile: Path) -> float:
        addr = ADDR[server]
        subprocess.run(nsexec("dnsperf", "-s", addr, "-p", "53", "-d", str(qfile), "-n", "1", "-c", "4",
                              "-Q", "50000", cpu=0), check=False, capture_output=True)        # warm-up pass
        t_a = _ticks(pid)
        out = self._dnsperf_full(addr, qfile, self.a.dur, 500000)
        srv_cpu = (_ticks(pid) - t_a) / os.sysconf("SC_CLK_TCK") / self.a.dur * 100
        qps, lost, sent, dp_cpu = _parse(out)
        p50 = p99 = float("nan")
        if workload in ("mix", "allowed"):
            p50, p99 = self.latency(addr, qfile)
        self._row(pass_no, server, workload, qps, lost, sent, srv_cpu, dp_cpu, p50, p99)
        lat = f" p50={p50:.3f}ms p99={p99:.3f}ms @{self.a.latqps}" if p99 == p99 else ""
        log(f"{server:8s} {workload:8s} qps={qps:,.0f} lost={lost} server_cpu={srv_cpu:.0f}% "
            f"dnsperf_cpu={dp_cpu:.0f}%{lat}")
        return qps

    def _dnsperf_full(self, addr: str, qfile: Path, seconds: float, qps: int, verbose: bool = False,
                      once: bool = False) -> str:
        argv = ["/usr/bin/time", "-f", "DNSPERF_CPU %U %S %e", "dnsperf", "-s", addr, "-p", "53", "-d", str(qfile),
                "-c", "4", "-Q", str(qps)] + (["-n", "1"] if once else ["-l", str(seconds)])
        if verbose:
            argv.append("-v")
        r = subprocess.run(nsexec(*argv, cpu=0), check=False, capture_output=True, text=True)
        return r.stdout + r.stderr

    def latency(self, addr: str, qfile: Path) -> tuple[float, float]:
        out = self._dnsperf_full(addr, qfile, self.a.latdur, self.a.latqps, verbose=True)
        lat = sorted(float(line.rsplit(None, 1)[1]) for line in out.splitlines() if line.startswith("> ")
                     and _is_float(line.rsplit(None, 1)[1]))
        if not lat:
            return float("nan"), float("nan")
        return lat[len(lat) // 2] * 1000, lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1000

    def forwarded(self, pass_no: int, pid: int, label: str) -> None:
        """Ours with every query a cache miss (50,000 distinct names its upstream has cached): the
        cost of the forwarding path itself (a fresh socket and ID per upstream query)."""
        t_a = _ticks(pid)
        t0 = time.monotonic()
        out = self._dnsperf_full(ADDR["ours"], self.data / "q-forward.txt", 0, 500000, once=True)
        srv_cpu = (_ticks(pid) - t_a) / os.sysconf("SC_CLK_TCK") / max(time.monotonic() - t0, 0.001) * 100
        qps, lost, sent, dp_cpu = _parse(out)
        self._row(pass_no, "ours", label, qps, lost, sent, srv_cpu, dp_cpu, float("nan"), float("nan"))
        log(f"ours     {label} qps={qps:,.0f} lost={lost} server_cpu={srv_cpu:.0f}% (every query a cache miss)")

    def lost_at(self, pass_no: int, server: str, workload: str, qfile: Path, rate: int) -> None:
        out = self._dnsperf_full(ADDR[server], qfile, self.a.dur, rate)
        qps, lost, sent, _ = _parse(out)
        self._row(pass_no, server, f"{workload}@80%", qps, lost, sent, float("nan"), float("nan"),
                  float("nan"), float("nan"))
        log(f"{server:8s} {workload}@80% target={rate:,} achieved={qps:,.0f} lost={lost} of {sent}")

    def _row(self, *vals: object) -> None:
        with self.results.open("a") as f:
            f.write("\t".join(_fmt(v) for v in vals) + "\n")

    # -- one pass ---------------------------------------------------------------------------------
    def one(self, pass_no: int, server: str) -> None:
        t0 = time.monotonic()
        p = self.start(server)
        try:
            first, enforced = self.probe_load(server, t0, p)
            time.sleep(2)
            rss = _rss_mb(p.pid, server)
            with self.loads.open("a") as f:
                f.write(f"{pass_no}\t{server}\t{first:.2f}\t{enforced:.2f}\t{rss:.0f}\n")
            log(f"{server:8s} loaded: first answer {first:.2f}s, enforced {enforced:.2f}s, RSS {rss:.0f} MB")
            pid = p.pid   # ip netns exec and taskset exec the server: same PID
            size = self.a.size
            mx = {}
            for workload, qfile in (("allowed", self.data / "q-allowed.txt"),
                                    ("blocked", self.data / f"q-blocked-{size}.txt"),
                                    ("mix", self.data / f"q-mix-{size}.txt")):
                mx[workload] = (self.perf(pass_no, server, pid, workload, qfile), qfile)
            if server == "ours":
                self.forwarded(pass_no, pid, "forwarded")
                for workload in ("mix", "blocked"):
                    qps, qfile = mx[workload]
                    self.lost_at(pass_no, server, workload, qfile, int(qps * 0.8))
        finally:
            self.stop(p)
            self.procs.remove(p)
        if server == "ours":   # the forwarding path again with a pool of 16 upstream sockets
            p = self.start(server, pool=16)
            try:
                self.probe_load(server, time.monotonic(), p)
                self.forwarded(pass_no, p.pid, "forwarded-pool16")
            finally:
                self.stop(p)
                self.procs.remove(p)

    def baseline(self, pass_no: int) -> None:
        """Our upstream answering the allowed names itself (warm): what clients see without our hop."""
        qfile = self.data / "q-allowed.txt"
        subprocess.run(nsexec("dnsperf", "-s", ADDR["upstream"], "-p", "53", "-d", str(qfile), "-n", "1", "-c", "4",
                              "-Q", "50000", cpu=0), check=False, capture_output=True)
        p50, p99 = self.latency(ADDR["upstream"], qfile)
        self._row(pass_no, "upstream-direct", "allowed", float("nan"), 0, 0, float("nan"), float("nan"), p50, p99)
        log(f"upstream (plain Unbound, CPU 0) answering the allowed names directly: p50={p50:.3f}ms p99={p99:.3f}ms")


PROBE = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(float(sys.argv[3]))
pkt = bytes.fromhex(sys.argv[2])
try:
    s.sendto(pkt, (sys.argv[1], 53))
    while True:
        d = s.recv(65535)
        if d[:2] == pkt[:2]:
            print(d.hex())
            break
except OSError:
    pass
"""


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _is_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _parse(out: str) -> tuple[float, int, int, float]:
    rate = re.search(r"Queries per second:\s+([\d.]+)", out)
    qps = float(rate.group(1)) if rate else 0.0
    m = re.search(r"Queries lost:\s+(\d+)", out)
    lost = int(m.group(1)) if m else -1
    m = re.search(r"Queries sent:\s+(\d+)", out)
    sent = int(m.group(1)) if m else 0
    m = re.search(r"DNSPERF_CPU ([\d.]+) ([\d.]+) ([\d.]+)", out)
    cpu = (float(m.group(1)) + float(m.group(2))) / max(float(m.group(3)), 0.001) * 100 if m else float("nan")
    return qps, lost, sent, cpu


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return "NA" if v != v else f"{v:.3f}"
    return str(v)


def _ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except OSError:
        return 0


def _rss_mb(pid: int, server: str) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


# -- summary ----------------------------------------------------------------------------------------

def summarize(out: Path, a: argparse.Namespace) -> str:
    import csv
    rows = list(csv.DictReader(out.joinpath("results.tsv").open(), delimiter="\t"))
    loads = list(csv.DictReader(out.joinpath("loads.tsv").open(), delimiter="\t"))

    def vals(server: str, workload: str, col: str) -> list[float]:
        return [float(r[col]) for r in rows if r["server"] == server and r["workload"] == workload
                and r[col] not in ("NA", "nan", "")]

    def med(v: list[float]) -> float:
        return statistics.median(v) if v else float("nan")

    def cell(v: list[float], fmt: str = "{:,.0f}") -> str:
        if not v:
            return "-"
        m = fmt.format(med(v))
        return m if len(v) == 1 else f"{m} ({fmt.format(min(v))}-{fmt.format(max(v))})"

    passes = len({r["pass"] for r in rows})
    lines = [f"passes: {passes}; zone: {a.size:,} QNAME rules; {a.dur}s per max-rate run; latency at "
             f"{a.latqps:,} q/s for {a.latdur}s; dnsperf on CPU 0, each server on CPU 1 (one thread/worker); "
             "cells: median (min-max)", ""]
    lines += ["| server | first answer s | RPZ enforced s | RSS MB |", "|---|---|---|---|"]
    for s in SERVERS:
        lv = [r for r in loads if r["server"] == s]
        if lv:
            lines.append(f"| {s} | {cell([float(r['first_answer_s']) for r in lv], '{:.2f}')} | "
                         f"{cell([float(r['enforced_s']) for r in lv], '{:.2f}')} | "
                         f"{cell([float(r['rss_mb']) for r in lv])} |")
    lines += ["", "| server | allowed QPS | blocked QPS | mix QPS | p99 ms allowed @10k | p99 ms mix @10k | "
              "QPS per server CPU-second (blocked) | server CPU % (blocked) | dnsperf CPU % (blocked) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for s in SERVERS:
        per_cpu = [float(r["qps"]) / float(r["srv_cpu"]) * 100 for r in rows if r["server"] == s and
                   r["workload"] == "blocked" and r["srv_cpu"] not in ("NA", "0.000")]
        lines.append(f"| {s} | {cell(vals(s, 'allowed', 'qps'))} | {cell(vals(s, 'blocked', 'qps'))} | "
                     f"{cell(vals(s, 'mix', 'qps'))} | {cell(vals(s, 'allowed', 'p99_ms'), '{:.3f}')} | "
                     f"{cell(vals(s, 'mix', 'p99_ms'), '{:.3f}')} | {cell(per_cpu)} | "
                     f"{cell(vals(s, 'blocked', 'srv_cpu'))} | {cell(vals(s, 'blocked', 'dnsperf_cpu'))} |")
    base = vals("upstream-direct", "allowed", "p99_ms")
    lines.append(f"| plain Unbound (our upstream, CPU 0), allowed names asked directly | - | - | - | "
                 f"{cell(base, '{:.3f}')} | - | - | - | - |")
    ours = {w: med(vals("ours", w, "qps")) for w in ("allowed", "blocked", "mix")}
    ratio = ["", "| criterion (issue 3) | measured (medians) | target | met |", "|---|---|---|---|"]

    def crit(name: str, value: float, target: str, ok: bool, fmt: str = "{:.2f}x") -> None:
        if math.isnan(value):       # a server left out of this run (or with no result)
            ratio.append(f"| {name} | not measured in this run | {target} | - |")
            return
        ratio.append(f"| {name} | {fmt.format(value)} | {target} | {'yes' if ok else 'no'} |")

    ub = {w: med(vals("unbound", w, "qps")) for w in ("allowed", "blocked", "mix")}
    pd = med(vals("pdns", "blocked", "qps"))
    bd = med(vals("bind", "blocked", "qps"))
    crit("blocked QPS, ours / Unbound", ours["blocked"] / ub["blocked"], ">= 0.8x",
         ours["blocked"] >= 0.8 * ub["blocked"])
    crit("blocked QPS, ours / PowerDNS (goal)", ours["blocked"] / pd, "goal 1.0x", ours["blocked"] >= pd)
    crit("blocked QPS, ours / BIND", ours["blocked"] / bd, "-", True)
    crit("allowed QPS, ours / Unbound", ours["allowed"] / ub["allowed"], ">= 0.6x",
         ours["allowed"] >= 0.6 * ub["allowed"])
    added = med(vals("ours", "allowed", "p99_ms")) - med(base)
    crit(f"p99 added by our hop at {a.latqps:,} q/s, allowed names (ours - upstream asked directly)", added,
         "<= 0.2 ms", added <= 0.2, "{:.3f} ms")
    ub_cpu = [float(r["qps"]) / float(r["srv_cpu"]) * 100 for r in rows if r["server"] == "unbound" and
              r["workload"] == "blocked" and r["srv_cpu"] not in ("NA", "0.000")]
    our_cpu = [float(r["qps"]) / float(r["srv_cpu"]) * 100 for r in rows if r["server"] == "ours" and
               r["workload"] == "blocked" and r["srv_cpu"] not in ("NA", "0.000")]
    if ub_cpu and our_cpu:
        crit("blocked QPS per server CPU-second, ours / Unbound (less sensitive to a busy host)",
             med(our_cpu) / med(ub_cpu), "-", True)
    lost = sum(int(r["lost"]) for r in rows if r["server"] == "ours" and r["workload"].endswith("@80%"))
    sent = sum(int(r["sent"]) for r in rows if r["server"] == "ours" and r["workload"].endswith("@80%"))
    crit("lost queries at 80 % of our max (mix and blocked, all passes)", lost, "0", lost == 0,
         "{:.0f} of " + f"{sent:,}")
    for w in ("mix@80%", "blocked@80%"):
        crit(f"rate achieved in the {w} runs (of the 80 % target)", med(vals("ours", w, "qps")), "-", True,
             "{:,.0f} q/s")
    for label, what in (("forwarded", "a fresh socket per upstream query"),
                        ("forwarded-pool16", "upstream_sockets = 16")):
        fw = vals("ours", label, "qps")
        if fw:
            crit(f"forwarded QPS, every query a cache miss at ours and a hit at the upstream ({what})", med(fw),
                 "-", True, "{:,.0f} q/s")
    lines += ratio
    m = platform.uname()
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "?")
    lines += ["", f"machine: {cpu}, {os.cpu_count()} CPUs, kernel {m.release}; load average at the end: "
              f"{_loadavg()}"]
    text = "\n".join(lines) + "\n"
    out.joinpath("summary.md").write_text(text)
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("servers", nargs="*", default=list(SERVERS), help="subset of: " + " ".join(SERVERS))
    ap.add_argument("--size", type=int, default=int(os.environ.get("SIZE", "1000000")))
    ap.add_argument("--passes", type=int, default=int(os.environ.get("PASSES", "3")))
    ap.add_argument("--dur", type=float, default=float(os.environ.get("DUR", "15")))
    ap.add_argument("--latqps", type=int, default=int(os.environ.get("LATQPS", "10000")))
    ap.add_argument("--latdur", type=float, default=float(os.environ.get("LATDUR", "10")))
    ap.add_argument("--data", default=os.environ.get("DATA", "/tmp/hotline-bench/data"))
    ap.add_argument("--run", default=os.environ.get("RUN", "/tmp/hotline-bench/run"))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    ap.add_argument("--out", default=os.environ.get("OUT", f"/tmp/hotline-bench/results-{stamp}"))
    ap.add_argument("--python", default=os.environ.get("PYTHON", sys.executable))
    ap.add_argument("--load-timeout", type=float, default=600)
    ap.add_argument("--summarize", metavar="OUT", help="only print the summary of an earlier run")
    a = ap.parse_args()
    if a.summarize:
        a.out = a.summarize
        print(summarize(Path(a.summarize), a))
        return 0
    if os.geteuid() != 0:
        print("run as root (network namespace, port 53)", file=sys.stderr)
        return 2
    for tool in ("dnsperf", "nsd", "unbound", "named", "pdns_recursor", "taskset", "ip"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            print(f"missing {tool}: apt-get install dnsperf nsd unbound bind9 pdns-recursor util-linux iproute2",
                  file=sys.stderr)
            return 2
    b = Bench(a)
    b.prepare()
    log(f"results in {b.out}; load average {_loadavg()}")
    try:
        b.start_nsd()
        for n in range(1, a.passes + 1):
            order = a.servers[n - 1 :] + a.servers[: n - 1]      # rotate the order per pass
            log(f"pass {n}/{a.passes}: {' '.join(order)}")
            b.baseline(n)
            for server in order:
                b.one(n, server)
    finally:
        b.stop_all()
    print(summarize(b.out, a))
    return 0


if __name__ == "__main__":
    sys.exit(main())
