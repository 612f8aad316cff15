"""End to end with the real resolver: Knot primary -> NOTIFY -> `feed daemon` (IXFR, verify,
activate) -> `hotline-edge serve` reloads over its control socket -> a DNS client sees the new
rule enforced, within 2 s of the change on the primary.

Written against docs/contracts.md (`[[policy.zone]] feed = NAME`, control socket `reload`); it runs
once the resolver (issue 3) is merged into this branch and skips until then."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.unit.feedsync.helpers import write_config

from .knot import KNOTD, Knot, free_port_both


def _has_serve() -> bool:
    from admin_api.cli import build_parser
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return "serve" in getattr(action, "choices", {})


pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not os.path.exists(KNOTD), reason="Debian package knot (knotd) is not installed"),
    pytest.mark.skipif(not _has_serve(), reason="`hotline-edge serve` is not in this build: the resolver "
                                                "(issue 3) has not been merged into this branch yet"),
]
ZONE = "feed.rpz.test"


def query(port: int, name: str) -> int | None:
    try:
        r = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=0.5)
    except (dns.exception.Timeout, OSError):
        return None
    return r.rcode()


def test_ixfr_enforced_by_the_resolver_within_2s(tmp_path) -> None:  # type: ignore[no-untyped-def]
    notify_port, dns_port = free_port_both(), free_port_both()
    knot = Knot(str(tmp_path / "knot"), ZONE, ["bad.test CNAME ."], 10, notify_port=notify_port).start()
    state, run = str(tmp_path / "state"), str(tmp_path / "run")
    path = write_config(str(tmp_path / "config.toml"), state, run, [{
        "name": "twnic", "type": "xfr", "zone": ZONE, "primaries": [f"127.0.0.1:{knot.port}"],
        "tsig_name": "edge-key", "tsig_secret": knot.secret, "notify_listen": f"127.0.0.1:{notify_port}"}])
    with open(path, "a") as f:
        f.write(f'\n[resolver]\nlisten = ["127.0.0.1:{dns_port}"]\nupstreams = ["127.0.0.1:9"]\n'
                f'allow = ["127.0.0.0/8"]\n\n[[policy.zone]]\nname = "{ZONE}"\nfeed = "twnic"\n')
    daemon = subprocess.Popen([sys.executable, "-m", "admin_api.cli", "feed", "daemon", "--config", path],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    resolver = None
    try:
        _wait(lambda: os.path.exists(os.path.join(state, "feeds", "twnic", "active.rpz")), 90, "first AXFR")
        resolver = subprocess.Popen([sys.executable, "-m", "admin_api.cli", "serve", "--config", path],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: query(dns_port, "bad.test.") == dns.rcode.NXDOMAIN, 20, "the resolver enforcing bad.test")
        assert query(dns_port, "new.fraud.test.") != dns.rcode.NXDOMAIN
        knot.write_zone(["bad.test CNAME .", "new.fraud.test CNAME ."], 30)
        t0 = time.monotonic()
        knot.reload()
        _wait(lambda: query(dns_port, "new.fraud.test.") == dns.rcode.NXDOMAIN, 2.0, "the new rule enforced")
        assert time.monotonic() - t0 <= 2.0
    finally:
        for p in (daemon, resolver):
            if p is not None:
                p.send_signal(signal.SIGTERM)
                p.wait(20)
        knot.stop()


def _wait(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
