"""Hot swap under load: 20 policy swaps while clients hammer the resolver; 0 dropped, 0 wrong.

Policy version k (serial 1000 + k) blocks name h<i>.walled.test exactly when (i + k) is even; the
upstream (Unbound -> Knot) answers every such name with 192.0.2.200. Each answer is checked
against the versions that could have answered it: a version is possible for a query when its
active interval overlaps the query's [sent, received] interval (version k is active from the
moment its reload was requested until the next reload was acknowledged). An NXDOMAIN must carry
the SOA of a possible version that blocks the name; a NOERROR must be the true address, for a name
that some possible version leaves alone. Every query must be answered.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from . import zones
from .peers import Peer, control, free_port, resolver_config, start_resolver, wait_until

pytestmark = pytest.mark.integration

NAMES = zones.HAMMER_NAMES
SWAPS = 20


def write_version(path: Path, version: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(zones.hammer_version(version))
    os.replace(tmp, path)


class Hammer(threading.Thread):
    def __init__(self, port: int, offset: int, tcp: bool, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.offset = offset
        self.tcp = tcp
        self.stop_ev = stop
        self.results: list[tuple[float, float, str, dns.message.Message | None]] = []

    def run(self) -> None:
        i = self.offset
        while not self.stop_ev.is_set():
            name = NAMES[i % len(NAMES)]
            i += 1
            q = dns.message.make_query(name, "A", use_edns=0)
            t0 = time.monotonic()
            try:
                if self.tcp:
                    r = dns.query.tcp(q, "127.0.0.1", port=self.port, timeout=3)
                else:
                    r = dns.query.udp(q, "127.0.0.1", port=self.port, timeout=3)
            except dns.exception.Timeout:
                r = None
            self.results.append((t0, time.monotonic(), name, r))


@pytest.mark.parametrize("workers", [1, 2])
def test_twenty_swaps_under_load(tmp_path: Path, unbound: Peer, workers: int) -> None:
    zone = tmp_path / "swap.zone"
    write_version(zone, 0)
    port = free_port()
    cfg = resolver_config(tmp_path, port, [unbound.port], [{"file": str(zone), "max_policy_ttl": 30}],
                          workers=workers)
    peer = start_resolver(tmp_path, cfg, port)
    try:
        stop = threading.Event()
        hammers = [Hammer(port, k * 5, tcp=(k == 3), stop=stop) for k in range(6)]
        for h in hammers:
            h.start()
        wait_until(lambda: sum(len(h.results) for h in hammers) > 200, 20, "first answers under load")
        intervals: dict[int, list[float]] = {0: [0.0, float("inf")]}
        for k in range(1, SWAPS + 1):
            write_version(zone, k)
            t_req = time.monotonic()
            if k % 4 == 0:   # every fourth swap by SIGHUP, the rest through the control socket
                peer.proc.send_signal(signal.SIGHUP)
                want = {"swap.rpz.test.": zones.HAMMER_BASE + k}
                wait_until(lambda want=want: control(peer, {"cmd": "status"}).get("zones") == want,
                           30, f"SIGHUP swap {k}")
            else:
                reply = control(peer, {"cmd": "reload"})
                assert reply["ok"] is True, reply
                assert reply["zones"] == {"swap.rpz.test.": zones.HAMMER_BASE + k}
            t_ack = time.monotonic()
            intervals[k - 1][1] = t_ack
            intervals[k] = [t_req, float("inf")]
            time.sleep(0.15)
        time.sleep(0.3)
        stop.set()
        for h in hammers:
            h.join(10)
        results = [r for h in hammers for r in h.results]
        dropped = [r for r in results if r[3] is None]
        wrong = [(name, _describe(resp)) for t0, t1, name, resp in results
                 if resp is not None and not zones.fits_a_version(name, resp, t0, t1, intervals)]
        assert len(results) > 1000, f"only {len(results)} queries were made"
        assert dropped == [], f"{len(dropped)} of {len(results)} queries got no answer"
        assert wrong == [], f"{len(wrong)} of {len(results)} answers fit no active version: {wrong[:5]}"
        # every version actually answered some query (the swaps were seen by clients)
        seen = {zones.soa_serial(resp) for *_x, resp in results if resp is not None} - {None}
        assert len(seen) >= SWAPS // 2, f"answers came from only {len(seen)} versions"
    finally:
        peer.stop()
    assert peer.proc.returncode == 0, peer.log.read_text()[-2000:]


def _describe(resp: dns.message.Message) -> str:
    return f"{dns.rcode.to_text(resp.rcode())} serial={zones.soa_serial(resp)} answer={[str(r) for r in resp.answer]}"
