"""The ``hotline-edge`` command: one entry point, subcommands owned by each package.

Each package's cli module registers its own subcommands (``register(subparsers)``) and keeps heavy
imports inside the command functions, so ``--help`` and quick checks start fast. This module sits
in admin_api because admin_api is the one package allowed to import all the others
(docs/decisions/0001-layout-and-cli.md).

Exit codes, the same for every subcommand (docs/cli.md):
  0  success, nothing to report
  1  the command ran and found problems (rejected records, failed verification, refused feed)
  2  usage error, or input that cannot be read at all (missing file, bad config)
  3  the operation failed at run time (peer unreachable, permission denied)
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# (module, what it adds) in the order --help lists them
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "resolver.cli",        # serve, checkconf, reload
    "rpz.cli",             # rpz check | query | compile
    "feedsync.cli",        # feed sync | daemon | status | approve | publish | keygen
    "resolver.blocklog_cli",  # log verify | export, retention purge
    "admin_api.commands",  # api, subscribers, hotline, audit, demo
)

EPILOG = """\
Start here:
  hotline-edge demo                          resolver + demo feed + admin API on loopback
  hotline-edge rpz check zone.rpz            what a policy zone contains, and every bad record
  hotline-edge checkconf /etc/hotline-edge/config.toml
  hotline-edge serve --config /etc/hotline-edge/config.toml

Exit codes: 0 ok, 1 problems found, 2 usage or unreadable input, 3 run-time failure.
Documentation: README.md, docs/operations.md, docs/configuration.md, docs/cli.md.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hotline-edge",
        description="Enforce hotline takedown orders in DNS (RPZ), provably; answer law-enforcement "
                    "data requests only under valid legal process.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"hotline-edge {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        mod.register(sub)
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("hotline-edge")
    except Exception:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
