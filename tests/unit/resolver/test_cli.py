"""The resolver's subcommands as an operator runs them (in process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from admin_api.cli import build_parser, main


def test_help_teaches_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for cmd, example in (("serve", "--rpz hotline.rpz --rpz local.rpz"), ("checkconf", "checkconf --json"),
                         ("reload", "reload --status"), ("demo", "hotline-edge demo")):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        assert example in capsys.readouterr().out


def test_checkconf_ok_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "z.rpz").write_text("$ORIGIN z.test.\n@ SOA a. b. 1 2 3 4 5\n")
    good = tmp_path / "good.toml"
    good.write_text('[resolver]\nupstreams = ["127.0.0.1:5300"]\n[[policy.zone]]\nfile = "z.rpz"\n')
    assert main(["checkconf", str(good)]) == 0
    assert "ok: listen 127.0.0.1:53" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('[resolver]\nupstreams = ["127.0.0.1:5300"]\nworkers = -1\n'
                   '[[policy.zone]]\nfile = "z.rpz"\nede = 3\n')
    assert main(["checkconf", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3: resolver.workers: -1 is out of range 0..256" in err
    assert f"{bad}:6: policy.zone[0].ede:" in err
    assert main(["checkconf", "--json", str(bad)]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and len(out["errors"]) == 2
    assert main(["checkconf", str(tmp_path / "missing.toml")]) == 2


def test_serve_refuses_bad_flags_before_binding(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--listen", "127.0.0.1:5353", "--rpz", str(tmp_path / "nope.rpz")]) == 2
    err = capsys.readouterr().err
    assert "--upstream" in err and "no such file" in err
    assert main(["serve", "--config", str(tmp_path / "c.toml"), "--listen", "127.0.0.1:1"]) == 2


def test_subcommands_are_registered() -> None:
    text = build_parser().format_help()
    for cmd in ("serve", "checkconf", "reload", "demo"):
        assert cmd in text


def test_checkconf_on_a_node_without_the_resolver(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "admin.toml"
    conf.write_text('[node]\nid = "edge-admin-1"\n[blocklog]\nretention_days = 180\n')
    assert main(["checkconf", str(conf)]) == 0
    assert "no [resolver] on this node" in capsys.readouterr().out
    # a [resolver] section without what a resolver needs is still an error
    conf.write_text('[resolver]\nworkers = 1\n')
    assert main(["checkconf", str(conf)]) == 2
    assert "at least one upstream" in capsys.readouterr().err


def test_checkconf_runs_the_other_sections_validators(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text('[node]\nid = "n"\n[[feed]]\nname = "x"\ntype = "nonsense"\n')
    assert main(["checkconf", str(conf)]) == 2
    assert f"{conf}:5: feed[0].type" in capsys.readouterr().err
