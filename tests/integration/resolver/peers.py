"""Real DNS peers for the resolver's integration tests: Knot (authoritative), Unbound (recursive,
the upstream), BIND 9.18 (the RPZ reference) and our own resolver as a subprocess.

All listen on 127.0.0.1 on free high ports, are started with a deadline and stopped by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode

from . import zones

REPO = Path(__file__).resolve().parents[3]
HOTLINE_EDGE = [sys.executable, "-c", "import sys; from admin_api.cli import main; sys.exit(main())"]


def need(binary: str) -> str:
    """The path of a system binary, or skip naming the Debian package that provides it."""
    import pytest
    pkg = {"knotd": "knot", "unbound": "unbound", "named": "bind9", "dig": "bind9-dnsutils",
           "dnsperf": "dnsperf"}.get(binary, binary)
    path = shutil.which(binary) or (f"/usr/sbin/{binary}" if os.path.exists(f"/usr/sbin/{binary}") else None)
    if path is None:
        pytest.skip(f"{binary} not installed (Debian package {pkg}; scripts/bootstrap.sh installs it as root)")
    return path


def free_port() -> int:
    """A port free on 127.0.0.1 for both UDP and TCP."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = int(t.getsockname()[1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


def wait_until(cond: Callable[[], bool], deadline_s: float, what: str, proc: subprocess.Popen[bytes] | None = None,
               log: Path | None = None) -> None:
    """Poll ``cond`` until it holds; fail with the peer's log when the deadline passes or it died."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}\n{_tail(log)}")
        if cond():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what}: not ready after {deadline_s}s\n{_tail(log)}")


def _tail(log: Path | None) -> str:
    if log is None or not log.exists():
        return ""
    return log.read_text(errors="replace")[-3000:]


def ask(port: int, name: str, rdtype: str = "A", *, host: str = "127.0.0.1", tcp: bool = False,
        source: str | None = None, timeout: float = 2.0, edns: int | None = 0, do: bool = False) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, use_edns=edns, want_dnssec=do)
    if tcp:
        return dns.query.tcp(q, host, port=port, timeout=timeout, source=source)
    return dns.query.udp(q, host, port=port, timeout=timeout, source=source, ignore_trailing=False)


def answers(port: int, name: str, rdtype: str = "A", host: str = "127.0.0.1") -> bool:
    try:
        r = ask(port, name, rdtype, host=host, timeout=0.5)
    except (dns.exception.Timeout, OSError):
        return False
    return r.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)


@dataclass
class Peer:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path
    log: Path
    host: str = "127.0.0.1"
    extra: dict[str, object] = field(default_factory=dict)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_knot(workdir: Path) -> Peer:
    knotd = need("knotd")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (workdir / "example.zone").write_text(zones.AUTH_EXAMPLE)
    (workdir / "walled.test.zone").write_text(zones.AUTH_WALLED)
    (workdir / "signed.example.zone").write_text(zones.AUTH_SIGNED)
    conf = workdir / "knot.conf"
    conf.write_text(f"""
server:
    rundir: "{workdir}"
    listen: 127.0.0.1@{port}
log:
  - target: stderr
    any: warning
database:
    storage: "{workdir}"
template:
  - id: default
    storage: "{workdir}"
    file: "%s.zone"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: example.
  - domain: walled.test.
  - domain: signed.example.
    dnssec-signing: on
""")
    log = workdir / "knot.log"
    proc = subprocess.Popen([knotd, "-c", str(conf)], stdout=log.open("wb"), stderr=subprocess.STDOUT)
    peer = Peer("knot", port, proc, workdir, log)
    wait_until(lambda: answers(port, "www.example."), 20, "knotd", proc, log)
    return peer


def start_unbound(workdir: Path, auth_port: int) -> Peer:
    unbound = need("unbound")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = workdir / "unbound.conf"
    conf.write_text(f"""
server:
    interface: 127.0.0.1
    port: {port}
    do-ip6: no
    access-control: 127.0.0.0/8 allow
    num-threads: 1
    username: ""
    chroot: ""
    directory: "{workdir}"
    pidfile: "{workdir}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 0
    do-not-query-localhost: no
    module-config: "iterator"
    minimal-responses: yes
    qname-minimisation: no
    local-zone: "test." nodefault
    serve-expired: no
stub-zone:
    name: "example."
    stub-addr: 127.0.0.1@{auth_port}
stub-zone:
    name: "walled.test."
    stub-addr: 127.0.0.1@{auth_port}
stub-zone:
    name: "signed.example."
    stub-addr: 127.0.0.1@{auth_port}
""")
    log = workdir / "unbound.log"
    proc = subprocess.Popen([unbound, "-d", "-c", str(conf)], stdout=log.open("wb"), stderr=subprocess.STDOUT)
    peer = Peer("unbound", port, proc, workdir, log)
    wait_until(lambda: answers(port, "www.example."), 20, "unbound", proc, log)
    return peer


def start_bind(workdir: Path, forward_port: int, policy: list[tuple[str, str, str]]) -> Peer:
    """BIND 9.18 as the RPZ reference: forwards to ``forward_port`` (Unbound), applies ``policy``
    [(zone name, zone text, extra response-policy options)] with qname-wait-recurse no, break-dnssec yes."""
    named = need("named")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    zone_decls = []
    rp = []
    for name, text, opts in policy:
        f = workdir / f"{name}.zone"
        f.write_text(text)
        zone_decls.append(f'zone "{name}" {{ type primary; file "{f}"; notify no; allow-query {{ localhost; }}; }};')
        rp.append(f'zone "{name}" {opts};')
    conf = workdir / "named.conf"
    conf.write_text(f"""
options {{
    directory "{workdir}";
    pid-file "{workdir}/named.pid";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion yes;
    allow-query {{ 127.0.0.0/8; }};
    allow-recursion {{ 127.0.0.0/8; }};
    dnssec-validation no;
    forwarders {{ 127.0.0.1 port {forward_port}; }};
    forward only;
    notify no;
    minimal-responses yes;
    querylog no;
    session-keyfile "{workdir}/session.key";
    response-policy {{ {' '.join(rp)} }} qname-wait-recurse no break-dnssec yes;
}};
controls {{ }};
{chr(10).join(zone_decls)}
logging {{ channel e {{ stderr; severity warning; }}; category default {{ e; }}; category lame-servers {{ null; }}; }};
""")
    log = workdir / "named.log"
    proc = subprocess.Popen([named, "-g", "-n", "1", "-c", str(conf)], stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)
    peer = Peer("bind", port, proc, workdir, log)
    wait_until(lambda: answers(port, "www.example."), 30, "named", proc, log)
    return peer


def resolver_config(workdir: Path, port: int, upstreams: list[int], zones_: list[dict[str, object]], *,
                    workers: int = 1, allow: tuple[str, ...] = ("127.0.0.0/8",), extra: str = "",
                    metrics_port: int | None = None, v6: bool = False) -> Path:
    """Write a config.toml for our resolver; zone dicts become [[policy.zone]] tables."""
    lines = [
        "[node]", 'id = "test-node"', f'state_dir = "{workdir}/state"', f'runtime_dir = "{workdir}/run"', "",
        "[resolver]", f'listen = ["127.0.0.1:{port}"' + (f', "[::1]:{port}"]' if v6 else "]"),
        "upstreams = [" + ", ".join(f'"127.0.0.1:{p}"' for p in upstreams) + "]",
        "allow = [" + ", ".join(f'"{a}"' for a in allow) + "]", f"workers = {workers}",
        "upstream_timeout_ms = 500", "query_timeout_ms = 2000",
    ]
    if metrics_port:
        lines.append(f'metrics_listen = "127.0.0.1:{metrics_port}"')
    if extra:
        lines.append(extra)
    for z in zones_:
        lines += ["", "[[policy.zone]]"]
        for k, v in z.items():
            lines.append(f"{k} = {json.dumps(v)}")
    path = workdir / "config.toml"
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def start_resolver(workdir: Path, config: Path, port: int, env: dict[str, str] | None = None,
                   wait_ready: bool = True) -> Peer:
    log = workdir / "resolver.log"
    e = dict(os.environ)
    e.update(env or {})
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    proc = subprocess.Popen([*HOTLINE_EDGE, "serve", "--config", str(config)], stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, env=e, cwd=str(REPO))
    peer = Peer("resolver", port, proc, workdir, log, extra={"control": str(workdir / "run" / "control.sock")})
    if wait_ready:
        wait_until(lambda: control_ready(peer), 60, "hotline-edge serve", proc, log)
    return peer


def control(peer: Peer, request: dict[str, object], timeout: float = 60) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(peer.extra["control"]))
        s.sendall(json.dumps(request).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)  # type: ignore[no-any-return]


def control_ready(peer: Peer) -> bool:
    with contextlib.suppress(OSError, ValueError):
        return bool(control(peer, {"cmd": "status"}, timeout=1).get("ready"))
    return False


@contextlib.contextmanager
def running(peer: Peer) -> Iterator[Peer]:
    try:
        yield peer
    finally:
        peer.stop()


def flags_text(m: dns.message.Message) -> str:
    return dns.flags.to_text(m.flags)
