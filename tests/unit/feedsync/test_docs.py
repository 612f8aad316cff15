"""docs/feeds.md and the code agree: every config key, refusal code, entry reason, metric and
subcommand is documented; every subcommand's --help teaches with an example."""

from __future__ import annotations

import argparse
import pathlib
import re

import pytest

from feedsync import cli
from feedsync.bundle import Reason
from feedsync.config import KEYS
from feedsync.errors import FailureCode, RefusalCode
from feedsync.metrics import METRIC_NAMES

DOC = (pathlib.Path(__file__).resolve().parents[3] / "docs" / "feeds.md").read_text()


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cli.register(sub)
    feed = sub.choices["feed"]
    action = next(a for a in feed._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("key", sorted(KEYS))
def test_every_config_key_is_documented(key: str) -> None:
    assert f"| `{key}` |" in DOC


@pytest.mark.parametrize("code", [c.value for c in (*RefusalCode, *FailureCode, *Reason)] + ["ENTRY_UNUSABLE_RECORD"])
def test_every_code_is_documented(code: str) -> None:
    assert f"`{code}`" in DOC


@pytest.mark.parametrize("metric", METRIC_NAMES)
def test_every_metric_is_documented(metric: str) -> None:
    name = metric + ("_total" if metric.endswith("refusals") else "")
    assert f"`{name}`" in DOC


def test_every_subcommand_is_documented_and_teaches() -> None:
    subs = _subcommands()
    assert set(subs) == {"status", "sync", "daemon", "approve", "publish", "keygen", "rotate", "receipts", "audit",
                         "versions", "pin", "unpin"}
    for name, p in subs.items():
        assert f"hotline-edge feed {name}" in DOC, name
        assert re.search(rf"hotline-edge feed {name}\b", p.description or ""), f"--help of {name} has no example"


def test_documented_keys_exist() -> None:
    documented = set(re.findall(r"^\| `([a-z_]+)` \| (?:text|seconds|number|bytes|share|days|names|table|texts|URL|"
                                r"addresses|base64|path|bool|address)", DOC, re.M))
    assert documented == set(KEYS)
