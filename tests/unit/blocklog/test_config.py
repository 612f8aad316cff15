"""[blocklog] is validated with line-precise errors; the resolver's config and checkconf use it."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from nacl.public import PrivateKey

from resolver import config
from resolver.blocklog_config import load_blocklog
from rpz.tomlconf import ConfigErrors, parse_config

PUB = base64.b64encode(bytes(PrivateKey.generate().public_key)).decode()
HEAD = '[node]\nid = "edge-1"\nstate_dir = "/var/lib/he"\nruntime_dir = "/run/he"\n'
RESOLVER = '[resolver]\nupstreams = ["127.0.0.1:5300"]\n[[policy.zone]]\nfeed = "hotline-tw"\n'


def blocklog(text: str):
    doc = parse_config((HEAD + text).encode(), "he.toml")
    cfg = load_blocklog(doc)
    return cfg, [str(e) for e in doc.errors]


def test_defaults_when_the_table_is_there() -> None:
    cfg, errors = blocklog("[blocklog]\n")
    assert errors == []
    assert cfg.enabled and cfg.path == "/var/lib/he/blocklog.sqlite" and cfg.socket_path == "/run/he/blocklog.sock"
    assert (cfg.queue_size, cfg.flush_interval_ms, cfg.retention_days, cfg.node) == (100_000, 200, 180, "edge-1")
    assert cfg.compliance_public_key is None


def test_off_without_the_table_or_when_disabled() -> None:
    assert not blocklog("")[0].enabled
    assert not blocklog("[blocklog]\nenabled = false\n")[0].enabled


def test_every_key(tmp_path: Path) -> None:
    keyfile = tmp_path / "compliance-x25519.pub"
    keyfile.write_text(PUB + "\n")
    cfg, errors = blocklog(f'[blocklog]\npath = "/srv/bl.sqlite"\nqueue_size = 5000\nflush_interval_ms = 100\n'
                           f'compliance_public_key = "{keyfile}"\nretention_days = 365\n'
                           'feed_retention_days = { hotline-tw = 730 }\n')
    assert errors == []
    assert cfg.path == "/srv/bl.sqlite" and cfg.queue_size == 5000 and cfg.flush_interval_ms == 100
    assert cfg.compliance_public_key == base64.b64decode(PUB) and cfg.retention_days == 365
    assert cfg.retention_for_feed("hotline-tw") == 730 and cfg.retention_for_feed("other") == 365
    assert blocklog(f'[blocklog]\ncompliance_public_key = "{PUB}"\n')[0].compliance_public_key == base64.b64decode(PUB)


def test_errors_name_file_line_and_key() -> None:
    _, errors = blocklog('[blocklog]\nqueue_size = 10\nflush_interval_ms = "fast"\nretention_days = 0\n'
                         'compliance_public_key = "c2hvcnQ="\nfeed_retention_days = { a = -1 }\nspeed = 1\n'
                         'enabled = "yes"\n')
    assert errors == [
        "he.toml:6: blocklog.queue_size: expected a whole number 1000..10000000, got 10",
        "he.toml:7: blocklog.flush_interval_ms: expected a whole number 20..10000, got 'fast'",
        "he.toml:8: blocklog.retention_days: expected a whole number 1..3650, got 0",
        "he.toml:9: blocklog.compliance_public_key: expected base64 of a 32-byte X25519 public key "
        "(compliance-x25519.pub from `hotline-edge api keygen`) or the path of that file",
        "he.toml:10: blocklog.feed_retention_days.a: expected a whole number 1..3650 of days, got -1",
        "he.toml:11: blocklog.speed: unknown key; known: enabled, path, queue_size, flush_interval_ms, "
        "compliance_public_key, retention_days, feed_retention_days",
        "he.toml:12: blocklog.enabled: expected true or false, got 'yes'",
    ]


def test_a_key_file_that_is_not_a_key(tmp_path: Path) -> None:
    bad = tmp_path / "k.pub"
    bad.write_text("bm90IGEga2V5\n")
    _, errors = blocklog(f'[blocklog]\ncompliance_public_key = "{bad}"\n')
    assert errors == [f"he.toml:6: blocklog.compliance_public_key: {bad}: holds 9 bytes, an X25519 public key has 32"]
    _, errors = blocklog(f'[blocklog]\ncompliance_public_key = "{tmp_path}/missing.pub"\n')
    assert errors and "cannot read the compliance public key" in errors[0]


def test_the_resolver_config_carries_it_and_checks_feed_overrides() -> None:
    text = HEAD + RESOLVER + '[blocklog]\nfeed_retention_days = { hotline-tw = 400 }\n'
    cfg = config.parse(text.encode(), "he.toml")
    assert cfg.blocklog.enabled and cfg.blocklog.retention_for_feed("hotline-tw") == 400
    with pytest.raises(ConfigErrors) as e:
        config.parse((HEAD + RESOLVER + '[blocklog]\nfeed_retention_days = { nosuch = 400 }\n').encode(), "he.toml")
    assert [str(x) for x in e.value.errors] == [
        "he.toml:10: blocklog.feed_retention_days.nosuch: no [[policy.zone]] has feed = 'nosuch'; the override "
        "would never apply"]
