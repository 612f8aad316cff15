import pytest

from rpz.tomlconf import ConfigError, parse_config

DOC = b"""
[node]
id = "edge-01"

[resolver]
listen = [
  "127.0.0.1:5353",
  "[::1]:5353",
]
upstreams = ["127.0.0.1:5300"]

[[policy.zone]]
name = "a.rpz.test"

[[policy.zone]]
name = "b.rpz.test"
ede = 99
"""


def test_lines_of_keys_tables_and_arrays_of_tables():
    doc = parse_config(DOC, "c.toml")
    assert doc.line_of(("node", "id")) == 3
    assert doc.line_of(("resolver", "upstreams")) == 10
    assert doc.line_of(("policy", "zone", 1, "ede")) == 17
    assert doc.line_of(("policy", "zone", 0, "name")) == 13
    assert doc.line_of(("resolver", "listen", 1)) == 6  # falls back to the key
    err = doc.error(("policy", "zone", 1, "ede"), "EDE 99 unknown")
    assert str(err) == "c.toml:17: policy.zone[1].ede: EDE 99 unknown"


def test_syntax_error_has_a_line():
    with pytest.raises(ConfigError) as ei:
        parse_config(b"[node]\nid = \n", "bad.toml")
    assert ei.value.line == 2
