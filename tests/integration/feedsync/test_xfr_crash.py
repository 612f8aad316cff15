"""An IXFR's activation interrupted at every step (kill -9 while the resolver loads it, and a crash
after each file switch), then a restart: the node serves the old or the new version, complete; the
restart recovers the last-known-good, continues by IXFR from its seed, and every kept version's
digest verifies against its stored seed text (feedsync.xfrdigest)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

import rpz
from feedsync import config as fconfig
from feedsync import xfrdigest
from feedsync.control import ControlClient
from feedsync.statedb import StateDB
from feedsync.store import FeedStore
from feedsync.sync import FeedSync
from rpz.snapshot import open_snapshot
from tests.unit.feedsync.helpers import FakeResolver, snapshot_matches_text, write_config

from .knot import KNOTD, Knot

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not os.path.exists(KNOTD), reason="Debian package knot (knotd) is not installed")]
ZONE = "feed.rpz.test"
RULES = [f"r{i}.bad.test CNAME ." for i in range(30)]


class Node:
    def __init__(self, tmp: str) -> None:
        self.knot = Knot(os.path.join(tmp, "knot"), ZONE, RULES, 10, zonemd=False).start()
        self.path = write_config(os.path.join(tmp, "config.toml"), os.path.join(tmp, "state"),
                                 os.path.join(tmp, "run"), [{
                                     "name": "twnic", "type": "xfr", "zone": ZONE,
                                     "primaries": [f"127.0.0.1:{self.knot.port}"], "tsig_name": "edge-key",
                                     "tsig_secret": self.knot.secret, "transfer_timeout": 10, "blast_radius": 1.0}])
        self.cfg = fconfig.load(self.path)
        self.dir = self.cfg.feed_dir("twnic")
        self.resolver = FakeResolver(self.cfg.control_socket, {ZONE: os.path.join(self.dir, "active.rpz")})
        self.db = StateDB(os.path.join(self.cfg.node.state_dir, "feeds", "feedsync.db"))

    def sync(self) -> FeedSync:
        return FeedSync(self.cfg, self.cfg.feed("twnic"), self.db, ControlClient(self.cfg.control_socket))

    def publish(self, rules: list[str], serial: int) -> None:
        self.knot.write_zone(rules, serial)
        self.knot.reload()
        self.knot.wait_serial(serial)

    def serving(self) -> tuple[int, int]:
        """(serial of active.snap, serial of active.rpz), each a complete version."""
        snap = open_snapshot(os.path.join(self.dir, "active.snap"))
        with open(os.path.join(self.dir, "active.rpz"), "rb") as f:
            text = rpz.compile_text(f.read(), "active", ZONE)
        return snap.serial, text.serial

    def check_kept_versions(self) -> None:
        store = FeedStore(self.dir)
        for name in store.names():
            info = store.info(name)
            assert xfrdigest.of_text(ZONE, store.read(name, "source")) == info.digest, name

    def close(self) -> None:
        self.knot.stop()
        self.resolver.close()
        self.db.close()


@pytest.fixture
def node(tmp_path) -> Iterator[Node]:  # type: ignore[no-untyped-def]
    n = Node(str(tmp_path))
    assert n.sync().cycle().outcome == "applied"
    yield n
    n.close()


def test_kill_9_while_the_resolver_loads_an_ixfr_then_restart(node: Node) -> None:
    node.publish([*RULES[5:], "new.fraud.test CNAME ."], 20)
    proc = subprocess.Popen([sys.executable, "-m", "admin_api.cli", "feed", "sync", "--config", node.path],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    node.resolver.on_reload = lambda: os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    node.resolver.on_reload = None
    # killed while the resolver loads: active.snap is the new version, active.rpz still the old one, both
    # complete; the database and the audit say old; the marker says the activation did not complete
    assert node.serving() == (20, 10)
    assert node.db.state("twnic").serial == 10 and len(node.db.audit("twnic")) == 1
    assert FeedStore(node.dir).activation()[1] is False
    # restart: the last-known-good is put back, then the new version comes again by IXFR from its seed
    res = node.sync().cycle()
    assert res.outcome == "applied" and res.serial == 20
    kinds = [(r.kind, r.record.get("extra", {}).get("transfer")) for r in node.db.audit("twnic")]
    assert kinds[:2] == [("applied", "ixfr"), ("recovered", None)]
    assert node.db.audit("twnic", kind="recovered")[0].record["restored"] is not None
    assert node.serving() == (20, 20) and node.resolver.loaded == {ZONE: 20}
    assert FeedStore(node.dir).activation() == (node.db.state("twnic").version, True)
    snapshot_matches_text(node.dir, ZONE)
    node.check_kept_versions()
    assert node.db.verify_audit().ok


class Crash(BaseException):
    """Stands for the process dying at that instant: nothing after it runs, nothing is cleaned up."""


@pytest.mark.parametrize("step", ["write_snapshot", "switch_snapshot", "write_version", "switch_text",
                                  "end_activation"])
def test_a_crash_after_each_step_of_an_ixfr_activation(node: Node, step: str) -> None:
    node.publish([*RULES[3:], "n1.test CNAME ."], 20)
    s = node.sync()
    real = getattr(s.store, step)

    def crash(*args: object, **kw: object) -> None:
        real(*args, **kw)
        raise Crash(step)

    setattr(s.store, step, crash)
    with pytest.raises(Crash):
        s.cycle()
    snap_serial, text_serial = node.serving()
    assert snap_serial in (10, 20) and text_serial in (10, 20)
    assert node.db.state("twnic").serial == 10
    # a restart (nothing in memory): recovered to the last-known-good, then the IXFR applied again
    res = node.sync().cycle()
    assert (res.outcome, res.serial) == ("applied", 20)
    assert node.db.audit("twnic", kind="recovered"), step
    assert node.serving() == (20, 20)
    snapshot_matches_text(node.dir, ZONE)
    # and the next IXFR continues from the new version
    node.publish([*RULES[4:], "n1.test CNAME .", "n2.test CNAME ."], 30)
    assert node.sync().cycle().outcome == "applied"
    assert node.db.audit("twnic", limit=1)[0].record["extra"]["transfer"] == "ixfr"
    assert node.serving() == (30, 30)
    node.check_kept_versions()
    assert node.db.verify_audit().ok
