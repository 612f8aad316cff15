"""Compiled snapshots: round trip, corruption, deltas."""

import os

import pytest

from rpz.actions import RR, ActionKind
from rpz.errors import SnapshotError
from rpz.snapshot import open_snapshot, write_snapshot

from .conftest import ask, make_policy, make_zone, wire

BODY = ("bad.example CNAME .\n*.bad.example CNAME .\nld.example A 192.0.2.80\n"
        'ld.example TXT "order=TW-2026-0042"\n24.0.2.0.192.rpz-ip CNAME *.\n'
        "ns.evil.example.rpz-nsdname CNAME rpz-drop.\n32.7.2.0.192.rpz-client-ip CNAME rpz-passthru.\n")


def test_round_trip_answers_the_same(tmp_path):
    z = make_zone(BODY, serial=42)
    path = tmp_path / "z.snap"
    write_snapshot(z, str(path))
    s = open_snapshot(str(path))
    assert (s.serial, s.stats.rules, s.name) == (42, z.stats.rules, z.name)
    for zz in (z, s):
        p = make_policy(zz)
        assert ask(p, "w.bad.example").action is ActionKind.NXDOMAIN
        assert ask(p, "ld.example").order_ref == "TW-2026-0042"
        assert ask(p, "x", answer_ips=["192.0.2.1"]).action is ActionKind.NODATA
        assert ask(p, "x", ns=["ns.evil.example"]).action is ActionKind.DROP
        assert ask(p, "bad.example", client="192.0.2.7").action is ActionKind.PASSTHRU


def test_corruption_and_foreign_files_are_refused(tmp_path):
    path = tmp_path / "z.snap"
    write_snapshot(make_zone(BODY), str(path))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "bad.snap").write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match="checksum"):
        open_snapshot(str(tmp_path / "bad.snap"))
    (tmp_path / "text.snap").write_bytes(b"$ORIGIN rpz.test.\n" * 10)
    with pytest.raises(SnapshotError, match="not a policy snapshot"):
        open_snapshot(str(tmp_path / "text.snap"))
    with pytest.raises(SnapshotError, match="cannot open"):
        open_snapshot(str(tmp_path / "missing.snap"))


def test_delta_over_a_base(tmp_path):
    base_path = tmp_path / "base.snap"
    write_snapshot(make_zone(BODY, serial=1), str(base_path))
    base = open_snapshot(str(base_path))
    soa = base.soa
    new_soa = RR(6, soa.ttl, soa.rdata[:-20] + (2).to_bytes(4, "big") + soa.rdata[-16:])
    changed = base.with_owners({
        wire("rpz.test"): [new_soa],
        wire("bad.example.rpz.test"): [],
        wire("new.example.rpz.test"): [RR(5, 60, b"\x00")],
    })
    write_snapshot(changed, str(tmp_path / "delta.snap"))
    assert (tmp_path / "delta.snap").stat().st_size < 2000
    d = open_snapshot(str(tmp_path / "delta.snap"))
    p = make_policy(d)
    assert d.serial == 2
    assert ask(p, "bad.example") is None and ask(p, "x.bad.example").action is ActionKind.NXDOMAIN
    assert ask(p, "new.example").action is ActionKind.NXDOMAIN
    write_snapshot(make_zone(BODY, serial=9), str(base_path))  # base replaced under the delta
    with pytest.raises(SnapshotError, match="not the snapshot it was made from"):
        open_snapshot(str(tmp_path / "delta.snap"))


def test_an_unchanged_file_open_in_this_process_is_mapped_once(tmp_path):
    path = tmp_path / "z.snap"
    write_snapshot(make_zone(BODY, serial=1), str(path))
    first = open_snapshot(str(path))
    assert open_snapshot(str(path)) is first            # one mapping, checked once
    soa = first.soa
    delta = first.with_owners({wire("rpz.test"): [RR(6, soa.ttl, soa.rdata[:-20] + (2).to_bytes(4, "big")
                                                     + soa.rdata[-16:])]})
    write_snapshot(delta, str(tmp_path / "d.snap"))
    d = open_snapshot(str(tmp_path / "d.snap"))
    assert d.serial == 2 and d.base_qname is first.qname   # the delta replays over the live base
    tables = first.qname
    del first, delta                                      # now only the delta's zone holds the base
    d2 = open_snapshot(str(tmp_path / "d.snap"))
    assert d2.base_qname is tables and d2.base_zone is d.base_zone
    write_snapshot(make_zone(BODY, serial=3), str(path))  # replaced (a new file): mapped anew
    again = open_snapshot(str(path))
    assert again.qname is not tables and again.serial == 3 and d.base_zone.serial == 1


def test_a_file_changed_in_place_is_checked_again(tmp_path):
    path = tmp_path / "z.snap"
    write_snapshot(make_zone(BODY, serial=1), str(path))
    alive = open_snapshot(str(path))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    before = path.stat().st_mtime_ns
    with open(path, "r+b") as f:                          # same inode, same size
        f.write(bytes(data))
    os.utime(path, ns=(before + 10**9, before + 10**9))  # (the clock may not have ticked since the write)
    with pytest.raises(SnapshotError, match="checksum"):
        open_snapshot(str(path))
    assert alive.serial == 1


def test_the_same_file_under_another_path_keeps_its_own_path(tmp_path):
    path = tmp_path / "z.snap"
    write_snapshot(make_zone(BODY, serial=1), str(path))
    (tmp_path / "link.snap").hardlink_to(path)
    a, b = open_snapshot(str(path)), open_snapshot(str(tmp_path / "link.snap"))
    assert a is not b and b.snapshot_path == str(tmp_path / "link.snap")
