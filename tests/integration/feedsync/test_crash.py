"""kill -9 during activation, then restart: the node serves the old or the new version, complete,
and the audit chain verifies. `hotline-edge feed sync` runs as a real process against a real HTTP
server with a TUF repository made by `feed publish`; the fake control socket kills it (SIGKILL) at
the moment the resolver is asked to load, i.e. after active.snap was switched and before the
version's text files, active.rpz, the feed state and its audit record were written."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

import rpz
from feedsync import config as fconfig
from feedsync.statedb import StateDB
from feedsync.store import FeedStore
from rpz.snapshot import open_snapshot
from tests.unit.feedsync.helpers import FakeResolver, write_config

from .conftest import HttpRepo
from .test_bundle_feed import fresh, orders

pytestmark = pytest.mark.integration
ZONE = "hotline.rpz.test"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "admin_api.cli", *args], capture_output=True, text=True,
                          timeout=120, check=False)


def publish(tmp: str, http_repo: HttpRepo, keys: str, n: int) -> None:
    path = orders(os.path.join(tmp, "orders.csv"), [fresh(i) for i in range(1, n + 1)])
    r = cli("feed", "publish", "--repo", http_repo.repo, "--keys", keys, "--feed", "hotline", "--orders", path)
    assert r.returncode == 0, r.stderr


def served(path: str) -> rpz.CompiledZone:
    with open(path, "rb") as f:
        return rpz.compile_text(f.read(), "active", ZONE)


def check_invariants(cfg: fconfig.Config, versions: dict[int, int], pending: int | None = None) -> tuple[int, int]:
    """active.snap (what the resolver maps) and active.rpz (the text, for people and the seed) are
    each one complete version: one we know (zone serial -> rules), or, for the snapshot only, the
    version being activated (``pending`` rules), whose files follow it; the chain verifies.
    Returns (snapshot serial, text serial)."""
    text = served(os.path.join(cfg.feed_dir("hotline"), "active.rpz"))
    assert text.serial in versions, text.serial
    assert text.stats.rules == versions[text.serial], (text.serial, text.stats.rules)
    snap = open_snapshot(os.path.join(cfg.feed_dir("hotline"), "active.snap"))
    if snap.serial in versions:
        assert snap.stats.rules == versions[snap.serial], (snap.serial, snap.stats.rules)
    else:
        assert pending is not None and snap.serial > text.serial and snap.stats.rules == pending, snap.serial
    db = StateDB(os.path.join(cfg.node.state_dir, "feeds", "feedsync.db"))
    try:
        assert db.verify_audit().ok
    finally:
        db.close()
    return snap.serial, text.serial


@pytest.fixture
def setup(tmp_path, http_repo: HttpRepo, keys: str):  # type: ignore[no-untyped-def]
    publish(str(tmp_path), http_repo, keys, 10)
    root = str(tmp_path / "trusted-root.json")
    shutil.copy(os.path.join(http_repo.repo, "metadata", "1.root.json"), root)
    path = write_config(str(tmp_path / "config.toml"), str(tmp_path / "state"), str(tmp_path / "run"), [{
        "name": "hotline", "type": "bundle", "zone": ZONE, "url": http_repo.url, "trusted_root": root,
        "blast_radius": 1.0}])
    cfg = fconfig.load(path)
    resolver = FakeResolver(cfg.control_socket, {ZONE: os.path.join(cfg.feed_dir("hotline"), "active.rpz")})
    r = cli("feed", "sync", "--config", path)
    assert r.returncode == 0, r.stdout + r.stderr
    yield cfg, path, resolver
    resolver.close()


def test_kill_9_while_the_resolver_loads_then_restart(setup, tmp_path, http_repo: HttpRepo, keys: str) -> None:  # type: ignore[no-untyped-def]
    cfg, path, resolver = setup
    publish(str(tmp_path), http_repo, keys, 25)
    proc = subprocess.Popen([sys.executable, "-m", "admin_api.cli", "feed", "sync", "--config", path],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    resolver.on_reload = lambda: os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    resolver.on_reload = None
    # right after the crash: the new version's snapshot is active, complete; its text and the
    # database still say old
    assert check_invariants(cfg, {1: 10}, pending=25) == (2, 1)
    db = StateDB(os.path.join(cfg.node.state_dir, "feeds", "feedsync.db"))
    assert db.state("hotline").zone_serial == 1 and len(db.audit("hotline")) == 1
    db.close()
    # restart while the hotline is unreachable: the last-known-good (what the database says) is restored
    http_repo.serve(str(tmp_path / "nowhere"))
    r = cli("feed", "sync", "--config", path)
    assert r.returncode == 3, r.stdout
    assert check_invariants(cfg, {1: 10}) == (1, 1)
    assert resolver.loaded == {ZONE: 1}
    db = StateDB(os.path.join(cfg.node.state_dir, "feeds", "feedsync.db"))
    rec = db.audit("hotline", kind="recovered")[0].record
    assert rec["restored"] == db.state("hotline").version and rec["resolver"] == "ok"
    db.close()
    # and once the hotline is back the new version is applied completely
    http_repo.serve(http_repo.repo)
    r = cli("feed", "sync", "--config", path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert check_invariants(cfg, {1: 10, 2: 25, 3: 25}) in ((2, 2), (3, 3))


def test_kill_9_at_random_moments(setup, tmp_path, http_repo: HttpRepo, keys: str) -> None:  # type: ignore[no-untyped-def]
    cfg, path, _ = setup
    rng = random.Random(4)
    known: dict[int, int] = {1: 10}
    db = StateDB(os.path.join(cfg.node.state_dir, "feeds", "feedsync.db"))
    for n in range(11, 15):
        publish(str(tmp_path), http_repo, keys, n * 3)
        proc = subprocess.Popen([sys.executable, "-m", "admin_api.cli", "feed", "sync", "--config", path],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.2, 1.2))  # the kill moment is what is random here, not a synchronisation
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        st = db.state("hotline")
        store = FeedStore(cfg.feed_dir("hotline"))
        for name in store.names():
            info = store.info(name)
            known[info.zone_serial] = len(info.ids)
        serving, _ = check_invariants(cfg, known, pending=n * 3)
        assert serving == st.zone_serial or serving > st.zone_serial
        r = cli("feed", "sync", "--config", path)           # restart: completes the cycle
        assert r.returncode == 0, r.stdout + r.stderr
        for name in store.names():
            info = store.info(name)
            known[info.zone_serial] = len(info.ids)
        zs = db.state("hotline").zone_serial
        assert check_invariants(cfg, known) == (zs, zs)
    db.close()
