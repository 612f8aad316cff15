#!/usr/bin/env python3
"""Unbound + the hotline-edge plugin against Unbound's native RPZ, same zone, same machine.

Run as root through ``bench/run.sh unbound-plugin`` (see bench/README.md). The set-up is the
resolver benchmark's (bench/resolver_bench.py, whose helpers this reuses): a private network
namespace with only ``lo``, the NSD authority and dnsperf on CPU 0, the server under test on CPU 1
with one thread, the 1,000,000-rule RPZ zone of gen_data.py. Two servers:

  native   Unbound 1.17 with ``rpz: zonefile:`` (module-config "respip validator iterator")
  plugin   Unbound 1.17 with our module (module-config "validator python iterator"), the same zone
           file as ``[[policy.zone]] file =``, EDE 17 on, hits to the NullSink (no blocklog)

Both with ``minimal-responses: no`` and ``ignore-cd-flag: yes`` (what the plugin requires). Per pass
and server: load (first answer, last local-data rule enforced, RSS), max-rate QPS on allowed,
blocked and mix (dnsperf -c 4 -Q 500000 -l DUR after a warm-up pass), p99 at LATQPS on allowed and
mix, then a reload under load: dnsperf at RELOAD_QPS on the mix for RELOAD_DUR seconds with per-
query latencies, and after RELOAD_AT seconds the zone file is replaced by one with a new local-data
rule and the server told to reload (native: ``unbound-control auth_zone_reload``; plugin: its
control socket, ``{"cmd": "reload"}``). Recorded: lost queries, max and p99.9 latency, queries
slower than 100 ms, and seconds from the command until the new rule answers.

Results: OUT/results.tsv, OUT/loads.tsv, OUT/reloads.tsv and OUT/summary.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import resolver_bench as rb  # noqa: E402

REPO = HERE.parent
UNBOUNDMODULE_DIR = "/usr/lib/python3/dist-packages"
SERVERS = ("native", "plugin")
rb.ADDR.update({"native": "127.0.0.11", "plugin": "127.0.0.21"})
NEW_RULE_IP = "192.0.2.77"


def log(msg: str) -> None:
    rb.log(msg)


def unbound_conf(run: Path, data: Path, name: str, modules: str, tail: str) -> str:
    d = run / name
    return f"""server:
    interface: {rb.ADDR[name]}
    port: 53
    do-ip6: no
    access-control: 127.0.0.0/8 allow
    num-threads: 1
    username: ""
    chroot: ""
    directory: "{d}"
    pidfile: "{d}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    do-not-query-localhost: no
    root-hints: "{data}/root.hints"
    module-config: "{modules}"
    ignore-cd-flag: yes
    serve-expired: no
    msg-cache-size: 64m
    rrset-cache-size: 128m
    so-rcvbuf: 4m
    so-sndbuf: 4m
    minimal-responses: no
    statistics-interval: 0
    local-zone: "test." nodefault
{tail}
remote-control:
    control-enable: yes
    control-interface: "{d}/control.sock"
    control-use-cert: no
forward-zone:
    name: "."
    forward-addr: 127.0.0.2@53
"""


class PluginBench(rb.Bench):
    def __init__(self, a: argparse.Namespace) -> None:
        super().__init__(a)
        for d in SERVERS:
            (self.run / d).mkdir(parents=True, exist_ok=True)
        self.reloads = self.out / "reloads.tsv"
        if not self.reloads.exists():
            self.reloads.write_text("pass\tserver\tsent\tlost\tmax_ms\tp999_ms\tover100ms\tenforced_s\tcommand_s\n")
        self.generation = 0

    def zone_copy(self, server: str) -> Path:
        return self.run / server / "rpz.zone"

    def start(self, server: str, pool: int = 0) -> subprocess.Popen[bytes]:
        zone = self.zone_copy(server)
        shutil.copyfile(self.zone, zone)
        d = self.run / server
        if server == "native":
            rpz = f'rpz:\n    name: "rpz.test"\n    zonefile: "{zone}"\n    rpz-log: no'
            conf = d / "unbound.conf"
            conf.write_text(unbound_conf(self.run, self.data, server, "respip validator iterator", rpz))
            return self.spawn(["unbound", "-d", "-c", str(conf)], server, cpu=1)
        cfg = d / "config.toml"
        cfg.write_text(f"""[node]
id = "bench"
state_dir = "{d}"
runtime_dir = "{d}"

[[policy.zone]]
file = "{zone}"
ede = 17
ede_text = "order {{order_ref}}"
""")
        py = f'python:\n    python-script: "{REPO / "resolver" / "unbound_plugin.py"}"'
        conf = d / "unbound.conf"
        conf.write_text(unbound_conf(self.run, self.data, server, "validator python iterator", py))
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV",)}
        env.update({"PYTHONPATH": UNBOUNDMODULE_DIR, "HOTLINE_EDGE_CONFIG": str(cfg),
                    "HOTLINE_EDGE_VENV": str(Path(self.a.python).parent.parent)})
        return self.spawn(["unbound", "-d", "-c", str(conf)], server, cpu=1, env=env)

    # -- reload under load --------------------------------------------------------------------
    def new_zone(self, server: str) -> str:
        """The zone file again with its serial raised and one new local-data rule; returns the name."""
        self.generation += 1
        name = f"reload{self.generation}.bench.test"
        src = self.zone.read_text()
        head, sep, rest = src.partition(" SOA ")
        soa = rest.split("\n", 1)
        fields = soa[0].replace("(", " ").replace(")", " ").split()
        serial = int(fields[2])
        soa0 = " ".join([*fields[:2], str(serial + self.generation), *fields[3:]])
        text = head + sep + soa0 + "\n" + soa[1] + f"{name}.rpz.test. 60 IN A {NEW_RULE_IP}\n"
        tmp = self.zone_copy(server).with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.zone_copy(server))
        return name

    def command_reload(self, server: str) -> None:
        d = self.run / server
        if server == "native":
            r = subprocess.run(rb.nsexec("unbound-control", "-c", str(d / "unbound.conf"), "auth_zone_reload",
                                         "rpz.test"), check=False, capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                raise RuntimeError(f"unbound-control auth_zone_reload: {r.stdout}{r.stderr}")
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(300)
            s.connect(str(d / "control.sock"))
            s.sendall(b'{"cmd": "reload"}\n')
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        reply = json.loads(buf or b"{}")
        if not reply.get("ok"):
            raise RuntimeError(f"plugin reload failed: {reply}")

    def reload_under_load(self, pass_no: int, server: str) -> None:
        addr = rb.ADDR[server]
        qfile = self.data / f"q-mix-{self.a.size}.txt"
        result: dict[str, str] = {}

        def perf() -> None:
            result["out"] = self._dnsperf_full(addr, qfile, self.a.reload_dur, self.a.reload_qps, verbose=True)

        t = threading.Thread(target=perf)
        t.start()
        time.sleep(self.a.reload_at)        # load is flowing; the reload lands in the middle of the run
        name = self.new_zone(server)
        t0 = time.monotonic()
        self.command_reload(server)
        command_s = time.monotonic() - t0
        enforced = float("nan")
        while time.monotonic() - t0 < 300:
            r = self.query(addr, name, 7, 0.2)
            if r is not None and bytes([192, 0, 2, 77]) in r[12:]:
                enforced = time.monotonic() - t0
                break
            time.sleep(0.02)
        t.join()
        out = result.get("out", "")
        lat = sorted(float(line.rsplit(None, 1)[1]) * 1000 for line in out.splitlines()
                     if line.startswith("> ") and rb._is_float(line.rsplit(None, 1)[1]))
        _, lost, sent, _ = rb._parse(out)
        mx = lat[-1] if lat else float("nan")
        p999 = lat[min(len(lat) - 1, int(0.999 * len(lat)))] if lat else float("nan")
        slow = sum(1 for v in lat if v > 100)
        with self.reloads.open("a") as f:
            f.write(f"{pass_no}\t{server}\t{sent}\t{lost}\t{mx:.1f}\t{p999:.2f}\t{slow}\t{enforced:.2f}\t"
                    f"{command_s:.2f}\n")
        log(f"{server:8s} reload under {self.a.reload_qps:,} q/s: lost {lost} of {sent}, max {mx:.1f} ms, "
            f"p99.9 {p999:.2f} ms, {slow} slower than 100 ms, new rule enforced after {enforced:.2f}s "
            f"(command returned after {command_s:.2f}s)")

    # -- one pass -----------------------------------------------------------------------------
    def one(self, pass_no: int, server: str) -> None:
        t0 = time.monotonic()
        p = self.start(server)
        try:
            first, enforced = self.probe_load(server, t0, p)
            time.sleep(2)
            rss = rb._rss_mb(p.pid, server)
            with self.loads.open("a") as f:
                f.write(f"{pass_no}\t{server}\t{first:.2f}\t{enforced:.2f}\t{rss:.0f}\n")
            log(f"{server:8s} loaded: first answer {first:.2f}s, enforced {enforced:.2f}s, RSS {rss:.0f} MB")
            size = self.a.size
            for workload, qfile in (("allowed", self.data / "q-allowed.txt"),
                                    ("blocked", self.data / f"q-blocked-{size}.txt"),
                                    ("mix", self.data / f"q-mix-{size}.txt")):
                self.perf(pass_no, server, p.pid, workload, qfile)
            self.reload_under_load(pass_no, server)
            log(f"{server:8s} peak RSS over the pass {_hwm_mb(p.pid):.0f} MB")
        finally:
            self.stop(p)
            self.procs.remove(p)


def _hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


# -- summary ------------------------------------------------------------------------------------

def summarize(out: Path, a: argparse.Namespace) -> str:
    import csv
    import platform

    rows = list(csv.DictReader(out.joinpath("results.tsv").open(), delimiter="\t"))
    loads = list(csv.DictReader(out.joinpath("loads.tsv").open(), delimiter="\t"))
    reloads = list(csv.DictReader(out.joinpath("reloads.tsv").open(), delimiter="\t"))

    def num(v: str) -> float | None:
        return None if v in ("NA", "nan", "") else float(v)

    def col(table: list[dict[str, str]], server: str, c: str, workload: str | None = None) -> list[float]:
        return [x for r in table if r["server"] == server and (workload is None or r["workload"] == workload)
                and (x := num(r[c])) is not None]

    def med(v: list[float]) -> float:
        return statistics.median(v) if v else float("nan")

    def cell(v: list[float], fmt: str = "{:,.0f}") -> str:
        if not v:
            return "-"
        m = fmt.format(med(v))
        return m if len(v) == 1 else f"{m} ({fmt.format(min(v))}-{fmt.format(max(v))})"

    passes = len({r["pass"] for r in rows})
    lines = [f"passes: {passes}; zone: {a.size:,} QNAME rules; {a.dur:g}s per max-rate run; cells: median "
             "(min-max)", "", "| server | first answer s | RPZ enforced s | RSS MB after load |", "|---|---|---|---|"]
    for s in SERVERS:
        lines.append(f"| {s} | {cell(col(loads, s, 'first_answer_s'), '{:.2f}')} | "
                     f"{cell(col(loads, s, 'enforced_s'), '{:.2f}')} | {cell(col(loads, s, 'rss_mb'))} |")
    lines += ["", "| server | allowed QPS | blocked QPS | mix QPS | p99 ms allowed @" + f"{a.latqps:,}" +
              " | p99 ms mix | server CPU % (blocked) | dnsperf CPU % (blocked) |", "|---|---|---|---|---|---|---|---|"]
    for s in SERVERS:
        lines.append(f"| {s} | {cell(col(rows, s, 'qps', 'allowed'))} | {cell(col(rows, s, 'qps', 'blocked'))} | "
                     f"{cell(col(rows, s, 'qps', 'mix'))} | {cell(col(rows, s, 'p99_ms', 'allowed'), '{:.3f}')} | "
                     f"{cell(col(rows, s, 'p99_ms', 'mix'), '{:.3f}')} | {cell(col(rows, s, 'srv_cpu', 'blocked'))} | "
                     f"{cell(col(rows, s, 'dnsperf_cpu', 'blocked'))} |")
    lines += ["", f"Reload under load (mix at {a.reload_qps:,} q/s for {a.reload_dur:g}s, reload after "
              f"{a.reload_at:g}s):", "",
              "| server | lost queries | max latency ms | p99.9 ms | answers slower than 100 ms "
              "| new rule enforced s |",
              "|---|---|---|---|---|---|"]
    for s in SERVERS:
        lost = col(reloads, s, "lost")
        sent = col(reloads, s, "sent")
        lines.append(f"| {s} | {sum(lost):.0f} of {sum(sent):,.0f} (per pass {', '.join(f'{x:.0f}' for x in lost)}) | "
                     f"{cell(col(reloads, s, 'max_ms'), '{:.1f}')} | {cell(col(reloads, s, 'p999_ms'), '{:.2f}')} | "
                     f"{cell(col(reloads, s, 'over100ms'))} | {cell(col(reloads, s, 'enforced_s'), '{:.2f}')} |")
    lines += ["", "| criterion (issue 8) | measured (medians) | target | met |", "|---|---|---|---|"]
    for w in ("blocked", "mix", "allowed"):
        r = med(col(rows, "plugin", "qps", w)) / med(col(rows, "native", "qps", w))
        target = ">= 0.5x" if w != "allowed" else "-"
        lines.append(f"| {w} QPS, plugin / native | {r:.2f}x | {target} | "
                     f"{('yes' if r >= 0.5 else 'no') if w != 'allowed' else '-'} |")
    pm, nm = med(col(reloads, "plugin", "max_ms")), med(col(reloads, "native", "max_ms"))
    pl, nl = sum(col(reloads, "plugin", "lost")), sum(col(reloads, "native", "lost"))
    better = pm < nm and pl <= nl
    lines.append(f"| reload: max stall plugin vs native; lost plugin vs native | {pm:.1f} vs {nm:.1f} ms; "
                 f"{pl:.0f} vs {nl:.0f} | better than native | {'yes' if better else 'no'} |")
    lines.append(f"| load time to enforced, plugin / native | "
                 f"{med(col(loads, 'plugin', 'enforced_s')) / med(col(loads, 'native', 'enforced_s')):.2f}x | - | - |")
    lines.append(f"| RSS after load, plugin / native | "
                 f"{med(col(loads, 'plugin', 'rss_mb')) / med(col(loads, 'native', 'rss_mb')):.2f}x | - | - |")
    m = platform.uname()
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "?")
    lines += ["", f"machine: {cpu}, {os.cpu_count()} CPUs (nproc), kernel {m.release}; load average at the end: "
              f"{rb._loadavg()}"]
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
    ap.add_argument("--reload-qps", type=int, default=int(os.environ.get("RELOAD_QPS", "10000")))
    ap.add_argument("--reload-dur", type=float, default=float(os.environ.get("RELOAD_DUR", "40")))
    ap.add_argument("--reload-at", type=float, default=float(os.environ.get("RELOAD_AT", "5")))
    ap.add_argument("--data", default=os.environ.get("DATA", "/tmp/hotline-bench/data"))
    ap.add_argument("--run", default=os.environ.get("RUN", "/tmp/hotline-bench/run-plugin"))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    ap.add_argument("--out", default=os.environ.get("OUT", f"/tmp/hotline-bench/plugin-{stamp}"))
    ap.add_argument("--python", default=os.environ.get("PYTHON", sys.executable))
    ap.add_argument("--load-timeout", type=float, default=600)
    ap.add_argument("--summarize", metavar="OUT", help="only print the summary of an earlier run")
    a = ap.parse_args()
    if a.summarize:
        print(summarize(Path(a.summarize), a))
        return 0
    if os.geteuid() != 0:
        print("run as root (network namespace, port 53)", file=sys.stderr)
        return 2
    for tool in ("dnsperf", "nsd", "unbound", "unbound-control", "taskset", "ip"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            print(f"missing {tool}: apt-get install dnsperf nsd unbound util-linux iproute2", file=sys.stderr)
            return 2
    if not Path(UNBOUNDMODULE_DIR, "unboundmodule.py").exists():
        print("missing unboundmodule.py: apt-get install python3-unbound", file=sys.stderr)
        return 2
    b = PluginBench(a)
    b.prepare()
    log(f"results in {b.out}; load average {rb._loadavg()}")
    try:
        b.start_nsd()
        for n in range(1, a.passes + 1):
            order = a.servers[n - 1:] + a.servers[: n - 1] if len(a.servers) > 1 else a.servers
            log(f"pass {n}/{a.passes}: {' '.join(order)}")
            for server in order:
                b.one(n, server)
    finally:
        b.stop_all()
    print(summarize(b.out, a))
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
