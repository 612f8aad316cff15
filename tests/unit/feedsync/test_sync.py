"""A whole sync cycle with the bundle format, against a fake source and a tiny fake of the
resolver's control socket: activation, refusals, holds, reverts, expiry, alarms, recovery, audit."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import rpz
from feedsync import bundle as b
from feedsync import config as fconfig
from feedsync.control import ControlClient
from feedsync.errors import FetchFailed
from feedsync.receipts import load_or_create_node_key, verify_receipt
from feedsync.statedb import StateDB
from feedsync.sync import FeedSync
from feedsync.tufsource import FetchedBundle

from .helpers import DAY, T0, FakeResolver, entry, write_config

ZONE = "hotline.rpz.test"


class FakeSource:
    """Stands in for the TUF client: hands out the bundle set by the test (already "verified")."""

    def __init__(self) -> None:
        self.data: bytes | None = None
        self.sequence: int | None = None
        self.down = False

    def set(self, entries: list[dict], seq: int, feed: str = "hotline") -> None:
        self.data = b.dump_bundle(feed, seq, T0, entries)
        self.sequence = seq

    def fetch(self) -> FetchedBundle:
        if self.down or self.data is None:
            raise FetchFailed("hotline", "http://127.0.0.1:9/", "connection refused")
        return FetchedBundle(self.data, self.sequence, 1, ("k1",))


@dataclass
class Rig:
    cfg: fconfig.Config
    db: StateDB
    src: FakeSource
    resolver: FakeResolver
    clock: list[float]
    sync: FeedSync

    @property
    def active(self) -> str:
        return os.path.join(self.cfg.feed_dir("hotline"), "active.rpz")

    def served(self) -> rpz.CompiledZone:
        with open(self.active, "rb") as f:
            return rpz.compile_text(f.read(), "active", ZONE)

    def blocks(self, qname: str) -> bool:
        z = self.served()
        return z.qname.match(rpz.names.from_text(qname + ".")) is not None

    def cycle(self):  # type: ignore[no-untyped-def]
        return self.sync.cycle()


@pytest.fixture
def rig(tmp_path) -> Iterator[Rig]:  # type: ignore[no-untyped-def]
    state, run = str(tmp_path / "state"), str(tmp_path / "run")
    root = tmp_path / "root.json"
    root.write_text("{}")
    path = write_config(str(tmp_path / "config.toml"), state, run, [{
        "name": "hotline", "type": "bundle", "zone": ZONE, "url": "http://127.0.0.1:9/hotline/",
        "trusted_root": str(root), "freshness": 3600, "blast_radius": 0.3, "blast_min_entries": 5,
        "protected": ["isp.test"], "stop_pages": {"default": "stop.hotline-edge.test"},
        "max_entries": 100, "categories": ["fraud", "csam"]}])
    cfg = fconfig.load(path)
    db = StateDB(os.path.join(state, "feeds", "feedsync.db"))
    resolver = FakeResolver(cfg.control_socket, {ZONE: os.path.join(cfg.feed_dir("hotline"), "active.rpz")})
    clock = [float(T0)]
    src = FakeSource()
    sync = FeedSync(cfg, cfg.feed("hotline"), db, ControlClient(cfg.control_socket), clock=lambda: clock[0],
                    is_public_suffix=lambda n: n in {"test"}, bundle_source=src)
    yield Rig(cfg, db, src, resolver, clock, sync)
    resolver.close()
    db.close()


def ten(n0: int = 1) -> list[dict]:
    return [entry(i) for i in range(n0, n0 + 10)]


def test_first_version_applied_enforced_audited_receipted(rig: Rig) -> None:
    rig.src.set([*ten(), entry(99, target="https://x.test/a"), entry(98, target="mail.isp.test")], seq=1)
    res = rig.cycle()
    assert (res.outcome, res.serial) == ("applied", 1)
    assert rig.blocks("site3.bad.test") and not rig.blocks("x.test") and not rig.blocks("mail.isp.test")
    assert rig.resolver.loaded == {ZONE: 1}                     # the resolver confirmed zone serial 1
    st = rig.db.state("hotline")
    assert (st.serial, st.zone_serial, st.entries, st.in_force) == (1, 1, 10, 10)
    assert {r["reason"] for r in st.rejected_list} == {"ENTRY_URL_TARGET", "ENTRY_PROTECTED"}
    rec = rig.db.audit("hotline", kind="applied")[0].record
    assert rec["counts"] == {"entries": 10, "in_force": 10, "added": 10, "removed": 0, "rejected": 2}
    assert rec["resolver"] == "ok" and rec["signer_keys"] == ["k1"]
    (receipt,) = rig.db.receipts("hotline")
    key = load_or_create_node_key(rig.cfg.node.state_dir)
    doc = verify_receipt(receipt["body"].encode(), receipt["signature"], key.public_raw)
    assert doc is not None and doc["serial"] == 1 and doc["node"] == "edge-test-1"
    assert doc["digest"] == st.digest
    forged = receipt["body"].replace('"serial":1', '"serial":2').encode()
    assert verify_receipt(forged, receipt["signature"], key.public_raw) is None
    assert rig.db.verify_audit().ok


def test_unchanged_source_is_a_success_without_a_new_version(rig: Rig) -> None:
    rig.src.set(ten(), seq=1)
    rig.cycle()
    rig.clock[0] += 60
    assert rig.cycle().outcome == "no_change"
    assert len(rig.db.audit("hotline")) == 1
    assert rig.db.state("hotline").last_success_at == rig.clock[0]


def test_update_then_rollback_refused_and_lkg_keeps_serving(rig: Rig) -> None:
    rig.src.set(ten(), seq=1)
    rig.cycle()
    rig.src.set([*ten(), entry(11)], seq=2)
    rig.clock[0] += 60
    assert rig.cycle().outcome == "applied"
    assert rig.blocks("site11.bad.test")
    extra = rig.db.audit("hotline", limit=1)[0].record["extra"]
    assert (extra["rules"], extra["proven_rules"]) == (11, 1)   # only the changed rule compiled again
    rig.src.set(ten(), seq=1)            # an old, validly signed bundle replayed
    rig.clock[0] += 60
    res = rig.cycle()
    assert (res.outcome, res.code) == ("refused", "FEED_ROLLBACK")
    assert rig.blocks("site11.bad.test") and rig.served().serial == 2
    rec = rig.db.audit("hotline", limit=1)[0]
    assert rec.kind == "refused" and rec.record["code"] == "FEED_ROLLBACK" and rec.record["lkg_serial"] == 2
    rig.clock[0] += 60
    rig.cycle()                           # the same refusal again is not a new audit record
    assert len(rig.db.audit("hotline", kind="refused")) == 1
    assert rig.db.state("hotline").last_failure_code == "FEED_ROLLBACK"


def test_same_serial_different_content_is_inconsistent(rig: Rig) -> None:
    rig.src.set(ten(), seq=4)
    rig.cycle()
    rig.src.set([*ten(), entry(50)], seq=4)
    assert rig.cycle().code == "FEED_INCONSISTENT"
    assert not rig.blocks("site50.bad.test")


@pytest.mark.parametrize(("entries", "feed", "code"), [
    ([entry(1, category="gambling")], "hotline", "FEED_SCOPE"),
    ([entry(1)], "another-country", "FEED_SCOPE"),
    ([entry(i) for i in range(101)], "hotline", "FEED_TOO_LARGE"),
])
def test_whole_version_refusals_keep_lkg(rig: Rig, entries: list[dict], feed: str, code: str) -> None:
    rig.src.set(ten(), seq=1)
    rig.cycle()
    rig.src.set(entries, seq=2, feed=feed)
    res = rig.cycle()
    assert (res.outcome, res.code) == ("refused", code)
    assert rig.served().serial == 1 and rig.blocks("site5.bad.test")
    assert rig.db.audit("hotline", limit=1)[0].record["code"] == code


def test_not_a_bundle_is_integrity(rig: Rig) -> None:
    rig.src.data, rig.src.sequence = b"{not json", 3
    res = rig.cycle()
    assert res.code == "FEED_INTEGRITY" and not os.path.exists(rig.active)


def test_blast_radius_hold_then_approve(rig: Rig) -> None:
    rig.src.set(ten(), seq=1)
    rig.cycle()
    rig.src.set(ten()[:4], seq=2)         # removes 60 %
    rig.clock[0] += 60
    res = rig.cycle()
    assert (res.outcome, res.code) == ("held", "FEED_BLAST_RADIUS")
    assert rig.blocks("site9.bad.test") and rig.served().serial == 1
    (hold,) = rig.db.holds("hotline", "held")
    assert (hold.serial, hold.removed, hold.added) == (2, 6, 0)
    assert rig.db.audit("hotline", limit=1)[0].kind == "held"
    rig.cycle()                            # still held, not audited twice
    assert len(rig.db.audit("hotline", kind="held")) == 1
    assert rig.db.approve("hotline", 2, "A. Operator", rig.clock[0]) is not None
    rig.clock[0] += 60
    assert rig.cycle().outcome == "applied"
    assert not rig.blocks("site9.bad.test") and rig.blocks("site2.bad.test")
    kinds = [r.kind for r in reversed(rig.db.audit("hotline"))]
    assert kinds == ["applied", "held", "approved", "applied"]
    assert rig.db.audit("hotline", kind="approved")[0].record["approved_by"] == "A. Operator"
    assert rig.db.audit("hotline", limit=1)[0].record["approved"] is True
    assert rig.db.holds("hotline", "held") == []


def test_small_change_is_not_held(rig: Rig) -> None:
    rig.src.set(ten(), seq=1)
    rig.cycle()
    rig.src.set([*ten()[1:], entry(11), entry(12)], seq=2)   # +2 -1 of 10
    assert rig.cycle().outcome == "applied"


@pytest.mark.parametrize("mode", ["fail", "stale", "garbage"])
def test_resolver_that_does_not_load_the_version_is_reverted(rig: Rig, mode: str) -> None:
    rig.src.set(ten(), seq=1)
    rig.cycle()
    lkg = rig.db.state("hotline").version
    rig.resolver.mode = mode
    rig.src.set([*ten(), entry(11)], seq=2)
    res = rig.cycle()
    assert (res.outcome, res.code) == ("reverted", "RESOLVER_LOAD_FAILED")
    assert not rig.blocks("site11.bad.test") and rig.served().serial == 1
    st = rig.db.state("hotline")
    assert (st.serial, st.version) == (1, lkg)
    rec = rig.db.audit("hotline", limit=1)[0]
    assert rec.kind == "reverted" and rec.record["restored"] == lkg
    assert rig.sync.store.names() == [lkg]           # the refused version's files are gone
    rig.cycle()                                       # the same failure again: not a second record
    assert len(rig.db.audit("hotline", kind="reverted")) == 1 and rig.sync.store.names() == [lkg]
    rig.resolver.mode = "ok"
    assert rig.cycle().outcome == "applied" and rig.blocks("site11.bad.test")


def test_expired_entries_leave_even_when_the_source_is_down(rig: Rig) -> None:
    short = entry(77, target="short.bad.test", expires_at=b.format_time(T0 + 2 * DAY))
    later = entry(78, target="later.bad.test", effective_at=b.format_time(T0 + DAY))
    rig.src.set([*ten(), short, later], seq=1)
    rig.cycle()
    assert rig.blocks("short.bad.test") and not rig.blocks("later.bad.test")
    rig.src.down = True
    rig.clock[0] = T0 + DAY + 1
    assert rig.cycle().outcome == "failed"
    assert rig.blocks("later.bad.test")                    # became effective without the source
    rig.clock[0] = T0 + 2 * DAY + 1
    rig.cycle()
    assert not rig.blocks("short.bad.test") and rig.blocks("site1.bad.test")
    exp = rig.db.audit("hotline", kind="expiry")
    assert [r.record["counts"]["in_force"] for r in reversed(exp)] == [12, 11]
    st = rig.db.state("hotline")
    assert st.serial == 1 and st.zone_serial == 3 and rig.resolver.loaded == {ZONE: 3}


def test_stale_alarm_raised_audited_and_cleared(rig: Rig) -> None:
    rig.src.set(ten(), seq=1)
    rig.cycle()
    rig.src.down = True
    rig.clock[0] += 3000
    rig.cycle()
    assert rig.db.state("hotline").alarm is None
    rig.clock[0] += 1000                                    # 4000 s > freshness 3600
    rig.cycle()
    st = rig.db.state("hotline")
    assert st.alarm == "FEED_STALE" and st.last_failure_code == "FEED_UNREACHABLE"
    rec = rig.db.audit("hotline", limit=1)[0]
    assert (rec.kind, rec.record["code"], rec.record["lkg_serial"]) == ("alarm", "FEED_STALE", 1)
    assert rig.blocks("site1.bad.test")
    rig.src.down = False
    rig.cycle()
    assert rig.db.state("hotline").alarm is None


def test_crash_between_switch_and_commit_is_recovered(rig: Rig) -> None:
    rig.src.set(ten(), seq=1)
    rig.cycle()
    lkg = rig.db.state("hotline").version
    # what a crash after the rename and before the database commit leaves behind
    rig.sync.store.write_version("1795000100-2-aaaaaaaaaaaa", b"garbage", None,
                                 {"serial": 2, "zone_serial": 2, "digest": "x", "created_at": T0})
    rig.sync.store.activate("1795000100-2-aaaaaaaaaaaa")
    rig.src.down = True
    rig.cycle()
    assert rig.sync.store.active_version() == lkg and rig.served().serial == 1
    rec = rig.db.audit("hotline", kind="recovered")[0].record
    assert rec["found_active"] == "1795000100-2-aaaaaaaaaaaa" and rec["restored"] == lkg


def test_audit_chain_detects_tampering(rig: Rig) -> None:
    rig.src.set(ten(), seq=1)
    rig.cycle()
    rig.src.set(ten(2), seq=2)
    rig.cycle()
    assert rig.db.verify_audit().ok and rig.db.verify_audit().checked == 2
    payload = json.loads(rig.db.conn.execute("SELECT payload FROM audit WHERE id=1").fetchone()[0])
    payload["counts"]["in_force"] = 0
    rig.db.conn.execute("UPDATE audit SET payload=? WHERE id=1", (json.dumps(payload).encode(),))
    check = rig.db.verify_audit()
    assert not check.ok and check.first_bad == 1


def test_versions_are_kept_and_pruned_after_keep_days(rig: Rig) -> None:
    rig.src.set(ten(), seq=1)
    rig.cycle()
    first = rig.db.state("hotline").version
    rig.src.set(ten(2), seq=2)
    rig.clock[0] += 179 * DAY
    rig.cycle()
    assert first in rig.sync.store.names()          # within 180 days
    rig.src.set(ten(3), seq=3)
    rig.clock[0] += 2 * DAY
    rig.cycle()
    names = rig.sync.store.names()
    assert first not in names and rig.db.state("hotline").version in names
    assert all(int(n.split("-")[0]) >= rig.clock[0] - 180 * DAY for n in names)


def test_node_key_is_private(rig: Rig) -> None:
    key = load_or_create_node_key(rig.cfg.node.state_dir)
    assert os.stat(os.path.join(rig.cfg.node.state_dir, "node.key")).st_mode & 0o777 == 0o600
    assert len(base64.b64decode(key.sign(b"x"))) == 64


def test_superseded_versions_are_compressed_and_still_readable(rig: Rig) -> None:
    rig.src.set(ten(), seq=1)
    rig.cycle()
    first = rig.db.state("hotline").version
    rig.src.set(ten(2), seq=2)
    rig.cycle()
    store = rig.sync.store
    assert first in store.names() and not os.path.exists(store.path(first, "rpz"))
    assert os.path.exists(store.path(first, "rpz.gz")) and os.path.exists(store.path(first, "source.gz"))
    assert rpz.compile_text(store.read(first, "rpz"), "old", ZONE).serial == 1
    assert b.parse_bundle(store.read(first, "source")).sequence == 1
    lkg = rig.db.state("hotline").version
    assert os.path.exists(store.path(lkg, "rpz"))          # the last-known-good stays plain
    store.activate(first)                                   # an old version can still be put back
    assert rig.served().serial == 1


def test_active_snapshot_full_then_deltas_decide_like_the_text(rig: Rig) -> None:
    from .helpers import snapshot_matches_text
    feed_dir = rig.cfg.feed_dir("hotline")
    rig.src.set([*ten(), entry(50, target="sub.bad.test", match="subdomains")], seq=1)
    rig.cycle()
    assert snapshot_matches_text(feed_dir, ZONE) > 30
    first = rig.db.state("hotline").version
    for seq, entries in ((2, [*ten(), entry(11), entry(50, target="sub.bad.test", match="subdomains")]),
                         (3, [*ten()[2:], entry(11), entry(12, target="a.sub.bad.test", action="passthru"),
                              entry(50, target="sub.bad.test", match="subdomains")]),
                         (4, [*ten()[2:], entry(11)])):
        rig.src.set(entries, seq=seq)
        rig.clock[0] += 60
        assert rig.cycle().outcome == "applied"
        snapshot_matches_text(feed_dir, ZONE)
        assert rig.resolver.loaded == {ZONE: seq}
        meta = rig.sync.store.info(rig.db.state("hotline").version)
        assert meta.extra["snap_base"] == first                 # a delta over the first, full snapshot
    snaps = sorted(f for f in os.listdir(rig.sync.store.versions) if f.endswith(".snap"))
    assert snaps == sorted([first + ".snap", rig.db.state("hotline").version + ".snap"])
    # a restart (nothing in memory) continues from the snapshot files
    rig.sync = FeedSync(rig.cfg, rig.cfg.feed("hotline"), rig.db, ControlClient(rig.cfg.control_socket),
                        clock=lambda: rig.clock[0], is_public_suffix=lambda n: n in {"test"}, bundle_source=rig.src)
    rig.src.set([*ten()[2:], entry(11), entry(13)], seq=5)
    assert rig.cycle().outcome == "applied"
    snapshot_matches_text(feed_dir, ZONE)


def test_pin_an_older_version_then_unpin(rig: Rig) -> None:
    rig.src.set(ten(), seq=1)
    rig.cycle()
    first = rig.db.state("hotline").version
    rig.src.set([*ten(), entry(11)], seq=2)
    rig.clock[0] += 60
    rig.cycle()
    assert rig.blocks("site11.bad.test")
    res = rig.sync.pin(first, "A. Operator")
    assert res.outcome == "pinned" and not rig.blocks("site11.bad.test")
    assert rig.resolver.loaded == {ZONE: 1}
    st = rig.db.state("hotline")
    assert (st.version, st.serial, st.pinned_by) == (first, 1, "A. Operator")
    rec = rig.db.audit("hotline", limit=1)[0]
    assert rec.kind == "pinned" and rec.record["previous"] != first
    assert rig.db.receipts("hotline")[-1]["receipt"]["serial"] == 1      # the hotline learns of it
    rig.src.set([*ten(), entry(11), entry(12)], seq=3)
    rig.clock[0] += 60
    res = rig.cycle()                                  # verified, but not applied while pinned
    assert (res.outcome, res.code, res.exit_code) == ("pinned", "FEED_PINNED", 0)
    assert not rig.blocks("site12.bad.test") and rig.served().serial == 1
    assert rig.sync.unpin("A. Operator")
    res = rig.cycle()
    assert res.outcome == "applied" and rig.blocks("site12.bad.test")
    # the new version's zone serial is past every kept one, not the pinned one's successor
    assert rig.db.state("hotline").zone_serial == 3
    assert [r.kind for r in rig.db.audit("hotline", limit=3)] == ["applied", "unpinned", "pinned"]
    assert rig.sync.pin("no-such-version", "x").code == "FEED_NO_SUCH_VERSION"
