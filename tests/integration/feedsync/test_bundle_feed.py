"""The signed bundle end to end: `hotline-edge feed publish` builds a TUF repository, a real HTTP
server on loopback serves it, feedsync verifies it with python-tuf and activates it. One test per
refusal code a bundle feed can produce, each showing the last-known-good still served and the audit
record."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

import rpz
from feedsync import bundle as b
from feedsync import config as fconfig
from feedsync.control import ControlClient
from feedsync.publish import Repository, keygen, load_signer, signers_from_dir
from feedsync.statedb import StateDB
from feedsync.sync import FeedSync
from tests.unit.feedsync.helpers import FakeResolver, entry, write_config

from .conftest import HttpRepo

pytestmark = pytest.mark.integration
ZONE = "hotline.rpz.test"
NOW = datetime.now(UTC).replace(microsecond=0)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "admin_api.cli", *args], capture_output=True, text=True,
                          timeout=120, check=False)


def orders(path: str, entries: list[dict], csv: bool = True) -> str:
    if csv:
        cols = list(entries[0])
        with open(path, "w") as f:
            f.write(",".join(cols) + "\n")
            for e in entries:
                f.write(",".join(str(e[c]) for c in cols) + "\n")
    else:
        with open(path, "w") as f:
            json.dump(entries, f)
    return path


def fresh(n: int, **over: object) -> dict:
    t = NOW.timestamp()
    return entry(n, issued_at=b.format_time(t - 86400), effective_at=b.format_time(t - 3600),
                 expires_at=b.format_time(t + 30 * 86400), **over)


@dataclass
class Node:
    cfg: fconfig.Config
    db: StateDB
    resolver: FakeResolver
    clock: list[float]
    http: HttpRepo
    keys: str
    tmp: str

    def syncer(self) -> FeedSync:
        return FeedSync(self.cfg, self.cfg.feed("hotline"), self.db, ControlClient(self.cfg.control_socket),
                        clock=lambda: self.clock[0])

    def cycle(self):  # type: ignore[no-untyped-def]
        return self.syncer().cycle()

    def served(self) -> rpz.CompiledZone:
        with open(os.path.join(self.cfg.feed_dir("hotline"), "active.rpz"), "rb") as f:
            return rpz.compile_text(f.read(), "active", ZONE)

    def blocks(self, qname: str) -> bool:
        return self.served().qname.match(rpz.names.from_text(qname + ".")) is not None

    def publish(self, entries: list[dict], *extra: str, feed: str = "hotline") -> None:
        path = orders(os.path.join(self.tmp, "orders.csv"), entries)
        r = cli("feed", "publish", "--repo", self.http.repo, "--keys", self.keys, "--feed", feed,
                "--orders", path, *extra)
        assert r.returncode == 0, r.stderr

    def last_audit(self):  # type: ignore[no-untyped-def]
        return self.db.audit("hotline", limit=1)[0]


def make_node(tmp_path, http_repo: HttpRepo, keys: str, **feed_over: object) -> Node:  # type: ignore[no-untyped-def]
    state, run = str(tmp_path / "state"), str(tmp_path / "run")
    root = str(tmp_path / "trusted-root.json")
    feed = {"name": "hotline", "type": "bundle", "zone": ZONE, "url": http_repo.url, "trusted_root": root,
            "freshness": 3600, "categories": ["fraud", "csam"]}
    feed.update(feed_over)
    write_config(str(tmp_path / "config.toml"), state, run, [feed])
    return Node(fconfig.Config(fconfig.NodeConfig("", "", ""), ()), None, None, [NOW.timestamp()],  # type: ignore[arg-type]
                http_repo, keys, str(tmp_path))


@pytest.fixture
def node(tmp_path, http_repo: HttpRepo, keys: str) -> Iterator[Node]:  # type: ignore[no-untyped-def]
    n = make_node(tmp_path, http_repo, keys)
    n.publish([fresh(i) for i in range(1, 11)])
    shutil.copy(os.path.join(http_repo.repo, "metadata", "1.root.json"), str(tmp_path / "trusted-root.json"))
    n.cfg = fconfig.load(str(tmp_path / "config.toml"))
    n.db = StateDB(os.path.join(n.cfg.node.state_dir, "feeds", "feedsync.db"))
    n.resolver = FakeResolver(n.cfg.control_socket, {ZONE: os.path.join(n.cfg.feed_dir("hotline"), "active.rpz")})
    res = n.cycle()
    assert res.outcome == "applied", res
    yield n
    n.resolver.close()
    n.db.close()


def test_publish_serve_verify_activate(node: Node) -> None:
    assert node.blocks("site7.bad.test")
    st = node.db.state("hotline")
    assert (st.serial, st.in_force) == (1, 10)
    rec = node.db.audit("hotline", kind="applied")[0].record
    assert len(rec["signer_keys"]) == 1 and rec["extra"]["targets_version"] == 1
    # metadata and target really went over HTTP
    assert any(p.endswith("timestamp.json") for p in node.http.requests)
    assert any(".takedowns.json" in p for p in node.http.requests)
    # a second version through the CLI sync, with the CLI status
    node.publish([fresh(i) for i in range(1, 12)])
    r = cli("feed", "sync", "--config", os.path.join(node.tmp, "config.toml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "hotline: applied serial 2" in r.stdout
    assert node.blocks("site11.bad.test")
    s = cli("feed", "status", "--config", os.path.join(node.tmp, "config.toml"), "--json")
    doc = json.loads(s.stdout)
    assert doc[0]["serial"] == 2 and doc[0]["in_force"] == 11 and s.returncode == 0
    p = cli("feed", "status", "--config", os.path.join(node.tmp, "config.toml"), "--prometheus")
    assert 'hotline_edge_feed_serial{feed="hotline"} 2.0' in p.stdout
    a = cli("feed", "audit", "--config", os.path.join(node.tmp, "config.toml"), "--verify")
    assert a.returncode == 0 and "chain intact: 2 records" in a.stdout


def test_json_orders_and_rejected_entries(node: Node) -> None:
    entries = [fresh(i) for i in range(1, 11)] + [fresh(20, target="http://x.test/p"), fresh(21, target="test")]
    path = orders(os.path.join(node.tmp, "orders.json"), entries, csv=False)
    r = cli("feed", "publish", "--repo", node.http.repo, "--keys", node.keys, "--feed", "hotline", "--orders", path)
    assert r.returncode == 0, r.stderr
    assert node.cycle().outcome == "applied"
    reasons = sorted(x["reason"] for x in node.db.state("hotline").rejected_list)
    assert reasons == ["ENTRY_PUBLIC_SUFFIX", "ENTRY_URL_TARGET"]


def test_untrusted_signature_refused(node: Node, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rogue_dir = str(tmp_path / "rogue")
    keygen(rogue_dir, "targets")
    signers = signers_from_dir(node.keys)
    signers["targets"] = [load_signer(os.path.join(rogue_dir, "targets.key"))]
    data = b.dump_bundle("hotline", 2, int(NOW.timestamp()), [fresh(i) for i in range(1, 11)] + [fresh(66)])
    Repository(node.http.repo).publish(data, 2, signers, now=NOW)
    res = node.cycle()
    assert (res.outcome, res.code) == ("refused", "FEED_UNTRUSTED_SIGNATURE")
    assert not node.blocks("site66.bad.test") and node.served().serial == 1
    assert node.last_audit().record["code"] == "FEED_UNTRUSTED_SIGNATURE"


def test_below_threshold_refused_then_rotation_followed(tmp_path, http_repo: HttpRepo, keys: str) -> None:  # type: ignore[no-untyped-def]
    keygen(keys, "targets-2")
    n = make_node(tmp_path, http_repo, keys)
    n.publish([fresh(i) for i in range(1, 11)], "--threshold", "targets=2")
    shutil.copy(os.path.join(http_repo.repo, "metadata", "1.root.json"), str(tmp_path / "trusted-root.json"))
    n.cfg = fconfig.load(str(tmp_path / "config.toml"))
    n.db = StateDB(os.path.join(n.cfg.node.state_dir, "feeds", "feedsync.db"))
    n.resolver = FakeResolver(n.cfg.control_socket, {ZONE: os.path.join(n.cfg.feed_dir("hotline"), "active.rpz")})
    try:
        res = n.cycle()
        assert res.outcome == "applied"
        assert len(n.db.audit("hotline", kind="applied")[0].record["signer_keys"]) == 2
        # one stolen targets key is not enough
        signers = signers_from_dir(keys)
        signers["targets"] = signers["targets"][:1]
        data = b.dump_bundle("hotline", 2, int(NOW.timestamp()), [fresh(i) for i in range(1, 12)])
        Repository(http_repo.repo).publish(data, 2, signers, now=NOW)
        res = n.cycle()
        assert (res.outcome, res.code) == ("refused", "FEED_UNTRUSTED_SIGNATURE")
        assert not n.blocks("site11.bad.test")
        # the hotline rotates its targets keys (root v2 signed by the root key) and re-publishes
        new_dir = str(tmp_path / "new-targets")
        keygen(new_dir, "targets-new")
        new = [load_signer(os.path.join(new_dir, "targets-new.key"))]
        repo = Repository(http_repo.repo)
        assert repo.rotate("targets", new, 1, old_root_signers=signers_from_dir(keys)["root"],
                           new_root_signers=None, now=NOW) == 2
        s2 = signers_from_dir(keys)
        s2["targets"] = new
        repo.publish(data, 2, s2, now=NOW)
        res = n.cycle()
        assert res.outcome == "applied", res
        assert n.blocks("site11.bad.test")
        assert os.path.exists(os.path.join(n.cfg.feed_dir("hotline"), "tuf", "root_history", "2.root.json"))
    finally:
        n.resolver.close()
        n.db.close()


def test_rollback_of_the_repository_refused(node: Node, tmp_path) -> None:  # type: ignore[no-untyped-def]
    old = str(tmp_path / "old-repo")
    shutil.copytree(node.http.repo, old)
    node.publish([fresh(i) for i in range(1, 12)])
    assert node.cycle().outcome == "applied"
    node.http.serve(old)                        # a mirror (or attacker) serves the earlier repository
    res = node.cycle()
    assert (res.outcome, res.code) == ("refused", "FEED_ROLLBACK")
    assert node.blocks("site11.bad.test") and node.served().serial == 2
    rec = node.last_audit()
    assert rec.kind == "refused" and rec.record["code"] == "FEED_ROLLBACK" and rec.record["lkg_serial"] == 2


def test_expired_metadata_refused(node: Node) -> None:
    node.publish([fresh(i) for i in range(1, 12)], "--expires-days", "timestamp=-1")
    res = node.cycle()
    assert (res.outcome, res.code) == ("refused", "FEED_EXPIRED")
    assert not node.blocks("site11.bad.test") and node.blocks("site10.bad.test")
    assert node.last_audit().record["code"] == "FEED_EXPIRED"


def test_tampered_target_refused_integrity(node: Node) -> None:
    node.publish([fresh(i) for i in range(1, 12)])
    tdir = os.path.join(node.http.repo, "targets")
    newest = max((os.path.join(tdir, f) for f in os.listdir(tdir)), key=os.path.getmtime)
    p = pathlib.Path(newest)
    p.write_bytes(p.read_bytes().replace(b"site11.bad.test", b"site11.bad.tesx"))
    res = node.cycle()
    assert (res.outcome, res.code) == ("refused", "FEED_INTEGRITY")
    assert node.served().serial == 1 and not node.blocks("site11.bad.tesx")
    assert node.last_audit().record["code"] == "FEED_INTEGRITY"


def test_mix_and_match_refused_inconsistent(node: Node) -> None:
    node.publish([fresh(i) for i in range(1, 12)])
    meta = os.path.join(node.http.repo, "metadata")
    shutil.copy(os.path.join(meta, "1.snapshot.json"), os.path.join(meta, "2.snapshot.json"))
    res = node.cycle()
    assert (res.outcome, res.code) == ("refused", "FEED_INCONSISTENT")
    assert node.served().serial == 1 and node.last_audit().record["code"] == "FEED_INCONSISTENT"


def test_too_large_refused(tmp_path, http_repo: HttpRepo, keys: str) -> None:  # type: ignore[no-untyped-def]
    n = make_node(tmp_path, http_repo, keys, max_bytes=6000)
    n.publish([fresh(i) for i in range(1, 11)])
    shutil.copy(os.path.join(http_repo.repo, "metadata", "1.root.json"), str(tmp_path / "trusted-root.json"))
    n.cfg = fconfig.load(str(tmp_path / "config.toml"))
    n.db = StateDB(os.path.join(n.cfg.node.state_dir, "feeds", "feedsync.db"))
    n.resolver = FakeResolver(n.cfg.control_socket, {ZONE: os.path.join(n.cfg.feed_dir("hotline"), "active.rpz")})
    try:
        assert n.cycle().outcome == "applied"
        n.publish([fresh(i) for i in range(1, 200)])
        res = n.cycle()
        assert (res.outcome, res.code) == ("refused", "FEED_TOO_LARGE")
        assert n.served().serial == 1 and n.last_audit().record["check"] == "max_bytes"
    finally:
        n.resolver.close()
        n.db.close()


def test_scope_refused(node: Node) -> None:
    node.publish([fresh(i) for i in range(1, 12)], feed="another-country")
    res = node.cycle()
    assert (res.outcome, res.code) == ("refused", "FEED_SCOPE")
    assert not node.blocks("site11.bad.test") and node.last_audit().record["check"] == "feed_id"


def test_stale_when_the_server_is_gone(node: Node) -> None:
    node.http.server.shutdown()
    node.http.server.server_close()
    node.clock[0] += 7200
    res = node.cycle()
    assert (res.outcome, res.code) == ("failed", "FEED_UNREACHABLE")
    st = node.db.state("hotline")
    assert st.alarm == "FEED_STALE" and node.blocks("site1.bad.test")
    rec = node.last_audit()
    assert (rec.kind, rec.record["code"]) == ("alarm", "FEED_STALE")
    s = cli("feed", "status", "--config", os.path.join(node.tmp, "config.toml"))
    assert s.returncode == 1 and "ALARM: FEED_STALE" in s.stdout and "FEED_UNREACHABLE" in s.stdout


def test_rotate_cli_targets_key(node: Node, tmp_path) -> None:  # type: ignore[no-untyped-def]
    new_dir = str(tmp_path / "new-keys")
    assert cli("feed", "keygen", "--out", new_dir, "targets-2027").returncode == 0
    r = cli("feed", "rotate", "--repo", node.http.repo, "--keys", node.keys, "--role", "targets",
            "--new-keys", new_dir)
    assert r.returncode == 0, r.stderr
    assert "root version 2" in r.stdout
    res = node.cycle()       # same bundle, re-signed by the new key: verified, nothing to apply
    assert res.outcome == "no_change", res
    # the old targets key no longer counts
    signers = signers_from_dir(node.keys)
    data = b.dump_bundle("hotline", 2, int(NOW.timestamp()), [fresh(i) for i in range(1, 12)])
    Repository(node.http.repo).publish(data, 2, signers, now=NOW)
    assert node.cycle().code == "FEED_UNTRUSTED_SIGNATURE"
    signers["targets"] = signers_from_dir(new_dir)["targets"]
    Repository(node.http.repo).publish(data, 2, signers, now=NOW)
    assert node.cycle().outcome == "applied" and node.blocks("site11.bad.test")


def test_hold_and_approve_through_the_cli(node: Node) -> None:
    conf = os.path.join(node.tmp, "config.toml")
    with open(conf, "a") as f:
        f.write("blast_radius = 0.3\nblast_min_entries = 5\n")
    node.publish([fresh(i) for i in range(1, 4)])          # removes 7 of 10
    r = cli("feed", "sync", "--config", conf)
    assert r.returncode == 1 and "held" in r.stdout and "FEED_BLAST_RADIUS" in r.stdout
    s = cli("feed", "status", "--config", conf)
    assert s.returncode == 1 and "HELD: serial 2 adds 0, removes 7 (70%)" in s.stdout
    assert node.blocks("site9.bad.test")
    a = cli("feed", "approve", "hotline", "--config", conf, "--by", "A. Operator")
    assert a.returncode == 0, a.stdout + a.stderr
    assert "serial 2 approved by A. Operator" in a.stdout and "hotline: applied serial 2" in a.stdout
    assert not node.blocks("site9.bad.test") and node.blocks("site2.bad.test")
    again = cli("feed", "approve", "hotline", "--config", conf)
    assert again.returncode == 1 and "hotline: no version is held" in again.stderr


def test_versions_pin_unpin_through_the_cli(node: Node) -> None:
    conf = os.path.join(node.tmp, "config.toml")
    first = node.db.state("hotline").version
    node.publish([fresh(i) for i in range(1, 12)])
    assert cli("feed", "sync", "--config", conf).returncode == 0
    v = cli("feed", "versions", "hotline", "--config", conf)
    assert v.returncode == 0 and first in v.stdout and v.stdout.strip().endswith("ACTIVE")
    p = cli("feed", "pin", "hotline", first, "--config", conf, "--by", "A. Operator")
    assert p.returncode == 0, p.stderr
    assert not node.blocks("site11.bad.test")
    s = cli("feed", "status", "--config", conf)
    assert f"PINNED to {first} by A. Operator" in s.stdout
    node.publish([fresh(i) for i in range(1, 13)])
    r = cli("feed", "sync", "--config", conf)
    assert r.returncode == 0 and "FEED_PINNED" in r.stdout and not node.blocks("site12.bad.test")
    u = cli("feed", "unpin", "hotline", "--config", conf)
    assert u.returncode == 0 and "applied serial 3" in u.stdout and node.blocks("site12.bad.test")
    assert cli("feed", "pin", "hotline", "nope", "--config", conf).returncode == 2
