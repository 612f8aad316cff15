"""``hotline-edge rpz query --names-from``: every name gets the decision ``--qname`` would print,
one tab-separated line each, then a summary; bad lines are listed with their line number."""

from __future__ import annotations

import argparse
import json
import pathlib

import pytest

from rpz import cli
from rpz.policy import Policy, PolicyZone, Stage, ZoneSettings
from rpz.zone import compile_text

from .conftest import HEAD, wire

ALLOW = "ok.bad.test CNAME rpz-passthru.\n"
HOTLINE = ('bad.test CNAME .\n*.bad.test CNAME .\nshop.test A 192.0.2.80\n'
           'shop.test TXT "order=TW-2026-0042"\n*.wild.test CNAME *.\n')
IPZONE = "32.7.2.0.192.rpz-ip CNAME .\n"


def _zone_file(tmp_path, name: str, body: str) -> str:
    path = tmp_path / f"{name}.rpz"
    path.write_text(HEAD.format(origin=f"{name}.rpz.test.", serial=7) + body)
    return str(path)


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["rpz", "query", *argv])
    return int(args.func(args))


NAMES = ["bad.test", "x.bad.test", "ok.bad.test", "shop.test", "q.wild.test", "wild.test", "nothing.example", "."]


@pytest.mark.parametrize("first", ["", IPZONE], ids=["qname-only", "ip-rules-first"])
def test_each_line_is_the_decision_of_that_name(tmp_path, capsys, first):
    files = [_zone_file(tmp_path, "ip", first)] if first else []
    files += [_zone_file(tmp_path, "allow", ALLOW), _zone_file(tmp_path, "hotline", HOTLINE)]
    listing = tmp_path / "names.txt"
    listing.write_text("# names seen today\n\n" + "".join(f"{n} A\n" for n in NAMES) + "BAD.Test\n")
    assert _run(*files, "--names-from", str(listing)) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line.split("\t") for line in out if not line.startswith("#")]
    policy = Policy([PolicyZone(compile_text(pathlib.Path(f).read_bytes(), f), ZoneSettings()) for f in files])
    assert len(rows) == len(NAMES) + 1
    for row, name in zip(rows, [*NAMES, "bad.test"], strict=True):
        d = policy.evaluate(None, 1, [Stage(wire(name))])  # what --qname NAME decides
        want = ["none", "-", "-", "-"] if d is None else [d.action.label, d.zone, d.owner, d.order_ref or "-"]
        assert row[1:] == want, name
    assert rows[3] == ["shop.test.", "local-data", "hotline.rpz.test.", "shop.test.hotline.rpz.test.", "TW-2026-0042"]
    summary = [line for line in out if line.startswith("#")]
    assert summary[0] == "# 9 names, 0 lines refused: nxdomain 3, none 3, passthru 1, local-data 1, nodata 1"
    assert any("IP/NS rules" in line for line in summary) == bool(first)


def test_json_lines_and_a_summary_object(tmp_path, capsys):
    zone = _zone_file(tmp_path, "hotline", HOTLINE)
    listing = tmp_path / "names.txt"
    listing.write_text("x.bad.test\nnothing.example\n")
    assert _run(zone, "--names-from", str(listing), "--json", "--qtype", "AAAA") == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["name"] == "x.bad.test." and lines[0]["decision"]["rule_owner"] == "*.bad.test.hotline.rpz.test."
    assert lines[1] == {"name": "nothing.example.", "decision": None}
    assert lines[2]["summary"]["names"] == 2 and lines[2]["summary"]["by_action"] == {"nxdomain": 1, "none": 1}


def test_bad_lines_are_listed_and_the_rest_decided(tmp_path, capsys, monkeypatch):
    import io
    zone = _zone_file(tmp_path, "hotline", HOTLINE)
    monkeypatch.setattr("sys.stdin", io.StringIO("bad.test\nbad..test\n" + "a" * 64 + ".test\nshop.test\n"))
    assert _run(zone, "--names-from", "-") == 1
    captured = capsys.readouterr()
    assert [line.split("\t")[1] for line in captured.out.splitlines() if not line.startswith("#")] == \
        ["nxdomain", "local-data"]
    errors = captured.err.splitlines()
    assert errors[0].startswith("<stdin>:2: not a domain name 'bad..test'") and errors[1].startswith("<stdin>:3:")


def test_usage_errors(tmp_path, capsys):
    zone = _zone_file(tmp_path, "hotline", HOTLINE)
    assert _run(zone, "--names-from", str(tmp_path / "missing.txt")) == 2
    assert "cannot read" in capsys.readouterr().err
    listing = tmp_path / "names.txt"
    listing.write_text("bad.test\n")
    assert _run(zone, "--names-from", str(listing), "--client", "192.0.2.7") == 2
    assert "--client" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _run(zone, "--names-from", str(listing), "--qname", "bad.test")  # one or the other
