#!/usr/bin/env python3
"""Policy-core benchmark: zone load, memory per rule, decisions per second; PowerDNS Recursor
(and optionally Unbound and BIND) loading the same zone in the same run.

    bench/run.sh rpz                         1M rules: ours (text, snapshot) vs PowerDNS, 3 passes
    bench/run.sh rpz --sizes 1000000,8000000 --refs pdns,unbound,bind
    bench/run.sh rpz --quick                 100k rules, 1 pass (a smoke test of the harness)

Every measurement runs in a fresh process pinned to CPU 1 (taskset); medians over the passes are
printed as the markdown table kept in BENCHMARKS.md, raw numbers go to OUT/rpz-results.json.

What is measured, per zone size N (zones from bench/gen_data.py, the shared generator):
  load_text      exec -> the zone text compiled and the probe name decided (the last local-data rule)
  load_snapshot  exec -> the compiled snapshot mapped and the probe decided
  rss            resident memory after loading, minus the same process with nothing loaded
                 (Python + numpy + our modules), per rule; for the snapshot also after every page
                 was touched by a full pass over the blocked query set
  decisions/s    one core, in process: the blocked query set (and the allowed set) through
                 Policy.evaluate (no cache), then through Policy.evaluate_query (decision cache);
                 batched: the same names through Policy.decide_qnames in batches of 100,000 and of
                 64 (median of 3 passes; a set smaller than a batch is one batch, shown with its size)
  reference      the resolver started with the zone -> the probe name answered with 192.0.2.1
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable

CHILD = r"""
import os, sys, time
t0 = float(sys.argv[1]); mode = sys.argv[2]; path = sys.argv[3]; probe = sys.argv[4]
def rss():
    with open('/proc/self/status') as f:
        for l in f:
            if l.startswith('VmRSS'):
                return int(l.split()[1]) * 1024
from rpz import names
from rpz.policy import Policy, PolicyZone, Stage, ZoneSettings
from rpz.snapshot import open_snapshot
from rpz.zone import compile_text
import numpy
base_rss = rss()
if mode == 'empty':
    print(f'RESULT {time.time() - t0:.4f} {base_rss} 0 0'); sys.exit()
if mode == 'text':
    with open(path, 'rb') as f:
        zone = compile_text(f.read(), path)
else:
    zone = open_snapshot(path)
p = Policy([PolicyZone(zone, ZoneSettings())])
d = p.evaluate(None, 1, [Stage(names.from_text(probe + '.').lower())])
assert d is not None and d.records and d.records[0].rdata == bytes([192, 0, 2, 1]), d
ready = time.time() - t0
loaded_rss = rss()
touched_rss = loaded_rss
qfile = sys.argv[5] if len(sys.argv) > 5 else ''
if qfile:  # touch the pages: every query of the set, without keeping the set in memory
    with open(qfile) as f:
        for l in f:
            zone.qname.match(names.from_text(l.split()[0] + '.').lower())
    touched_rss = rss()
print(f'RESULT {ready:.4f} {loaded_rss} {touched_rss} {zone.stats.rules}')
"""

RATE = r"""
import sys, time
BATCHES = @BATCHES@
from rpz import names
from rpz.policy import Policy, PolicyZone, Stage, ZoneSettings
from rpz.snapshot import open_snapshot
zone = open_snapshot(sys.argv[1])
p = Policy([PolicyZone(zone, ZoneSettings())])
for qfile in sys.argv[2:]:
    qs = [names.from_text(l.split()[0] + '.').lower() for l in open(qfile)]
    stages = [(Stage(q),) for q in qs]
    ev = p.evaluate
    t = time.perf_counter()
    for st in stages:
        ev(None, 1, st, False)
    uncached = len(qs) / (time.perf_counter() - t)
    eq = p.evaluate_query
    for q in qs:
        eq(None, q, 1)
    t = time.perf_counter()
    for q in qs:
        eq(None, q, 1)
    cached = len(qs) / (time.perf_counter() - t)
    table = zone.qname
    t = time.perf_counter()
    for q in qs:
        table.match(q)
    lookups = len(qs) / (time.perf_counter() - t)
    batched = []
    for size in BATCHES:
        chunks = [qs[i:i + size] for i in range(0, len(qs), size)]
        p.decide_qnames(chunks[0])  # the table views are made once per policy, on first use
        runs = []
        for _ in range(3):
            t = time.perf_counter()
            for c in chunks:
                p.decide_qnames(c)
            runs.append(len(qs) / (time.perf_counter() - t))
        batched.append(f'{sorted(runs)[1]:.0f}:{len(chunks[0])}')
    print(f'RATE {qfile} {uncached:.0f} {cached:.0f} {lookups:.0f} ' + ' '.join(batched))
"""
BATCHES = (100_000, 64)


def pinned(cmd: list[str]) -> list[str]:
    return ["taskset", "-c", os.environ.get("BENCH_CPU", "1"), *cmd]


def run_child(mode: str, path: str, probe: str, qfile: str = "") -> dict[str, float]:
    t0 = time.time()
    out = subprocess.run(pinned([PY, "-c", CHILD, f"{t0}", mode, path, probe, qfile]), capture_output=True,
                         text=True, check=True, cwd=ROOT).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT"))
    _, ready, loaded, touched, rules = line.split()
    return {"seconds": float(ready), "rss": int(loaded), "rss_touched": int(touched), "rules": int(rules)}


def query(name: str, qid: int) -> bytes:
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", 1, 1)


def wait_enforced(port: int, probe: str, t0: float, timeout: float = 600) -> float:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.02)
    marker = socket.inet_aton("192.0.2.1")
    qid = 0
    while time.time() - t0 < timeout:
        qid = (qid + 1) & 0xFFFF
        try:
            s.sendto(query(probe, qid), ("127.0.0.1", port))
            while True:    # drain: a server that queued our probes while loading answers them all later
                data = s.recv(4096)
                if marker in data[12:]:      # only the rule's local data answers 192.0.2.1
                    return time.time() - t0
        except OSError:
            pass
        time.sleep(0.01)
    raise TimeoutError(f"no RPZ answer from port {port} within {timeout}s")


def rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) * 1024
    return 0


def reference(name: str, zone: str, probe: str, work: Path) -> dict[str, float]:
    """Start one reference resolver on loopback with the zone; time until it enforces the probe."""
    work.mkdir(parents=True, exist_ok=True)
    port = 5399
    if name == "pdns":
        (work / "recursor.conf").write_text(
            f"local-address=127.0.0.1\nlocal-port={port}\nallow-from=127.0.0.0/8\nthreads=1\n"
            "pdns-distributes-queries=no\ndaemon=no\ndisable-syslog=yes\nquiet=yes\n"
            f"socket-dir={work}\ndnssec=off\nsecurity-poll-suffix=\nlua-config-file={work}/rpz.lua\n"
            "forward-zones=test=127.0.0.1:9\n")
        (work / "rpz.lua").write_text(f'rpzFile("{zone}", {{policyName="rpz.test"}})\n')
        cmd = ["pdns_recursor", f"--config-dir={work}"]
    elif name == "unbound":
        (work / "unbound.conf").write_text(
            f"server:\n interface: 127.0.0.1\n port: {port}\n do-ip6: no\n access-control: 127.0.0.0/8 allow\n"
            f" num-threads: 1\n username: \"\"\n chroot: \"\"\n directory: \"{work}\"\n pidfile: \"{work}/pid\"\n"
            " use-syslog: no\n logfile: \"\"\n module-config: \"respip iterator\"\n"
            " local-zone: \"test.\" nodefault\n"
            f"rpz:\n name: \"rpz.test\"\n zonefile: \"{zone}\"\n")
        cmd = ["unbound", "-d", "-c", str(work / "unbound.conf")]
    elif name == "bind":
        (work / "named.conf").write_text(
            f'options {{ directory "{work}"; pid-file "{work}/named.pid"; listen-on port {port} {{ 127.0.0.1; }};\n'
            ' listen-on-v6 { none; }; recursion yes; allow-query { 127.0.0.0/8; }; dnssec-validation no;\n'
            f' session-keyfile "{work}/session.key";\n'
            ' response-policy { zone "rpz.test"; } qname-wait-recurse no; };\ncontrols { };\n'
            f'zone "rpz.test" {{ type primary; file "{zone}"; notify no; }};\n')
        cmd = ["named", "-g", "-n", "1", "-c", str(work / "named.conf")]
    else:
        raise ValueError(name)
    t0 = time.time()
    proc = subprocess.Popen(pinned(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work)
    try:
        secs = wait_enforced(port, probe, t0)
        time.sleep(1)
        return {"seconds": secs, "rss": rss_of(proc.pid), "rules": 0}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def med(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000000")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--refs", default="pdns", help="comma list of pdns, unbound, bind (or none)")
    ap.add_argument("--data", default=os.environ.get("DATA", "/tmp/hotline-bench/data"))
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/hotline-bench"))
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.sizes, a.passes = "100000", 1
    sizes = [int(s) for s in a.sizes.split(",")]
    data = Path(a.data)
    missing = [n for n in sizes if not (data / f"rpz-{n}.zone").exists()]
    if missing:
        subprocess.run([PY, str(HERE / "gen_data.py"), "--out", str(data), "--sizes",
                        ",".join(str(n) for n in sorted(set(missing)))], check=True)
    refs = [r for r in a.refs.split(",") if r and r != "none"]
    results: dict[str, dict] = {}
    work = Path(tempfile.mkdtemp(prefix="rpzbench-"))
    empty = [run_child("empty", "-", "-") for _ in range(a.passes)]
    base_rss = med(empty, "rss")
    for n in sizes:
        zone = str(data / f"rpz-{n}.zone")
        probe = (data / f"probes-{n}.txt").read_text().strip()
        blocked = str(data / f"q-blocked-{n}.txt")
        snap = str(work / f"rpz-{n}.snap")
        subprocess.run([PY, "-m", "admin_api.cli", "rpz", "compile", zone, "-o", snap], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)
        r: dict[str, list] = {"text": [], "snapshot": []}
        for ref in refs:
            r[ref] = []
        for p in range(a.passes):
            print(f"[{n:,} rules] pass {p + 1}/{a.passes}", file=sys.stderr)
            r["text"].append(run_child("text", zone, probe))
            r["snapshot"].append(run_child("snapshot", snap, probe, blocked))
            for ref in refs:
                r[ref].append(reference(ref, zone, probe, work / ref))
        rate_code = RATE.replace("@BATCHES@", repr(BATCHES))
        rate = subprocess.run(pinned([PY, "-c", rate_code, snap, blocked, str(data / "q-allowed.txt")]), cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout
        r["rates"] = [line.split()[1:] for line in rate.splitlines() if line.startswith("RATE")]
        results[str(n)] = r
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rpz-results.json").write_text(json.dumps({"empty_rss": base_rss, "results": results}, indent=1))
    print_table(results, base_rss, refs)
    return 0


def print_table(results: dict[str, dict], base_rss: float, refs: list[str]) -> None:
    print("\n| rules | loader | load until enforced, s (median) | ratio to PowerDNS | RSS MB "
          "| bytes/rule above empty |")
    print("|---|---|---|---|---|---|")
    for n, r in results.items():
        rules = int(n)
        pdns = med(r["pdns"], "seconds") if "pdns" in r else None
        for key in ("text", "snapshot", *refs):
            rows = r[key]
            secs = med(rows, "seconds")
            rss = med(rows, "rss")
            ratio = f"{secs / pdns:.2f}" if pdns else "-"
            if key in ("text", "snapshot"):
                per = f"{(rss - base_rss) / rules:.0f}"
                if key == "snapshot":
                    per += f" ({(med(rows, 'rss_touched') - base_rss) / rules:.0f} with every page touched)"
            else:
                per = f"{rss / rules:.0f} (whole process)"
            label = {"text": "hotline-edge, zone text", "snapshot": "hotline-edge, compiled snapshot"}.get(key, key)
            print(f"| {rules:,} | {label} | {secs:.2f} | {ratio} | {rss / 1e6:.0f} | {per} |")
    sizes = " | ".join(f"batched /s, {b:,} a batch" for b in BATCHES)
    print("\n| rules | query set | Policy.evaluate (no cache) /s | with decision cache /s | table lookups /s | "
          f"{sizes} |")
    print("|---|---|---|---|---|" + "---|" * len(BATCHES))
    for n, r in results.items():
        for qfile, unc, cached, look, *batched in r["rates"]:
            cells = []
            for b, cell in zip(BATCHES, batched, strict=True):
                rate, size = cell.split(":")
                cells.append(f"{int(rate):,}" + (f" (one batch of {int(size):,})" if int(size) < b else ""))
            print(f"| {int(n):,} | {Path(qfile).name} | {int(unc):,} | {int(cached):,} | {int(look):,} | "
                  + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
