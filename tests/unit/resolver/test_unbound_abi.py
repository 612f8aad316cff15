"""The pure helpers of the Unbound plugin: where it reaches its own Unbound, what unbound-checkconf
checks, and the plugin's configuration check (no Unbound needed)."""

from __future__ import annotations

import os
from pathlib import Path

from resolver.unbound_abi import checkconf_file, loopback_target
from resolver.unbound_runtime import checkconf


def test_loopback_target_takes_any_loopback_address_and_skips_the_rest() -> None:
    assert loopback_target(["192.0.2.11@53", "127.0.0.21@5353"], 53) == ("127.0.0.21", 5353)
    assert loopback_target(["192.0.2.11", "::1"], 53) == ("::1", 53)
    assert loopback_target(["0.0.0.0"], 5300) == ("127.0.0.1", 5300)
    assert loopback_target(["eth0", "192.0.2.11"], 53) is None
    assert loopback_target([], 53) == ("127.0.0.1", 53)


def _proc(tmp_path: Path, exe: str, argv: list[str]) -> tuple[str, str]:
    target = tmp_path / exe
    target.write_text("")
    link = tmp_path / "exe"
    os.symlink(target, link)
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    return str(link), str(cmdline)


def test_checkconf_file_names_the_file_unbound_checkconf_checks(tmp_path: Path) -> None:
    exe, cmdline = _proc(tmp_path, "unbound-checkconf", ["unbound-checkconf", "-o", "port", "/etc/u.conf"])
    assert checkconf_file(exe, cmdline) == "/etc/u.conf"


def test_checkconf_file_default_and_not_in_a_running_unbound(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    exe, cmdline = _proc(a, "unbound-checkconf", ["unbound-checkconf"])
    assert checkconf_file(exe, cmdline) == "/etc/unbound/unbound.conf"
    exe, cmdline = _proc(b, "unbound", ["unbound", "-d", "-c", "/etc/u.conf"])
    assert checkconf_file(exe, cmdline) is None


def test_plugin_checkconf_needs_zones_but_no_upstreams(tmp_path: Path) -> None:
    zone = tmp_path / "a.rpz"
    zone.write_text("$ORIGIN a.rpz.test.\n@ 60 IN SOA ns. h. 1 60 60 60 60\n@ 60 IN NS ns.\nbad.test CNAME .\n")
    conf = tmp_path / "config.toml"
    conf.write_text('[node]\nid = "n1"\n\n[resolver]\nallow = ["192.0.2.0/24"]\n')
    errors = checkconf(str(conf))
    assert len(errors) == 1 and "no [[policy.zone]]" in errors[0]
    conf.write_text(conf.read_text() + f'\n[[policy.zone]]\nfile = "{zone}"\n')
    assert checkconf(str(conf)) == []
    conf.write_text(conf.read_text() + 'max_policy_ttl = "x"\n')
    errors = checkconf(str(conf))
    assert len(errors) == 1 and "max_policy_ttl" in errors[0] and ":9:" in errors[0]
