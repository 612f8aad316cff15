#!/usr/bin/env python3
"""The reference resolvers' memory and answers while they reload an RPZ zone (issue 4's "PowerDNS
needs 2x, Unbound stalls queries"): the other half of `bench/feeds.py --only swap`.

PowerDNS Recursor 4.8 (`rpzFile`, reloaded with `rec_control reload-lua-config`) and Unbound 1.17
(`rpz:` zonefile, reloaded with `unbound-control auth_zone_reload`) serve the benchmark's
1,000,000-rule zone (bench/gen_data.py, the files `bench/run.sh resolver` generates) on loopback,
one thread each, under dnsperf asking blocked names at a fixed rate. Per reload: the server's RSS
(sampled every 5 ms) in the 3 s before and its peak until `--after` seconds after the command;
over the run, dnsperf's lost queries and worst latency. Nothing upstream is needed: every query is
a QNAME hit.

    .venv/bin/python bench/swap_refs.py                       # both, 3 reloads each, 20,000 q/s
    .venv/bin/python bench/swap_refs.py --servers pdns --reloads 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from feeds import RssSampler, _dnsperf_summary, stop  # noqa: E402
from resolver_bench import render_conf  # noqa: E402

DATA = Path(os.environ.get("DATA", "/tmp/hotline-bench/data"))
ADDR, PORT = "127.0.0.1", 5399

# after the shared server section (bench/conf/unbound.conf): the zone, and the control socket for
# unbound-control auth_zone_reload
UNBOUND_RPZ = """rpz:
    name: "rpz.test"
    zonefile: "{zone}"
    rpz-log: no
remote-control:
    control-enable: yes
    control-interface: "{run}/control.sock"
    control-use-cert: no"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def blocked(name: str) -> bool:
    r = subprocess.run(["dig", f"@{ADDR}", "-p", str(PORT), name, "A", "+tries=1", "+time=1"],
                       capture_output=True, text=True, check=False)
    return "status: NXDOMAIN" in r.stdout


def run_server(server: str, work: Path, zone: Path, qfile: Path, reloads: int, qps: int, after: float,
               warmup: float) -> dict:
    run = work / server
    run.mkdir(parents=True)
    if server == "pdns":
        (run / "recursor.conf").write_text(render_conf("recursor.conf", ADDR=ADDR, PORT=str(PORT), RUN=str(work),
                                                       DATA=str(DATA)))
        (run / "rpz.lua").write_text(f'rpzFile("{zone}", {{policyName="rpz.test"}})\n')
        cmd = ["pdns_recursor", f"--config-dir={run}"]
        reload_cmd = ["rec_control", f"--socket-dir={run}", "--timeout=300", "reload-lua-config"]
    else:
        (run / "unbound.conf").write_text(render_conf("unbound.conf", ADDR=ADDR, PORT=str(PORT), RUN=str(work),
                                                      NAME="unbound", DATA=str(DATA), RPZ=UNBOUND_RPZ.format(
                                                          zone=zone, run=run)))
        cmd = ["unbound", "-d", "-c", str(run / "unbound.conf")]
        reload_cmd = ["unbound-control", "-c", str(run / "unbound.conf"), "auth_zone_reload", "rpz.test"]
    probe = next(line.split()[0] for line in qfile.open())
    with (run / "server.log").open("w") as errors:
        proc = subprocess.Popen(["taskset", "-c", "1", *cmd], stdout=errors, stderr=subprocess.STDOUT)
    perf = None
    try:
        deadline = time.monotonic() + 120
        while not blocked(probe):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"{server} did not start enforcing (see {run}/server.log)")
            time.sleep(0.2)
        sampler = RssSampler(proc.pid)
        perf = subprocess.Popen(["taskset", "-c", "0", "dnsperf", "-s", ADDR, "-p", str(PORT), "-d", str(qfile),
                                 "-l", "3600", "-Q", str(qps), "-c", "4", "-t", "2"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        time.sleep(warmup)
        rows = []
        for k in range(reloads):
            t0 = time.monotonic()
            r = subprocess.run(reload_cmd, capture_output=True, text=True, check=False, timeout=300)
            t1 = time.monotonic()
            if r.returncode != 0:
                raise SystemExit(f"{' '.join(reload_cmd)}: {r.stdout}{r.stderr}")
            time.sleep(after)
            before = sampler.window(t0 - 3, t0)
            during = sampler.window(t0, t1 + after)
            row = {"reload": k + 1, "command_s": t1 - t0, "before_mb": statistics.median(before),
                   "peak_mb": max(during), "after_mb": during[-1]}
            rows.append(row)
            log(f"{server} reload {k + 1}: command {row['command_s']:.1f} s, RSS {row['before_mb']:.0f} -> peak "
                f"{row['peak_mb']:.0f} -> {row['after_mb']:.0f} MB ({row['peak_mb'] / row['before_mb']:.2f}x)")
        sampler.stop()
        perf.send_signal(signal.SIGINT)
        dp = _dnsperf_summary(perf.communicate(timeout=30)[0])
        log(f"{server}: dnsperf over the reloads {dp}")
    finally:
        if perf is not None and perf.poll() is None:
            perf.kill()
        stop(proc, 30)
    ratios = [x["peak_mb"] / x["before_mb"] for x in rows]
    return {"server": server, "rows": rows, "dnsperf": dp, "ratio_median": statistics.median(ratios),
            "ratio_max": max(ratios)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default="pdns,unbound", help="comma-separated: pdns, unbound")
    ap.add_argument("--size", type=int, default=1_000_000, help="rules in the zone (rpz-SIZE.zone)")
    ap.add_argument("--reloads", type=int, default=3)
    ap.add_argument("--qps", type=int, default=20_000)
    ap.add_argument("--after", type=float, default=20.0, help="seconds watched after each reload command")
    ap.add_argument("--warmup", type=float, default=20.0)
    args = ap.parse_args()
    zone, qfile = DATA / f"rpz-{args.size}.zone", DATA / f"q-blocked-{args.size}.txt"
    if not zone.exists() or not qfile.exists():
        print(f"{zone} or {qfile} is missing: run `SIZE={args.size} bench/run.sh resolver ours` once to generate "
              "them", file=sys.stderr)
        return 2
    for tool in ("dnsperf", "dig", "taskset", "pdns_recursor", "rec_control", "unbound", "unbound-control"):
        if shutil.which(tool) is None:
            print(f"missing {tool}: apt-get install dnsperf bind9-dnsutils util-linux pdns-recursor unbound",
                  file=sys.stderr)
            return 2
    work = Path(tempfile.mkdtemp(prefix="swaprefs-"))
    log(f"zone {zone} ({args.size:,} rules), {args.qps:,} q/s of blocked names, load {os.getloadavg()[0]:.2f}")
    out = []
    try:
        for server in args.servers.split(","):
            out.append(run_server(server, work, zone, qfile, args.reloads, args.qps, args.after, args.warmup))
    finally:
        if not os.environ.get("KEEP"):
            shutil.rmtree(work, ignore_errors=True)
    print("| server | reload command | RSS before -> peak (-> after) | peak / before | lost during the run "
          "| worst latency |")
    print("|---|---|---|---|---|---|")
    for x in out:
        for row in x["rows"]:
            print(f"| {x['server']} {row['reload']} | {row['command_s']:.1f} s | {row['before_mb']:.0f} -> "
                  f"{row['peak_mb']:.0f} (-> {row['after_mb']:.0f}) MB | {row['peak_mb'] / row['before_mb']:.2f}x | "
                  f"{x['dnsperf']['lost']:.0f} of {x['dnsperf']['sent']:.0f} | {x['dnsperf']['max_latency_s']} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
