"""docs/cli.md is exactly what the parser prints: the reference cannot drift from the command."""

from __future__ import annotations

import pathlib

from admin_api import clidoc

DOC = pathlib.Path(__file__).resolve().parents[3] / "docs" / "cli.md"


def test_cli_reference_matches_the_parser() -> None:
    want = clidoc.render()
    assert DOC.read_text() == want, "docs/cli.md is stale: run `.venv/bin/python -m admin_api.clidoc > docs/cli.md`"


def test_every_subcommand_has_a_section_and_teaches_by_example() -> None:
    text = DOC.read_text()
    for title in ("hotline-edge serve", "hotline-edge feed sync", "hotline-edge log verify",
                  "hotline-edge retention purge", "hotline-edge api token issue", "hotline-edge demo"):
        assert f"## `{title}`" in text, title
    leaves = [s for s in text.split("\n## `")[1:] if "positional arguments:\n  {" not in s and "SUBCOMMAND" not in s]
    assert leaves
    without_example = [s.split("`", 1)[0] for s in leaves if "  hotline-edge " not in s]
    assert not without_example, f"subcommands whose --help shows no example: {without_example}"
