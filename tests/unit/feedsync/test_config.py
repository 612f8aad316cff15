"""The [[feed]] section: every error located (file:line: key: what), weak TSIG refused."""

from __future__ import annotations

import base64

import pytest

from feedsync import config
from feedsync.errors import FeedConfigError

SECRET = base64.b64encode(b"k" * 32).decode()

GOOD = f"""
[node]
id = "edge-1"
state_dir = "/tmp/x"

[[feed]]
name = "twnic"
type = "xfr"
zone = "rpz.twnic.test."
primaries = ["192.0.2.53", "[2001:db8::53]:5353", "198.51.100.7:5300"]
tsig_name = "edge-key"
tsig_secret = "{SECRET}"
notify_listen = "127.0.0.1:5300"
protected = ["isp.test", "112.emergency.test"]

[[feed]]
name = "hotline"
type = "bundle"
zone = "hotline.rpz.test"
url = "https://feeds.hotline.test/hk/"
trusted_root = "{{root}}"
stop_pages = {{ default = "stop.hotline-edge.test" }}
blast_radius = 0.1
"""


def test_good_config(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root.json"
    root.write_text("{}")
    cfg = config.loads(GOOD.replace("{root}", str(root)))
    x, b = cfg.feeds
    assert x.zone == "rpz.twnic.test" and x.tsig_secret == b"k" * 32 and x.tsig_algorithm == "hmac-sha256"
    assert [str(p) for p in x.primaries] == ["192.0.2.53:53", "[2001:db8::53]:5353", "198.51.100.7:5300"]
    assert b.stop_pages == {"default": "stop.hotline-edge.test"} and b.blast_radius == 0.1
    assert cfg.node.id == "edge-1" and cfg.feed_dir("hotline") == "/tmp/x/feeds/hotline"
    assert cfg.control_socket == "/run/hotline-edge/control.sock"


def errors(text: str) -> list[str]:
    with pytest.raises(FeedConfigError) as exc:
        config.loads(text, "config.toml")
    return exc.value.errors


def test_weak_tsig_refused_with_its_line() -> None:
    text = f"""[[feed]]
name = "twnic"
type = "xfr"
zone = "rpz.twnic.test"
primaries = ["192.0.2.53"]
tsig_name = "k"
tsig_algorithm = "hmac-md5"
tsig_secret = "{SECRET}"
"""
    assert errors(text) == ["config.toml:7: feed[0].tsig_algorithm: hmac-md5 is too weak; use hmac-sha256 or "
                            "stronger (RFC 8945)"]


@pytest.mark.parametrize(("line", "key", "what"), [
    ('primaries = ["192.0.2.300"]', "feed[0].primaries[0]", "is not an address"),
    ('tsig_secret = "not base64!"', "feed[0].tsig_secret", "not base64"),
    ('tsig_secret = "c2hvcnQ="', "feed[0].tsig_secret", "too short"),
    ('keep_days = 30', "feed[0].keep_days", "at least 180 days"),
    ('blast_radius = 1.5', "feed[0].blast_radius", "a share of entries"),
    ('freshness = "1h"', "feed[0].freshness", "must be int"),
    ('colour = "red"', "feed[0].colour", "unknown key"),
    ('url = "https://x.test/"', "feed[0].url", 'only for type = "bundle"'),
    ('protected = ["not a name"]', "feed[0].protected[0]", "is not a DNS name"),
    ('receipt_url = "ftp://x.test/"', "feed[0].receipt_url", "http:// or https://"),
])
def test_each_bad_value_is_located(line: str, key: str, what: str) -> None:
    base = ["[[feed]]", 'name = "twnic"', 'type = "xfr"', 'zone = "rpz.twnic.test"', 'primaries = ["192.0.2.53"]',
            'tsig_name = "k"', f'tsig_secret = "{SECRET}"']
    keyname = line.split(" =", maxsplit=1)[0]
    lines = [x for x in base if not x.startswith(keyname + " ")] + [line]
    errs = errors("\n".join(lines) + "\n")
    assert len(errs) == 1, errs
    assert errs[0].startswith(f"config.toml:{len(lines)}: {key}: "), errs
    assert what in errs[0]


def test_missing_keys_and_duplicates() -> None:
    errs = errors('[[feed]]\nname = "a"\ntype = "bundle"\nzone = "z.test"\n\n[[feed]]\nname = "b"\ntype = "nope"\n')
    assert "config.toml:1: feed[0]: missing required key 'url'" in errs
    assert "config.toml:1: feed[0]: missing required key 'trusted_root'" in errs
    assert any(e.startswith("config.toml:8: feed[1].type: ") for e in errs)


def test_secret_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "twnic.tsig"
    f.write_text(SECRET + "\n")
    cfg = config.loads(f"""[[feed]]
name = "twnic"
type = "xfr"
zone = "rpz.twnic.test"
primaries = ["192.0.2.53"]
tsig_name = "k"
tsig_secret_file = "{f}"
""")
    assert cfg.feeds[0].tsig_secret == b"k" * 32
    errs = errors(f"""[[feed]]
name = "twnic"
type = "xfr"
zone = "rpz.twnic.test"
primaries = ["192.0.2.53"]
tsig_name = "k"
tsig_secret_file = "{tmp_path / 'missing'}"
""")
    assert errs[0].startswith("config.toml:7: feed[0].tsig_secret_file: cannot read the secret")


def test_check_config_hook_collects_into_the_document() -> None:
    from rpz.tomlconf import parse_config
    doc = parse_config(b'[[feed]]\nname = "x"\ntype = "bundle"\nzone = "z.test"\nurl = "ftp://x"\n', "c.toml")
    config.check_config(doc)
    assert any(str(e).startswith("c.toml:5: feed[0].url:") for e in doc.errors)
    quiet = parse_config(b'[node]\nid = "n"\n', "c.toml")
    config.check_config(quiet)
    assert quiet.errors == []
