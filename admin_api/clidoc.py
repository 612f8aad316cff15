"""docs/cli.md, generated from the argument parser itself so the reference cannot drift.

    .venv/bin/python -m admin_api.clidoc > docs/cli.md

tests/unit/admin_api/test_clidoc.py fails when docs/cli.md differs from what this prints.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator

WIDTH = "100"

HEADER = """\
# hotline-edge command reference

Generated from the command's own `--help` (`python -m admin_api.clidoc > docs/cli.md`); a test
keeps it identical. Every subcommand uses the same exit codes:

| code | meaning |
|---|---|
| 0 | success, nothing to report |
| 1 | the command ran and found problems (rejected records, failed verification, refused feed, order not in force) |
| 2 | usage error, or input that cannot be read at all (missing file, bad configuration: `FILE:LINE` errors) |
| 3 | the operation failed at run time (peer unreachable, port in use, permission denied, database failure) |
"""


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...],
                                                                                       argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))


def render() -> str:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH        # argparse wraps to the terminal: fix it for a stable file
    try:
        from .cli import build_parser
        parts = [HEADER]
        for path, parser in _walk(build_parser(), ("hotline-edge",)):
            title = " ".join(path)
            parts.append(f"\n## `{title}`\n\n```text\n{parser.format_help().rstrip()}\n```\n")
        return "".join(parts)
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


if __name__ == "__main__":
    sys.stdout.write(render())
