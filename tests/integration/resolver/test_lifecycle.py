"""Start, readiness, reload, failure and stop, as systemd and an operator see them.

systemd is played by a unix datagram socket the test owns (NOTIFY_SOCKET), the operator by the
real ``hotline-edge reload`` command and signals.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dns.rcode
import pytest

from resolver.service import GC_THRESHOLDS

from . import zones
from .peers import HOTLINE_EDGE, REPO, Peer, ask, control, free_port, resolver_config, start_resolver, wait_until

pytestmark = pytest.mark.integration


class FakeSystemd:
    """The receiving end of sd_notify: collects every datagram sent to NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[str] = []

    def poll(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.messages

    def saw(self, prefix: str) -> bool:
        return any(m.startswith(prefix) or ("\n" + prefix) in m for m in self.poll())

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[FakeSystemd]:
    s = FakeSystemd(tmp_path / "notify.sock")
    yield s
    s.close()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([*HOTLINE_EDGE, *args], check=False, capture_output=True, text=True, timeout=60,
                          env=env, cwd=REPO)


@pytest.mark.parametrize("rcode", ["refused", "servfail"])
def test_never_unfiltered_before_the_first_policy(tmp_path: Path, unbound: Peer, systemd: FakeSystemd,
                                                  rcode: str) -> None:
    port = free_port()
    cfg = resolver_config(tmp_path, port, [unbound.port], [{"feed": "hotline", "ede": 16}],
                          extra=f'not_ready_rcode = "{rcode}"')
    env = {"NOTIFY_SOCKET": str(systemd.path), "WATCHDOG_USEC": "400000"}
    peer = start_resolver(tmp_path, cfg, port, env=env, wait_ready=False)
    try:
        wait_until(lambda: _rcode(port, "www.example.") is not None, 30, "first answer", peer.proc, peer.log)
        expected = dns.rcode.REFUSED if rcode == "refused" else dns.rcode.SERVFAIL
        for name in ("www.example.", "blocked.example."):
            assert _rcode(port, name) == expected
        assert not systemd.saw("READY=1")
        assert control(peer, {"cmd": "status"})["ready"] is False
        # the feed's first version arrives; feedsync (here: the operator) asks for a reload
        feed = tmp_path / "state" / "feeds" / "hotline"
        feed.mkdir(parents=True)
        (feed / "active.rpz").write_text(zones.POLICY_MAIN)
        done = cli("reload", "--config", str(cfg))
        assert done.returncode == 0, done.stderr
        assert '"rpz.test.": 2026010101' in done.stdout
        assert _rcode(port, "blocked.example.") == dns.rcode.NXDOMAIN
        assert _rcode(port, "www.example.") == dns.rcode.NOERROR
        wait_until(lambda: systemd.saw("READY=1"), 5, "READY=1")
        ready = next(m for m in systemd.poll() if "READY=1" in m)
        assert "STATUS=serving policy rpz.test. serial 2026010101" in ready
        wait_until(lambda: sum(m == "WATCHDOG=1" for m in systemd.poll()) >= 2, 5, "two WATCHDOG=1")
    finally:
        peer.proc.send_signal(signal.SIGTERM)
        peer.proc.wait(20)
    assert peer.proc.returncode == 0
    assert systemd.saw("STOPPING=1")


def _rcode(port: int, name: str) -> int | None:
    try:
        return ask(port, name, timeout=0.5).rcode()
    except Exception:
        return None


def test_a_failed_reload_keeps_the_running_policy(tmp_path: Path, unbound: Peer) -> None:
    zone = tmp_path / "rpz.zone"
    zone.write_text(zones.POLICY_MAIN)
    port = free_port()
    metrics = free_port()
    cfg = resolver_config(tmp_path, port, [unbound.port], [{"file": str(zone)}], metrics_port=metrics)
    peer = start_resolver(tmp_path, cfg, port)
    try:
        zone.write_text("this is not a zone\n")
        done = cli("reload", "--config", str(cfg))
        assert done.returncode == 1, done.stdout + done.stderr
        assert '"ok": false' in done.stdout and "rpz.zone" in done.stdout
        assert ask(port, "blocked.example.").rcode() == dns.rcode.NXDOMAIN
        status = control(peer, {"cmd": "status"})
        assert status["zones"] == {"rpz.test.": 2026010101} and status["reloads"] == {"ok": 1, "failed": 1}
        zone.write_text(zones.POLICY_MAIN.replace("2026010101", "2026010102").replace("blocked.example ", "gone "))
        done = cli("reload", "--config", str(cfg))
        assert done.returncode == 0 and '"rpz.test.": 2026010102' in done.stdout
        assert ask(port, "blocked.example.").rcode() == dns.rcode.NOERROR
    finally:
        peer.stop()


def test_reload_cli_reports_an_unreachable_resolver(tmp_path: Path) -> None:
    done = cli("reload", "--socket", str(tmp_path / "nothing.sock"))
    assert done.returncode == 3
    assert "cannot reach the resolver's control socket" in done.stderr


def test_workers_share_the_load_and_a_dead_worker_is_replaced(tmp_path: Path, unbound: Peer) -> None:
    zone = tmp_path / "rpz.zone"
    zone.write_text(zones.POLICY_MAIN)
    port = free_port()
    metrics = free_port()
    cfg = resolver_config(tmp_path, port, [unbound.port], [{"file": str(zone)}], workers=2, metrics_port=metrics)
    peer = start_resolver(tmp_path, cfg, port)
    try:
        children = _children(peer.proc.pid)
        assert len(children) == 2, children
        for pid in children:   # both map the one compiled snapshot (shared pages, no copy per worker)
            with open(f"/proc/{pid}/maps") as f:
                assert "/run/policy/gen1-zone0.snap" in f.read(), pid
        os.kill(children[0], signal.SIGKILL)
        wait_until(lambda: len(_children(peer.proc.pid)) == 2 and children[0] not in _children(peer.proc.pid),
                   30, "replacement worker")
        # every answer, whichever worker takes it (SO_REUSEPORT spreads by source port), is filtered
        for i in range(60):
            assert ask(port, "blocked.example.").rcode() == dns.rcode.NXDOMAIN, i
        assert "worker_died" in peer.log.read_text()
        reply = control(peer, {"cmd": "reload"})
        assert reply["ok"] is True
        assert control(peer, {"cmd": "status"})["workers"] == 2
        # every worker, the replacement too, runs with the collector setting of decision 0003
        body = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read().decode()
        assert f"hotline_edge_resolver_gc_full_collection_every {float(GC_THRESHOLDS[2])}" in body
    finally:
        peer.stop()


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if b"spawn_main" in f.read():   # not the resource tracker
                        out.append(int(entry))
    return sorted(out)


def test_sigterm_lets_queries_in_flight_finish(tmp_path: Path, unbound: Peer) -> None:
    zone = tmp_path / "rpz.zone"
    zone.write_text(zones.POLICY_MAIN)
    port = free_port()
    cfg = resolver_config(tmp_path, port, [unbound.port], [{"file": str(zone)}])
    peer = start_resolver(tmp_path, cfg, port)
    t0 = time.monotonic()
    peer.proc.send_signal(signal.SIGTERM)
    assert peer.proc.wait(20) == 0
    assert time.monotonic() - t0 < 10
    assert '"event":"stopped"' in peer.log.read_text()
