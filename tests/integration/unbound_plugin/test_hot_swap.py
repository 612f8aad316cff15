"""Policy updates reach a running Unbound without a restart and without holding a query.

The policy is a feed zone (``feed = "hotline"``): what the plugin maps is
``<state_dir>/feeds/hotline/active.snap``, replaced atomically the way feedsync activates a version.
Version k (serial 1000 + k) blocks h<i>.walled.test exactly when (i + k) is even; the truth for
every such name is 192.0.2.200 (Knot's ``*.walled.test``). Clients query all the time over UDP and
TCP, some with CD=1 (a cached truth must not reach them either); twenty versions are activated,
half noticed by the plugin's watcher, half announced on the control socket as feedsync does.

Checked: every query is answered; every answer fits a version that was active while it was in
flight; each version is enforced within 2 s of its activation (measured: the first answer of the
new version to a name whose outcome the version changed); Unbound's process never changed.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

import rpz
from rpz.snapshot import write_snapshot

from ..resolver import zones
from ..resolver.peers import Peer, control
from .harness import log_events, plugin_config, start_plugin

pytestmark = pytest.mark.integration

NAMES = zones.HAMMER_NAMES
SWAPS = 20
ENFORCE_WITHIN_S = 2.0


def activate(snap: Path, version: int) -> None:
    zone = rpz.compile_text(zones.hammer_version(version).encode(), "swap")
    write_snapshot(zone, str(snap))      # temp, fsync, rename, fsync(dir): what feedsync does


class Client(threading.Thread):
    def __init__(self, port: int, offset: int, *, tcp: bool, cd: bool, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.offset, self.tcp, self.cd, self.stop_ev = port, offset, tcp, cd, stop
        self.results: list[tuple[float, float, str, dns.message.Message | None]] = []

    def run(self) -> None:
        i = self.offset
        while not self.stop_ev.is_set():
            name = NAMES[i % len(NAMES)]
            i += 1
            q = dns.message.make_query(name, "A", use_edns=0)
            if self.cd:
                q.flags |= dns.flags.CD
            t0 = time.monotonic()
            try:
                query = dns.query.tcp if self.tcp else dns.query.udp
                r: dns.message.Message | None = query(q, "127.0.0.1", port=self.port, timeout=3)
            except dns.exception.Timeout:
                r = None
            self.results.append((t0, time.monotonic(), name, r))


def _outcome(port: int, name: str) -> str:
    r = dns.query.udp(dns.message.make_query(name, "A", use_edns=0), "127.0.0.1", port=port, timeout=2)
    return "blocked" if r.rcode() == dns.rcode.NXDOMAIN else "allowed"


@pytest.fixture()
def feed_plugin(tmp_path: Path, knot: Peer) -> tuple[Peer, Path]:
    snap = tmp_path / "state" / "feeds" / "hotline" / "active.snap"
    snap.parent.mkdir(parents=True)
    activate(snap, 0)
    cfg = plugin_config(tmp_path, [{"feed": "hotline", "name": "swap.rpz.test.", "max_policy_ttl": 30}])
    return start_plugin(tmp_path, knot.port, cfg), snap


def test_twenty_activations_under_load(feed_plugin: tuple[Peer, Path]) -> None:
    peer, snap = feed_plugin
    pid = peer.proc.pid
    try:
        stop = threading.Event()
        clients = [Client(peer.port, k * 5, tcp=(k == 3), cd=(k == 4), stop=stop) for k in range(6)]
        for c in clients:
            c.start()
        intervals: dict[int, list[float]] = {0: [0.0, float("inf")]}
        latencies = []
        for k in range(1, SWAPS + 1):
            flipped = NAMES[k % len(NAMES)]            # every name flips between consecutive versions
            want = "blocked" if flipped in zones.blocked_in(k) else "allowed"
            t_req = time.monotonic()
            activate(snap, k)
            if k % 2 == 0:                             # announced as feedsync does; else the watcher sees it
                reply = control(peer, {"cmd": "reload"})
                assert reply["ok"] is True and reply["zones"] == {"swap.rpz.test.": zones.HAMMER_BASE + k}, reply
            while _outcome(peer.port, flipped) != want:
                assert time.monotonic() - t_req < 10, f"version {k} not enforced after 10 s"
            latencies.append(time.monotonic() - t_req)
            t_ack = time.monotonic()
            intervals[k - 1][1] = t_ack
            intervals[k] = [t_req, float("inf")]
            time.sleep(0.1)
        time.sleep(0.3)
        stop.set()
        for c in clients:
            c.join(10)
        results = [r for c in clients for r in c.results]
        dropped = [r for r in results if r[3] is None]
        wrong = [(name, r.rcode(), zones.soa_serial(r)) for t0, t1, name, r in results
                 if r is not None and not zones.fits_a_version(name, r, t0, t1, intervals)]
        assert len(results) > 500, f"only {len(results)} queries were made"
        assert dropped == [], f"{len(dropped)} of {len(results)} queries got no answer"
        assert wrong == [], f"{len(wrong)} of {len(results)} answers fit no active version: {wrong[:5]}"
        assert max(latencies) <= ENFORCE_WITHIN_S, f"enforcement took {max(latencies):.2f} s: {latencies}"
        served = {zones.soa_serial(r) for *_x, r in results if r is not None and zones.soa_serial(r) is not None}
        assert len(served) >= SWAPS // 2, f"answers came from only {len(served)} versions"
        assert peer.proc.poll() is None and peer.proc.pid == pid          # no restart
        active = [e for e in log_events(peer) if e.get("event") == "policy_active"]
        assert {e["reason"] for e in active} >= {"start", "watch", "control"}
    finally:
        peer.stop()


def test_a_failed_activation_keeps_the_running_policy(feed_plugin: tuple[Peer, Path]) -> None:
    peer, snap = feed_plugin
    try:
        assert _outcome(peer.port, NAMES[0]) == "blocked"          # version 0 blocks h0
        tmp = snap.with_suffix(".tmp")
        tmp.write_bytes(b"HEPZSNAP garbage")
        os.replace(tmp, snap)
        reply = control(peer, {"cmd": "reload"})
        assert reply["ok"] is False and "snap" in reply["error"]
        assert _outcome(peer.port, NAMES[0]) == "blocked"          # still version 0
        status = control(peer, {"cmd": "status"})
        assert status["zones"] == {"swap.rpz.test.": zones.HAMMER_BASE} and status["last_error"]
        activate(snap, 1)
        deadline = time.monotonic() + ENFORCE_WITHIN_S
        while _outcome(peer.port, NAMES[0]) != "allowed":
            assert time.monotonic() < deadline, "the next good version was not picked up"
    finally:
        peer.stop()
