"""``hotline-edge demo``: the whole appliance on loopback, on an embedded default.

What runs, each as the real command an operator runs under systemd (docs/operations.md):

    hotline side   signing keys, a signed takedown bundle (`feed publish` of the demo orders) in a
                   TUF repository served over HTTP on 127.0.0.1
    node side      `feed sync` (verify, activate, receipt), then `serve` (the resolver, policy =
                   the signed feed + the operator's local zone, blocked lookups logged to SQLite with
                   client addresses sealed to the compliance key), `feed daemon` (refreshes), and
                   `api serve` (the admin API on 127.0.0.1:8080) with a hotline token issued
    upstream       a tiny built-in server for the demo names (resolver.demo), so nothing leaves
                   the machine

Everything is synthetic (.test names, documentation addresses, an invented court). The working
folder is temporary unless ``--dir`` is given; ``HOTLINE_EDGE_DEMO_ONCE=1`` prints what to try and
stops (used by the tests).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

FEED = "hotline"
FEED_ZONE = "hotline.rpz.test"
LOCAL_ZONE = "local.rpz.test"
STOP_PAGE = "stop.hotline-edge.test"
EDE_TEXT = "blocked under order {order_ref} ({zone})"

# The hotline's orders (synthetic): what the signed bundle carries. Times are set when published.
DEMO_ORDERS: tuple[dict[str, Any], ...] = (
    {"entry_id": "HL-1", "order_ref": "TW-2026-0042", "category": "csam", "target": "csam-site.test",
     "match": "subdomains", "action": "nxdomain", "stop_page": ""},
    {"entry_id": "HL-2", "order_ref": "HK-EH-2026-0107", "category": "fraud", "target": "fraud-shop.test",
     "match": "exact", "action": "stop_page", "stop_page": "hotline"},
    {"entry_id": "HL-3", "order_ref": "TW-2026-0077", "category": "fraud", "target": "nodata-order.test",
     "match": "exact", "action": "nodata", "stop_page": ""},
)
COMMON = {"issuing_authority": "Synthetic District Court of Example", "legal_basis": "Example Act art. 8",
          "appeal_contact": "appeals@hotline.test", "retention_days": 180}

DIG_EXAMPLES = (
    ("csam-site.test", "A", "signed feed, order TW-2026-0042: NXDOMAIN, policy SOA, EDE 17 naming the order"),
    ("www.csam-site.test", "A", "the same order covers every name below it"),
    ("fraud-shop.test", "A", "signed feed, stop page: CNAME to stop.hotline-edge.test and its address"),
    ("login.phish-kit.test", "A", "local zone, walled garden: CNAME to *.garden.hotline-edge.test"),
    ("shop.fraud-ring.test", "A", "local zone, answer address in a blocked range (rpz-ip): NXDOMAIN"),
    ("www.example.test", "A", "not listed: the upstream's answer, untouched"),
)


class DemoError(Exception):
    """A demo component did not start; the message says which, ``log`` is its log file."""

    def __init__(self, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.log = log


@dataclass
class DemoPorts:
    dns: int = 5353
    upstream: int = 5354
    api: int = 8080


@dataclass
class DemoStack:
    """What runs, and how to stop it (in reverse order of starting)."""

    workdir: Path
    ports: DemoPorts
    config: Path
    feed_url: str = ""
    hotline_token: str = ""
    compliance_token: str = ""
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    stops: list[Callable[[], None]] = field(default_factory=list)

    def log(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for stop in reversed(self.stops):
            with contextlib.suppress(Exception):
                stop()


# -- the hotline side ----------------------------------------------------------------------------------

def demo_orders(now: datetime) -> list[dict[str, Any]]:
    def iso(t: datetime) -> str:
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    times = {"issued_at": iso(now - timedelta(days=2)), "effective_at": iso(now - timedelta(days=1)),
             "expires_at": iso(now + timedelta(days=90))}
    return [{**o, **COMMON, **times} for o in DEMO_ORDERS]


def publish_feed(work: Path, now: datetime) -> Path:
    """The hotline's keys and a signed repository of the demo orders. Returns the repository folder."""
    from feedsync.publish import keygen, publish_orders
    keys, repo = work / "hotline" / "keys", work / "hotline" / "repo"
    for role in ("root", "targets", "snapshot", "timestamp"):
        keygen(str(keys), role)
    orders = json.dumps(demo_orders(now)).encode()
    publish_orders(str(repo), str(keys), FEED, orders, "demo-orders.json", now=now)
    trust = work / "node" / "trust"
    trust.mkdir(parents=True, exist_ok=True)
    shutil.copy(repo / "metadata" / "1.root.json", trust / f"{FEED}-root.json")
    return repo


class _RepoHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_repo(repo: Path) -> tuple[str, Callable[[], None]]:
    """The hotline's repository over HTTP on a free loopback port (HTTPS in production)."""
    handler = lambda *a, **kw: _RepoHandler(*a, directory=str(repo), **kw)  # noqa: E731
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, name="demo-feed-http", daemon=True).start()

    def stop() -> None:
        srv.shutdown()
        srv.server_close()
    return f"http://127.0.0.1:{srv.server_address[1]}/", stop


# -- the upstream ------------------------------------------------------------------------------------

def serve_upstream(port: int) -> Callable[[], None]:
    """The demo names over UDP and TCP on 127.0.0.1:port (resolver.demo.demo_answer)."""
    from resolver.demo import demo_answer
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    udp.bind(("127.0.0.1", port))
    tcp.bind(("127.0.0.1", port))
    tcp.listen(16)
    done = threading.Event()

    def udp_loop() -> None:
        while not done.is_set():
            try:
                data, addr = udp.recvfrom(4096)
            except OSError:
                return
            out = demo_answer(data)
            if out is not None:
                with contextlib.suppress(OSError):
                    udp.sendto(out, addr)

    def tcp_loop() -> None:
        while not done.is_set():
            try:
                conn, _ = tcp.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError, ValueError):
                conn.settimeout(2)
                size = int.from_bytes(_recv_exact(conn, 2), "big")
                out = demo_answer(_recv_exact(conn, size))
                if out is not None:
                    conn.sendall(len(out).to_bytes(2, "big") + out)

    for loop in (udp_loop, tcp_loop):
        threading.Thread(target=loop, name=f"demo-upstream-{loop.__name__}", daemon=True).start()

    def stop() -> None:
        done.set()
        for s in (udp, tcp):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
    return stop


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise ValueError("connection closed")
        buf += chunk
    return buf


# -- the node -------------------------------------------------------------------------------------

def _toml(s: str) -> str:
    return json.dumps(s)


def write_config(work: Path, ports: DemoPorts, feed_url: str) -> Path:
    node = work / "node"
    local_zone = str(resources.files("rpz") / "data" / "demo-local.rpz")
    text = f"""\
# hotline-edge demo node (docs/configuration.md); everything on loopback, synthetic data only
[node]
id = "demo-node"
state_dir = {_toml(str(node / "state"))}
runtime_dir = {_toml(str(node / "run"))}

[resolver]
listen = ["127.0.0.1:{ports.dns}"]
upstreams = ["127.0.0.1:{ports.upstream}"]
allow = ["127.0.0.0/8"]
workers = 1

# the hotline's signed orders first (highest precedence), then the operator's own zone
[[policy.zone]]
feed = {_toml(FEED)}
name = {_toml(FEED_ZONE)}
ede = 17
ede_text = {_toml(EDE_TEXT)}

[[policy.zone]]
file = {_toml(local_zone)}
name = {_toml(LOCAL_ZONE)}
ede = 15
ede_text = {_toml(EDE_TEXT)}

[blocklog]
compliance_public_key = {_toml(str(node / "keys" / "compliance-x25519.pub"))}
retention_days = 180

[[feed]]
name = {_toml(FEED)}
type = "bundle"
zone = {_toml(FEED_ZONE)}
url = {_toml(feed_url)}
trusted_root = {_toml(str(node / "trust" / f"{FEED}-root.json"))}
categories = ["csam", "fraud"]
stop_pages = {{ hotline = {_toml(STOP_PAGE)} }}
refresh = 30
freshness = 3600

[api]
listen = "127.0.0.1:{ports.api}"
database = {_toml(str(node / "state" / "compliance.sqlite"))}
compliance_private_key = {_toml(str(node / "keys" / "compliance-x25519.key"))}
signing_key = {_toml(str(node / "keys" / "package-ed25519.pem"))}
isp_name = "Example Broadband (demo)"
jurisdiction = "HK"
argon2_time_cost = 1
"""
    for d in ("state", "run"):
        (node / d).mkdir(parents=True, exist_ok=True)
    path = node / "config.toml"
    path.write_text(text)
    return path


def _cli() -> list[str]:
    return [sys.executable, "-c", "import sys; from admin_api.cli import main; sys.exit(main())"]


def run_cli(stack: DemoStack, name: str, *args: str, timeout: float = 180) -> str:
    """One command to completion; its stderr goes to logs/<name>.log. DemoError when it fails."""
    with open(stack.log(name), "ab") as err:
        r = subprocess.run([*_cli(), *args], stdout=subprocess.PIPE, stderr=err, timeout=timeout, check=False)
    if r.returncode != 0:
        raise DemoError(f"`hotline-edge {' '.join(args)}` failed (exit {r.returncode})", stack.log(name))
    return r.stdout.decode()


def start_daemon(stack: DemoStack, name: str, *args: str) -> None:
    err = open(stack.log(name), "ab")  # noqa: SIM115 - the child keeps writing to it
    stack.procs[name] = subprocess.Popen([*_cli(), *args], stdout=err, stderr=err)
    err.close()


def _wait(stack: DemoStack, what: str, cond: Callable[[], bool], timeout: float, log: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in stack.procs.items():
            if proc.poll() is not None:
                raise DemoError(f"{name} exited (status {proc.returncode}) while waiting for {what}",
                                stack.log(name))
        with contextlib.suppress(Exception):
            if cond():
                return
        time.sleep(0.1)
    raise DemoError(f"{what}: not within {timeout:.0f} s", stack.log(log))


def dns_rcode(port: int, name: str) -> int:
    import dns.message
    import dns.query
    q = dns.message.make_query(name, "A")
    return int(dns.query.udp(q, "127.0.0.1", port=port, timeout=1).rcode())


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310 - loopback, fixed scheme
        return bool(r.status == 200)


def port_free(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start(ports: DemoPorts, workdir: Path, out: TextIO) -> DemoStack:
    """Start everything; returns the running stack (stop it with ``stack.stop()``)."""
    def step(text: str) -> None:
        out.write(f"  - {text}\n")
        out.flush()

    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    stack = DemoStack(workdir=workdir, ports=ports, config=workdir / "node" / "config.toml")
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        step("hotline: signing keys, demo orders signed into a TUF repository (feed publish)")
        repo = publish_feed(workdir, now)
        stack.feed_url, stop_http = serve_repo(repo)
        stack.stops.append(stop_http)
        stack.stops.append(serve_upstream(ports.upstream))
        stack.config = write_config(workdir, ports, stack.feed_url)
        cfg = str(stack.config)
        step("node: compliance and package keys (api keygen)")
        run_cli(stack, "keygen", "api", "keygen", "--out", str(workdir / "node" / "keys"))
        run_cli(stack, "checkconf", "checkconf", cfg)
        step(f"node: feed sync from {stack.feed_url} (verify signatures, activate, receipt)")
        run_cli(stack, "feed-sync", "feed", "sync", "--config", cfg)
        step(f"node: resolver on 127.0.0.1:{ports.dns}, blocked lookups logged to SQLite")
        start_daemon(stack, "resolver", "serve", "--config", cfg)
        _wait(stack, "the resolver enforcing the signed feed",
              lambda: dns_rcode(ports.dns, "csam-site.test.") == 3, 60, "resolver")
        start_daemon(stack, "feed-daemon", "feed", "daemon", "--config", cfg)
        step(f"node: admin API on http://127.0.0.1:{ports.api}")
        start_daemon(stack, "api", "api", "serve", "--config", cfg)
        _wait(stack, "the admin API", lambda: http_ok(f"http://127.0.0.1:{ports.api}/healthz"), 60, "api")
        stack.hotline_token = run_cli(stack, "token", "api", "token", "issue", "--config", cfg, "--role", "hotline",
                                      "--subject", "analyst.demo@hotline.test", "--ttl", "1d").strip()
        return stack
    except BaseException:
        stack.stop()
        raise


def _summary(resp: Any) -> str:
    import dns.rcode
    import dns.rdatatype
    parts = [dns.rcode.to_text(resp.rcode())]
    for rrset in resp.answer:
        for rd in rrset:
            parts.append(f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} {rd}")
    for rrset in resp.additional:
        if rrset.rdtype == dns.rdatatype.SOA:
            parts.append(f"policy SOA {rrset.name}")
    for opt in getattr(resp, "options", ()) or ():
        if getattr(opt, "otype", None) == 15:
            parts.append(f"EDE {int(opt.code)} \"{opt.text}\"")
    return "; ".join(parts)


def print_guide(stack: DemoStack, out: TextIO) -> None:
    """What to try, each with what the running node answered just now."""
    import dns.message
    import dns.query
    p, cfg, token = stack.ports, stack.config, stack.hotline_token
    out.write(f"\nhotline-edge demo is running (working folder {stack.workdir}).\n\nTry DNS (Ctrl-C stops "
              "everything):\n\n")
    for name, qtype, what in DIG_EXAMPLES:
        out.write(f"  dig @127.0.0.1 -p {p.dns} {name} {qtype}\n      # {what}\n")
        try:
            q = dns.message.make_query(name, qtype, use_edns=0)
            out.write("      -> " + _summary(dns.query.udp(q, "127.0.0.1", port=p.dns, timeout=2)) + "\n")
        except Exception as exc:
            out.write(f"      -> (no answer: {exc})\n")
    base = f"http://127.0.0.1:{p.api}"
    out.write("\nAs the hotline, confirm each order took effect (token of role hotline, valid 1 day):\n\n")
    out.write(f"  export TOKEN={token}\n")
    out.write(f"  curl -s -H \"Authorization: Bearer $TOKEN\" {base}/hotline/orders/TW-2026-0042\n")
    status = _get_json(f"{base}/hotline/orders/TW-2026-0042", token)
    if status is not None:
        out.write(f"      -> active: {status.get('active')}, hits: {status.get('hits_total')}\n")
    out.write(f"  curl -s -X POST -H \"Authorization: Bearer $TOKEN\" {base}/hotline/orders/TW-2026-0042/probe\n")
    out.write(f"  curl -s -H \"Authorization: Bearer $TOKEN\" '{base}/hotline/receipts?feed={FEED}'\n")
    hl = "hotline-edge"
    out.write("\nAs the operator (same node, same configuration):\n\n")
    for args, what in ((f"feed status --config {cfg}", "the signed feed: serial, age, refusals"),
                       (f"hotline status TW-2026-0042 --config {cfg}", "the order on this node"),
                       (f"log verify --config {cfg}", "the blocked-lookup log's hash chain"),
                       (f"feed receipts --config {cfg}", "signed receipts of what was applied")):
        out.write(f"  {hl} {args}\n      # {what}\n")
    out.write(f"\nLogs of each component: {stack.workdir / 'logs'}\n\n")
    out.flush()


def _get_json(url: str, token: str) -> dict[str, Any] | None:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310 - loopback
            doc = json.loads(r.read())
    except Exception:
        return None
    return doc if isinstance(doc, dict) else None


@contextlib.contextmanager
def workdir_for(path: str | None) -> Iterator[Path]:
    if path:
        p = Path(path).resolve()
        if p.exists() and any(p.iterdir()):
            raise DemoError(f"--dir {p} is not empty: give a new or empty folder")
        p.mkdir(parents=True, exist_ok=True)
        yield p
        return
    tmp = tempfile.mkdtemp(prefix="hotline-edge-demo-")
    try:
        yield Path(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(ports: DemoPorts, directory: str | None, out: TextIO) -> int:
    """``hotline-edge demo``: exit 0 after a clean stop, 3 when something could not start."""
    busy = [f"{kind} {port}" for port, kind, k in ((ports.dns, "udp", socket.SOCK_DGRAM),
                                                     (ports.dns, "tcp", socket.SOCK_STREAM),
                                                     (ports.upstream, "udp", socket.SOCK_DGRAM),
                                                     (ports.api, "tcp", socket.SOCK_STREAM))
            if not port_free(port, k)]
    if busy:
        out.write(f"port(s) in use on 127.0.0.1: {', '.join(busy)}; stop what uses them or choose others "
                  "(--port, --upstream-port, --api-port)\n")
        return 3
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    out.write("hotline-edge demo: starting the appliance on loopback\n")
    try:
        with workdir_for(directory) as work:
            try:
                stack = start(ports, work, out)
                try:
                    print_guide(stack, out)
                    if not os.environ.get("HOTLINE_EDGE_DEMO_ONCE"):
                        while not stop.wait(0.5):
                            for name, proc in stack.procs.items():
                                if proc.poll() is not None:
                                    raise DemoError(f"{name} exited (status {proc.returncode})", stack.log(name))
                        out.write("stopping\n")
                finally:
                    stack.stop()
            except DemoError as exc:   # show the log before a temporary folder goes away
                out.write(f"demo failed: {exc}\n")
                if exc.log is not None and exc.log.exists():
                    tail = exc.log.read_text(errors="replace").splitlines()[-20:]
                    out.write(f"last lines of {exc.log}:\n" + "".join(f"  {line}\n" for line in tail))
                return 3
    except DemoError as exc:
        out.write(f"demo failed: {exc}\n")
        return 3
    return 0
