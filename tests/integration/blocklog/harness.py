"""Our resolver as a subprocess with the blocked-lookup log on, the log commands, dnsperf and a
prober: everything real, on loopback (tests/integration/resolver/peers.py starts the processes)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
from nacl.public import PrivateKey

from ..resolver.peers import HOTLINE_EDGE, REPO, Peer, control, free_port, need, resolver_config, start_resolver

DEMO = REPO / "rpz" / "data" / "demo-hotline.rpz"


@dataclass
class Node:
    workdir: Path
    config: Path
    port: int
    metrics_port: int
    key: PrivateKey
    peer: Peer | None = None

    @property
    def db(self) -> Path:
        return self.workdir / "state" / "blocklog.sqlite"

    def start(self) -> Peer:
        self.peer = start_resolver(self.workdir, self.config, self.port)
        return self.peer

    def stop(self) -> None:
        if self.peer is not None:
            self.peer.stop()

    def status(self) -> dict[str, object]:
        assert self.peer is not None
        return control(self.peer, {"cmd": "status"})

    def metrics(self) -> dict[str, float]:
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            body = r.read().decode()
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
                if line and not line.startswith("#")}

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        r = subprocess.run([*HOTLINE_EDGE, *args, "--config", str(self.config)], check=False, capture_output=True,
                           text=True, env=env, cwd=str(REPO), timeout=300)
        if check:
            assert r.returncode == 0, f"{args}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    def records(self) -> int:
        """Records in the log, read the way an operator would (`hotline-edge log status --json`)."""
        return int(json.loads(self.cli("log", "status", "--json").stdout)["records"])


def make_node(workdir: Path, *, workers: int = 2, extra: str = "", v6: bool = False) -> Node:
    """A node with the demo policy and the log on (sealed to a fresh compliance key); ``v6`` adds
    a listener on [::1] (and lets ::1 in)."""
    key = PrivateKey.generate()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "compliance-x25519.key").write_text(base64.b64encode(bytes(key)).decode() + "\n")
    (workdir / "compliance-x25519.pub").write_text(base64.b64encode(bytes(key.public_key)).decode() + "\n")
    port, mport = free_port(), free_port()
    dead_upstream = free_port()      # blocked answers never need the upstream
    cfg = resolver_config(workdir, port, [dead_upstream], [{"file": str(DEMO), "ede": 17}], workers=workers,
                          metrics_port=mport, v6=v6, allow=("127.0.0.0/8", "::1/128") if v6 else ("127.0.0.0/8",),
                          extra=f'\n[blocklog]\ncompliance_public_key = "{workdir}/compliance-x25519.pub"\n{extra}')
    return Node(workdir, cfg, port, mport, key)


def wait_for(cond, deadline_s: float, what: str, state=None) -> None:  # type: ignore[no-untyped-def]
    """Wait for cond() with a deadline; on timeout say what was waited for and, if given, state()."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what}: not within {deadline_s}s" + (f" ({state()})" if state else ""))


def blocked_queries(path: Path, n: int = 2000) -> Path:
    """A dnsperf data file of names every one of which the demo policy blocks."""
    lines = [f"q{i}.csam-site.test A" if i % 3 else f"q{i}.csam-site.test AAAA" for i in range(n)]
    lines += ["csam-site.test A", "nodata-order.test A"]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class PerfResult:
    sent: int
    completed: int
    lost: int
    qps: float
    rcodes: dict[str, int] = field(default_factory=dict)


def dnsperf(port: int, data: Path, seconds: float, *, qps: int | None = None, clients: int = 4) -> PerfResult:
    exe = need("dnsperf")
    argv = [exe, "-s", "127.0.0.1", "-p", str(port), "-d", str(data), "-l", str(seconds), "-c", str(clients),
            "-q", "200", "-t", "2"]
    if qps:
        argv += ["-Q", str(qps)]
    out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=seconds + 60).stdout
    return parse_dnsperf(out)


def parse_dnsperf(out: str) -> PerfResult:
    def num(pattern: str) -> float:
        m = re.search(pattern, out)
        assert m, f"dnsperf output without {pattern!r}:\n{out}"
        return float(m.group(1))
    tail = out.rsplit("Response codes:", maxsplit=1)[-1]
    rcodes = {k: int(v) for k, v in re.findall(r"(\w+) (\d+) \(\d+\.\d+%\)", tail)}
    return PerfResult(int(num(r"Queries sent:\s+(\d+)")), int(num(r"Queries completed:\s+(\d+)")),
                      int(num(r"Queries lost:\s+(\d+)")), num(r"Queries per second:\s+([\d.]+)"), rcodes)


class Prober:
    """Asks a unique blocked name every few ms and remembers when each answer arrived (wall clock)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answered: list[tuple[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            name = f"probe{i}.csam-site.test."
            with contextlib.suppress(dns.exception.Timeout, OSError):
                r = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=self.port, timeout=0.5)
                if r.rcode() == dns.rcode.NXDOMAIN:
                    self.answered.append((name, time.time()))
            time.sleep(0.003)


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], check=False, capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
        if f.read().split(")")[-1].split()[0] == "Z":
            return False
    return True


def kill9(peer: Peer) -> list[int]:
    """SIGKILL the resolver's main process; returns its children (the workers), which notice and stop."""
    kids = children(peer.proc.pid)
    os.kill(peer.proc.pid, signal.SIGKILL)
    peer.proc.wait(10)
    return kids


@contextlib.contextmanager
def running(node: Node) -> Iterator[Node]:
    node.start()
    try:
        yield node
    finally:
        node.stop()
