"""RPZ over zone transfer from a real Knot DNS primary on loopback: AXFR, then IXFR after a change
and a NOTIFY, TSIG (a wrong key refused), serial going backwards refused, ZONEMD verified (a bad
one refused), IXFR that does not fit the base refused then healed by AXFR, owners screened."""

from __future__ import annotations

import base64
import itertools
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import rpz
from feedsync import config as fconfig
from feedsync import xfrdigest, xfrseed
from feedsync.control import ControlClient
from feedsync.statedb import StateDB
from feedsync.sync import FeedSync
from tests.unit.feedsync.helpers import FakeResolver, snapshot_matches_text, write_config

from .knot import KNOTD, Knot, free_port_both

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not os.path.exists(KNOTD), reason="Debian package knot (knotd) is not installed")]
ZONE = "feed.rpz.test"
RULES = ["bad.test CNAME .", "*.bad.test CNAME .", "shop.fraud.test CNAME stop.hotline-edge.test.",
         "24.0.113.0.203.rpz-ip CNAME .", "ok.example.test CNAME rpz-passthru."]


@dataclass
class XNode:
    knot: Knot
    cfg: fconfig.Config
    db: StateDB
    resolver: FakeResolver
    tmp: str
    sync: FeedSync

    def new_sync(self) -> FeedSync:
        self.sync = FeedSync(self.cfg, self.cfg.feed("twnic"), self.db, ControlClient(self.cfg.control_socket))
        return self.sync

    @property
    def active(self) -> str:
        return os.path.join(self.cfg.feed_dir("twnic"), "active.rpz")

    def served(self) -> rpz.CompiledZone:
        with open(self.active, "rb") as f:
            return rpz.compile_text(f.read(), "active", ZONE)

    def blocks(self, qname: str) -> bool:
        return self.served().qname.match(rpz.names.from_text(qname + ".")) is not None

    def last_audit(self):  # type: ignore[no-untyped-def]
        return self.db.audit("twnic", limit=1)[0]


def feed_conf(knot: Knot, **over: object) -> dict:
    f = {"name": "twnic", "type": "xfr", "zone": ZONE, "primaries": [f"127.0.0.1:{knot.port}"],
         "tsig_name": "edge-key", "tsig_algorithm": "hmac-sha256", "tsig_secret": knot.secret,
         "transfer_timeout": 10, "protected": ["isp.test"], "blast_radius": 1.0}
    f.update(over)
    return f


def build(tmp_path, knot: Knot, **over: object) -> XNode:  # type: ignore[no-untyped-def]
    state, run = str(tmp_path / "state"), str(tmp_path / "run")
    path = write_config(str(tmp_path / "config.toml"), state, run, [feed_conf(knot, **over)])
    cfg = fconfig.load(path)
    db = StateDB(os.path.join(state, "feeds", "feedsync.db"))
    res = FakeResolver(cfg.control_socket, {ZONE: os.path.join(cfg.feed_dir("twnic"), "active.rpz")})
    n = XNode(knot, cfg, db, res, str(tmp_path), None)  # type: ignore[arg-type]
    n.new_sync()
    return n


@pytest.fixture
def xnode(tmp_path) -> Iterator[XNode]:  # type: ignore[no-untyped-def]
    knot = Knot(str(tmp_path / "knot"), ZONE, RULES, 10).start()
    n = build(tmp_path, knot)
    res = n.sync.cycle()
    assert res.outcome == "applied", res
    yield n
    knot.stop()
    n.resolver.close()
    n.db.close()


def test_axfr_then_ixfr_with_zonemd(xnode: XNode) -> None:
    first = xnode.last_audit().record
    assert first["extra"]["transfer"] == "axfr" and first["extra"]["zonemd"] == "verified"
    assert xnode.blocks("www.bad.test") and xnode.blocks("shop.fraud.test")
    serial = xnode.knot.soa_serial()
    assert xnode.served().serial == serial and xnode.resolver.loaded == {ZONE: serial}
    xnode.knot.write_zone([*RULES, "new.fraud.test CNAME ."], 30)
    xnode.knot.reload()
    new = xnode.knot.wait_serial(30)
    res = xnode.sync.cycle()
    assert (res.outcome, res.serial) == ("applied", new)
    rec = xnode.last_audit().record
    assert rec["extra"]["transfer"] == "ixfr" and rec["extra"]["zonemd"] == "verified"
    assert rec["counts"]["added"] == 1 and rec["counts"]["removed"] == 0
    assert xnode.blocks("new.fraud.test") and xnode.resolver.loaded == {ZONE: new}
    assert snapshot_matches_text(xnode.cfg.feed_dir("twnic"), ZONE) > 10     # a delta over the AXFR's snapshot
    assert xnode.sync.store.info(xnode.db.state("twnic").version).extra["snap_base"] is not None
    assert xnode.sync.cycle().outcome == "no_change"
    # a restart serves from the seed on disk and continues with IXFR from it (the seed is in the form
    # feedsync's own reader takes, not dnspython's)
    st = xnode.db.state("twnic")
    assert xfrseed.read(xnode.sync.store.read(st.version, "source"), ZONE) is not None
    xnode.new_sync().load_seed()          # what the daemon does at start
    base = xnode.sync._base
    assert base is not None and base[1].serial == st.zone_serial
    assert not base[1].tree._dirty        # the digest tree was hashed while the seed loaded ...
    seed_text = xnode.sync.store.read(st.version, "source")
    assert base[1].digest() == xfrdigest.of_text(ZONE, seed_text)   # ... and is the seed's digest
    xnode.knot.write_zone([*RULES[1:], "new.fraud.test CNAME ."], 40)
    xnode.knot.reload()
    xnode.knot.wait_serial(40)
    assert xnode.sync.cycle().outcome == "applied"
    assert xnode.last_audit().record["extra"]["transfer"] == "ixfr"
    assert not xnode.blocks("bad.test") and xnode.blocks("x.bad.test")
    snapshot_matches_text(xnode.cfg.feed_dir("twnic"), ZONE)
    assert xnode.db.verify_audit().ok


def test_wrong_tsig_key_refused(xnode: XNode, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = build(tmp_path / "other", xnode.knot, tsig_secret=base64.b64encode(os.urandom(32)).decode())
    # the other node has a last-known-good of its own, copied from this one's first version
    try:
        res = bad.sync.cycle()
        assert (res.outcome, res.code) == ("refused", "FEED_TSIG")
        assert not os.path.exists(bad.active)              # nothing unverified is ever applied
        rec = bad.last_audit()
        assert rec.kind == "refused" and rec.record["code"] == "FEED_TSIG"
    finally:
        bad.resolver.close()
        bad.db.close()


def test_wrong_tsig_key_keeps_lkg(xnode: XNode) -> None:
    serial = xnode.served().serial
    cfg_path = os.path.join(xnode.tmp, "config.toml")
    cp = pathlib.Path(cfg_path)
    cp.write_text(cp.read_text().replace(xnode.knot.secret, base64.b64encode(os.urandom(32)).decode()))
    xnode.cfg = fconfig.load(cfg_path)
    xnode.new_sync()
    xnode.knot.write_zone([*RULES, "more.test CNAME ."], 50)
    xnode.knot.reload()
    xnode.knot.wait_serial(50)
    res = xnode.sync.cycle()
    assert (res.outcome, res.code) == ("refused", "FEED_TSIG")
    assert xnode.served().serial == serial and not xnode.blocks("more.test") and xnode.blocks("bad.test")
    assert xnode.last_audit().record["code"] == "FEED_TSIG"


def test_serial_going_backwards_refused(xnode: XNode) -> None:
    applied = xnode.served().serial
    xnode.knot.stop()
    shutil.rmtree(os.path.join(xnode.knot.root, "db"))      # a primary rebuilt from an old backup
    os.makedirs(os.path.join(xnode.knot.root, "db"))
    xnode.knot.write_zone(["old.test CNAME ."], 3)
    xnode.knot.start()
    assert (xnode.knot.soa_serial() or 0) < applied
    res = xnode.sync.cycle()
    assert (res.outcome, res.code) == ("refused", "FEED_ROLLBACK")
    assert xnode.served().serial == applied and xnode.blocks("bad.test") and not xnode.blocks("old.test")
    rec = xnode.last_audit()
    assert rec.record["code"] == "FEED_ROLLBACK" and rec.record["lkg_serial"] == applied


def test_ixfr_that_does_not_fit_the_base_is_refused_then_axfr(xnode: XNode) -> None:
    st = xnode.db.state("twnic")
    seed = xnode.sync.store.path(st.version, "source")
    sp = pathlib.Path(seed)
    sp.write_text(sp.read_text().replace("bad.test 60 IN CNAME .\n", ""))   # a damaged seed on disk
    xnode.new_sync()
    xnode.knot.write_zone([r for r in RULES if r != "bad.test CNAME ."] + ["n.test CNAME ."], 60)
    xnode.knot.reload()
    xnode.knot.wait_serial(60)
    res = xnode.sync.cycle()
    assert res.outcome == "applied"
    kinds = [(r.kind, r.record.get("code"), r.record.get("extra", {}).get("transfer"))
             for r in xnode.db.audit("twnic", limit=2)]
    assert kinds == [("applied", None, "axfr"), ("refused", "FEED_INCONSISTENT", None)]
    assert xnode.blocks("n.test") and not xnode.blocks("bad.test") and xnode.blocks("x.bad.test")


def test_too_large_transfer_refused(xnode: XNode) -> None:
    serial = xnode.served().serial
    cfg_path = os.path.join(xnode.tmp, "config.toml")
    with open(cfg_path, "a") as f:
        f.write("max_bytes = 600\n")
    xnode.cfg = fconfig.load(cfg_path)
    xnode.new_sync()
    xnode.sync._zone = None
    xnode.knot.write_zone(RULES + [f"n{i}.big.test CNAME ." for i in range(40)], 70)
    xnode.knot.reload()
    xnode.knot.wait_serial(70)
    res = xnode.sync.cycle()
    assert (res.outcome, res.code) == ("refused", "FEED_TOO_LARGE")
    assert xnode.served().serial == serial and xnode.last_audit().record["check"] == "max_bytes"


def test_owners_screened_one_by_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    knot = Knot(str(tmp_path / "knot"), ZONE, [*RULES, "www.isp.test CNAME .", "*.com CNAME .",
                                                "isp.test CNAME rpz-passthru.", "dn.test DNAME x.test."],
                10).start()
    n = build(tmp_path, knot)
    try:
        assert n.sync.cycle().outcome == "applied"
        rejected = {r["entry_id"]: r["reason"] for r in n.db.state("twnic").rejected_list}
        assert rejected == {"www.isp.test": "ENTRY_PROTECTED", "*.com": "ENTRY_PUBLIC_SUFFIX",
                            "dn.test": "ENTRY_UNUSABLE_RECORD"}     # rpz: DNAME cannot express a policy
        assert not n.blocks("www.isp.test") and not n.blocks("example.com") and n.blocks("bad.test")
        assert n.blocks("isp.test")        # a passthru is not refused by the protected list
        assert b"DNAME" not in pathlib.Path(n.active).read_bytes()
    finally:
        knot.stop()
        n.resolver.close()
        n.db.close()


def test_bad_zonemd_refused_and_required_zonemd(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bogus = "@ ZONEMD 10 1 1 " + "ab" * 48
    knot = Knot(str(tmp_path / "knot"), ZONE, RULES, 10, zonemd=False, extra_zone_lines=(bogus,)).start()
    n = build(tmp_path, knot)
    try:
        res = n.sync.cycle()
        assert (res.outcome, res.code) == ("refused", "FEED_INTEGRITY")
        assert n.last_audit().record["check"] == "zonemd" and not os.path.exists(n.active)
    finally:
        knot.stop()
        n.resolver.close()
        n.db.close()
    knot2 = Knot(str(tmp_path / "knot2"), ZONE, RULES, 10, zonemd=False).start()
    n2 = build(tmp_path / "n2", knot2, require_zonemd=True)
    try:
        res = n2.sync.cycle()
        assert (res.outcome, res.code) == ("refused", "FEED_INTEGRITY")
        assert "require_zonemd" in n2.last_audit().record["detail"]
    finally:
        knot2.stop()
        n2.resolver.close()
        n2.db.close()


def test_notify_triggers_ixfr_through_the_daemon_within_2s(tmp_path) -> None:  # type: ignore[no-untyped-def]
    notify_port = free_port_both()
    knot = Knot(str(tmp_path / "knot"), ZONE, RULES, 10, notify_port=notify_port).start()
    state, run = str(tmp_path / "state"), str(tmp_path / "run")
    path = write_config(str(tmp_path / "config.toml"), state, run,
                        [feed_conf(knot, notify_listen=f"127.0.0.1:{notify_port}")])
    cfg = fconfig.load(path)
    resolver = FakeResolver(cfg.control_socket, {ZONE: os.path.join(cfg.feed_dir("twnic"), "active.rpz")})
    metrics_port = free_port_both()
    proc = subprocess.Popen([sys.executable, "-m", "admin_api.cli", "feed", "daemon", "--config", path,
                             "--metrics-listen", f"127.0.0.1:{metrics_port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = knot.soa_serial()
        _wait(lambda: resolver.loaded.get(ZONE) == first, 20, "the daemon's first AXFR")
        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
                return str(resp.read().decode())

        # the resolver reloads before feedsync commits the new state: wait for the commit
        _wait(lambda: f'hotline_edge_feed_serial{{feed="twnic"}} {float(first)}' in scrape(), 5, "metrics")
        assert 'hotline_edge_feed_refusals_total{code="FEED_TSIG",feed="twnic"} 0.0' in scrape()
        knot.write_zone([*RULES, "notified.test CNAME ."], 80)
        t0 = time.monotonic()
        knot.reload()
        new = knot.wait_serial(80)
        try:
            _wait(lambda: resolver.loaded.get(ZONE) == new, 2.0 - (time.monotonic() - t0) + 0.5, "IXFR after NOTIFY")
        except AssertionError:
            proc.send_signal(signal.SIGTERM)
            knot_log = pathlib.Path(knot.root, "knot.log").read_text()[-2000:]
            raise AssertionError(proc.communicate(timeout=20)[1].decode()[-3000:] + knot_log) from None
        elapsed = time.monotonic() - t0
        assert elapsed <= 2.0, f"NOTIFY to resolver reload took {elapsed:.2f} s"
        from rpz.snapshot import open_snapshot
        z = open_snapshot(os.path.join(cfg.feed_dir("twnic"), "active.snap"))    # what the resolver mapped
        assert z.serial == new and z.qname.match(rpz.names.from_text("notified.test.")) is not None
        db = StateDB(os.path.join(state, "feeds", "feedsync.db"))
        _wait(lambda: db.state("twnic").serial == new, 5, "the commit after the reload")
        with open(os.path.join(cfg.feed_dir("twnic"), "active.rpz"), "rb") as f:    # the text followed it
            t = rpz.compile_text(f.read(), "a", ZONE)
        assert t.serial == new and t.qname.match(rpz.names.from_text("notified.test.")) is not None
        assert db.audit("twnic", kind="applied")[0].record["extra"]["transfer"] == "ixfr"
        db.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        knot.stop()
        resolver.close()
    assert b'"event": "notify"' in err and b"accepted" in err, err[-2000:]


def _wait(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + max(timeout, 0.05)
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_blast_radius_hold_on_ixfr_then_approve(tmp_path) -> None:  # type: ignore[no-untyped-def]
    knot = Knot(str(tmp_path / "knot"), ZONE, [*RULES, *(f"n{i}.test CNAME ." for i in range(6))], 10).start()
    n = build(tmp_path, knot, blast_radius=0.3, blast_min_entries=3)
    try:
        assert n.sync.cycle().outcome == "applied"
        knot.write_zone(RULES[:2], 20)           # removes 9 of 11 rules
        knot.reload()
        new = knot.wait_serial(20)
        res = n.sync.cycle()
        assert (res.outcome, res.code) == ("held", "FEED_BLAST_RADIUS")
        (hold,) = n.db.holds("twnic", "held")
        assert (hold.serial, hold.removed, hold.added) == (new, 9, 0)
        assert n.blocks("n3.test")                 # the last-known-good still serves
        # after a restart (no zone in memory) the same version is still held, computed from the seed
        n.new_sync()
        assert n.sync.cycle().outcome == "held"
        n.db.approve("twnic", new, "A. Operator", time.time())
        res = n.sync.cycle()
        assert res.outcome == "applied", res
        assert not n.blocks("n3.test") and n.blocks("bad.test")
        assert n.last_audit().record["approved"] is True
    finally:
        knot.stop()
        n.resolver.close()
        n.db.close()


def test_soa_expire_passed_raises_feed_expired_and_lkg_keeps_serving(tmp_path) -> None:  # type: ignore[no-untyped-def]
    knot = Knot(str(tmp_path / "knot"), ZONE, RULES, 10).start()
    n = build(tmp_path, knot, freshness=10**6)
    clock = [time.time()]
    n.sync = FeedSync(n.cfg, n.cfg.feed("twnic"), n.db, ControlClient(n.cfg.control_socket), clock=lambda: clock[0])
    try:
        assert n.sync.cycle().outcome == "applied"
        assert n.db.state("twnic").soa_expire == 86400       # from the primary's SOA
        knot.stop()                                           # the primary is gone
        clock[0] += 3600
        assert n.sync.cycle().code == "FEED_UNREACHABLE" and n.db.state("twnic").alarm is None
        clock[0] += 86400
        res = n.sync.cycle()
        assert res.code == "FEED_UNREACHABLE"
        st = n.db.state("twnic")
        assert st.alarm == "FEED_EXPIRED"
        rec = n.last_audit()
        assert (rec.kind, rec.record["code"], rec.record["check"]) == ("alarm", "FEED_EXPIRED", "soa_expire")
        assert n.blocks("bad.test") and n.served().serial == st.serial   # deliberately still served
    finally:
        knot.stop()
        n.resolver.close()
        n.db.close()


def test_transfer_reports_progress(tmp_path) -> None:  # type: ignore[no-untyped-def]
    knot = Knot(str(tmp_path / "knot"), ZONE, [*RULES, *(f"p{i}.test CNAME ." for i in range(3000))], 10).start()
    n = build(tmp_path, knot)
    seen: list[tuple[int, int]] = []
    sync = FeedSync(n.cfg, n.cfg.feed("twnic"), n.db, ControlClient(n.cfg.control_socket),
                    progress=lambda done, total: seen.append((done, total)))
    try:
        assert sync.cycle().outcome == "applied"
        assert len(seen) > 1 and seen[-1][0] == seen[-1][1] == n.last_audit().record["extra"]["bytes"]
        assert all(a[0] <= b[0] for a, b in itertools.pairwise(seen))
    finally:
        knot.stop()
        n.resolver.close()
        n.db.close()


def _order_of(n: XNode, qname: str) -> str | None:
    """The order reference the resolver would log for qname: from active.snap, the form it maps
    (a full snapshot after the AXFR, a delta over it after an IXFR), and from active.rpz."""
    from rpz.snapshot import open_snapshot
    refs = set()
    for z in (open_snapshot(os.path.join(n.cfg.feed_dir("twnic"), "active.snap")), n.served()):
        p = rpz.Policy([rpz.PolicyZone(z, rpz.ZoneSettings())])
        d = p.evaluate("192.0.2.1", 1, [rpz.Stage(rpz.names.from_text(qname + "."))])
        refs.add(d.order_ref if d is not None else "(no rule)")
    assert len(refs) == 1, refs
    return refs.pop()


def test_order_references_at_rpz_order_names_over_axfr_and_ixfr(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Knot refuses a TXT beside a CNAME; the feed serves each order reference at
    <rule>.rpz-order instead, and an IXFR that changes only a reference changes what is logged."""
    rules = [*RULES, 'bad.test.rpz-order TXT "order=TW-2026-0001"', '*.bad.test.rpz-order TXT "order=TW-2026-0001"',
             '24.0.113.0.203.rpz-ip.rpz-order TXT "order=TW-2026-0002"']
    knot = Knot(str(tmp_path / "knot"), ZONE, rules, 10).start()
    n = build(tmp_path, knot)
    try:
        assert n.sync.cycle().outcome == "applied"
        assert _order_of(n, "bad.test") == "TW-2026-0001" and _order_of(n, "www.bad.test") == "TW-2026-0001"
        assert _order_of(n, "shop.fraud.test") is None
        knot.write_zone([r.replace("TW-2026-0001", "TW-2026-0099") if r.startswith("bad.test.rpz-order") else r
                         for r in rules] + ['shop.fraud.test.rpz-order TXT "order=HK-2026-0007"',
                                            'lost.test.rpz-order TXT "order=HK-2026-0008"'], 20)
        knot.reload()
        knot.wait_serial(20)
        res = n.sync.cycle()
        assert res.outcome == "applied", res
        assert n.last_audit().record["extra"]["transfer"] == "ixfr"
        assert _order_of(n, "bad.test") == "TW-2026-0099"          # only the reference changed
        assert _order_of(n, "www.bad.test") == "TW-2026-0001"
        assert _order_of(n, "shop.fraud.test") == "HK-2026-0007"
        assert _order_of(n, "lost.test") == "(no rule)"           # a reference alone makes no rule
        # the seed keeps the primary's zone as served: a restart continues with IXFR from it
        n.new_sync()
        knot.write_zone(rules, 30)
        knot.reload()
        knot.wait_serial(30)
        assert n.sync.cycle().outcome == "applied"
        assert n.last_audit().record["extra"]["transfer"] == "ixfr"
        assert _order_of(n, "bad.test") == "TW-2026-0001" and _order_of(n, "shop.fraud.test") is None
    finally:
        knot.stop()
        n.resolver.close()
        n.db.close()
