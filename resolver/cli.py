"""``hotline-edge serve | checkconf | demo``: the data plane's commands (skeleton)."""

from __future__ import annotations

import argparse
from importlib import resources
from typing import Any


def register(sub: Any) -> None:
    d = sub.add_parser("demo", help="run the demo on loopback",
                       description="Run the main job on its embedded default configuration.")
    d.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from rpz.cli import cmd_check
    zone = resources.files("rpz") / "data" / "demo-hotline.rpz"
    ns = argparse.Namespace(zones=[str(zone)], origin=[], order=None, json=False, slow_path=False)
    return cmd_check(ns)
