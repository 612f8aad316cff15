"""The documented surface and the code agree: every configuration key, metric and CLI option of the
resolver appears in the docs, and the docs name nothing the code lacks."""

from __future__ import annotations

import re
from pathlib import Path

from admin_api.cli import build_parser
from resolver import config, metrics

DOCS = Path(__file__).resolve().parents[3] / "docs"


def _table_keys(text: str, heading: str) -> set[str]:
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", section, re.M))


def test_every_config_key_is_documented_and_nothing_else() -> None:
    text = (DOCS / "configuration.md").read_text()
    assert _table_keys(text, "## `[node]`") == set(config.NODE_KEYS)
    assert _table_keys(text, "## `[resolver]`") == set(config.RESOLVER_KEYS)
    assert _table_keys(text, "## `[[policy.zone]]`") == set(config.ZONE_KEYS)
    for key in config.BLOCKLOG_KEYS:
        assert f"`{key}`" in text


def test_every_metric_is_documented_and_nothing_else() -> None:
    text = (DOCS / "operations.md").read_text()
    documented = set(re.findall(r"`(hotline_edge_resolver_[a-z_]+)`", text))
    assert documented == set(metrics.METRIC_NAMES)


def test_every_cli_option_of_the_resolver_commands_is_documented() -> None:
    text = (DOCS / "operations.md").read_text() + (DOCS / "configuration.md").read_text()
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for cmd in ("serve", "checkconf", "reload", "demo"):
        assert f"hotline-edge {cmd}" in text, cmd
        for action in sub.choices[cmd]._actions:  # type: ignore[union-attr]
            for opt in action.option_strings:
                if opt.startswith("--") and opt != "--help":
                    assert opt in text or opt in sub.choices[cmd].description, f"{cmd} {opt}"  # type: ignore[union-attr]
