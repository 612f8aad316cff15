"""resolver.config: validation with file:line errors, defaults, quick flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from resolver import config
from rpz import ActionKind, Override
from rpz.tomlconf import ConfigErrors


def write(tmp_path: Path, text: str) -> str:
    (tmp_path / "hotline.rpz").write_text("$ORIGIN h.test.\n@ SOA a. b. 1 2 3 4 5\n")
    p = tmp_path / "config.toml"
    p.write_text(text)
    return str(p)


GOOD = """\
[node]
id = "edge-01"
state_dir = "/var/lib/he"

[resolver]
listen = ["127.0.0.1:5353", "[::1]:5353"]
upstreams = ["192.0.2.53", "[2001:db8::53]:5300"]
allow = ["198.51.100.0/24", "2001:db8:100::/48"]
workers = 2
metrics_listen = "127.0.0.1:9153"

[[policy.zone]]
name = "hotline.rpz.test"
file = "hotline.rpz"
ede = "censored"
ede_text = "order {order_ref}"
max_policy_ttl = 30

[[policy.zone]]
feed = "twnic"
override = "cname"
cname_target = "stop.example.test"
long_cname_fallback = "nodata"

[blocklog]
path = "/var/lib/he/blocklog.sqlite"
"""


def test_a_complete_configuration(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, GOOD))
    r = cfg.resolver
    assert [str(e) for e in r.listen] == ["127.0.0.1:5353", "[::1]:5353"]
    assert [str(e) for e in r.upstreams] == ["192.0.2.53:53", "[2001:db8::53]:5300"]
    assert r.allow == ("198.51.100.0/24", "2001:db8:100::/48") and r.workers == 2
    assert str(r.metrics_listen) == "127.0.0.1:9153"
    z0, z1 = cfg.zones
    assert z0.source == "file" and z0.path == str(tmp_path / "hotline.rpz") and z0.name == "hotline.rpz.test."
    assert z0.ede == 16 and z0.max_policy_ttl == 30
    assert z1.source == "feed" and z1.override is Override.CNAME and z1.long_cname_fallback is ActionKind.NODATA
    assert cfg.zone_path(z1) == "/var/lib/he/feeds/twnic/active.rpz"
    assert z1.settings().cname_target == b"\x04stop\x07example\x04test\x00"
    assert cfg.control_socket == "/run/hotline-edge/control.sock"
    assert cfg.blocklog.enabled and cfg.blocklog.path == "/var/lib/he/blocklog.sqlite"
    assert cfg.blocklog.retention_days == 180 and cfg.blocklog.compliance_public_key is None


def test_defaults_are_safe(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, '[resolver]\nupstreams = ["127.0.0.1:5300"]\n'
                                      '[[policy.zone]]\nfile = "hotline.rpz"\n'))
    r = cfg.resolver
    assert r.allow == ("127.0.0.0/8", "::1/128")        # loopback only: never an open resolver
    assert r.break_dnssec is True and r.serve_without_policy is False and r.not_ready_rcode == "refused"
    assert cfg.zones[0].ede is None and cfg.zones[0].override is Override.GIVEN


BAD = """\
[node]
idd = "x"

[resolver]
listen = ["127.0.0.1:70000"]
upstreams = ["resolver.example.net:53"]
allow = ["0.0.0.0/0"]
workers = "two"
not_ready_rcode = "nxdomain"

[[policy.zone]]
file = "hotline.rpz"
ede = 99

[[policy.zone]]
file = "missing.rpz"
feed = "twnic"

[[policy.zone]]
file = "hotline.rpz"
override = "cname"

[[policy.zone]]
file = "hotline.rpz"
ede_text = "{nope}"

[surprise]
x = 1
"""


def test_every_error_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    with pytest.raises(ConfigErrors) as ei:
        config.load(path)
    got = {(e.line, e.key) for e in ei.value.errors}
    assert (2, "node.idd") in got
    assert (5, "resolver.listen") in got
    assert (6, "resolver.upstreams") in got
    assert (7, "resolver.allow[0]") in got
    assert (8, "resolver.workers") in got
    assert (9, "resolver.not_ready_rcode") in got
    assert (13, "policy.zone[0].ede") in got
    assert (15, "policy.zone[1]") in got
    assert (21, "policy.zone[2].override") in got
    assert (25, "policy.zone[3].ede_text") in got
    assert (27, "surprise") in got
    text = str(ei.value)
    assert f"{path}:5: resolver.listen: '127.0.0.1:70000': port must be 1-65535" in text
    assert "open resolver" in text and "host names are not accepted" in text


def test_missing_zone_file_and_no_zones(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors, match=r"missing.rpz: no such file"):
        config.load(write(tmp_path, '[resolver]\nupstreams = ["127.0.0.1:5300"]\n'
                                    '[[policy.zone]]\nfile = "missing.rpz"\n'))
    with pytest.raises(ConfigErrors, match=r"no \[\[policy.zone\]\] configured"):
        config.load(write(tmp_path, '[resolver]\nupstreams = ["127.0.0.1:5300"]\n'))


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:53", ("127.0.0.1", 53)),
    ("[2001:db8::1]:5300", ("2001:db8::1", 5300)),
    ("2001:db8::1", ("2001:db8::1", 53)),
    ("192.0.2.1", ("192.0.2.1", 53)),
])
def test_endpoints(text: str, expected: tuple[str, int]) -> None:
    ep = config.parse_endpoint(text)
    assert (ep.host, ep.port) == expected


@pytest.mark.parametrize("text", ["localhost:53", "[::1", "127.0.0.1:0", "127.0.0.1:x", "[::1]x"])
def test_bad_endpoints(text: str) -> None:
    with pytest.raises(ValueError):
        config.parse_endpoint(text)


def test_quick_flags(tmp_path: Path) -> None:
    z = tmp_path / "a.rpz"
    z.write_text("x")
    cfg = config.from_flags(["127.0.0.1:5353"], ["127.0.0.1:5300"], [str(z)], ["198.51.100.0/24"],
                            runtime_dir=str(tmp_path))
    assert cfg.zones[0].path == str(z) and cfg.resolver.workers == 1
    assert cfg.control_socket == str(tmp_path / "control.sock")
    with pytest.raises(ConfigErrors) as ei:
        config.from_flags([], [], [str(tmp_path / "nope.rpz")], ["0.0.0.0/0"])
    keys = {e.key for e in ei.value.errors}
    assert keys == {"--upstream", "--rpz", "--allow"}
