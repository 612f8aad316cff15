"""docs/blocklog.md and the code agree: [blocklog] keys, metrics, commands and options, routes x roles."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.routing import APIRoute

from admin_api.app import create_app
from admin_api.cli import build_parser
from admin_api.config import ApiConfig
from admin_api.hotline import NodeView, routers
from admin_api.roles import ROLE_PERMISSIONS, Permission, Role
from resolver import blocklog_config
from resolver.blocklog_ship import METRIC_NAMES

DOCS = Path(__file__).resolve().parents[3] / "docs"
DOC = (DOCS / "blocklog.md").read_text()


def section(text: str, heading: str) -> str:
    return text.split(heading, 1)[1].split("\n## ", 1)[0]


def test_every_key_is_documented_and_nothing_else() -> None:
    for doc, heading in ((DOC, "## Configuration: `[blocklog]`"),
                         ((DOCS / "configuration.md").read_text(), "## `[blocklog]`")):
        keys = set(re.findall(r"^\| `([a-z_]+)` \|", section(doc, heading), re.M))
        assert keys == set(blocklog_config.KEYS), heading


def test_every_metric_is_documented_and_nothing_else() -> None:
    documented = set(re.findall(r"`(hotline_edge_blocklog_[a-z_]+)`", DOC))
    assert documented == set(METRIC_NAMES)


def test_every_command_and_option_is_documented() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for group, names in (("log", ("verify", "export", "status", "holds")), ("retention", ("purge",)),
                         ("hotline", ("status", "probe"))):
        gsub = next(a for a in sub.choices[group]._actions if a.choices)  # type: ignore[union-attr]
        for name in names:
            assert f"hotline-edge {group} {name}" in DOC, (group, name)
            for action in gsub.choices[name]._actions:
                for opt in action.option_strings:
                    if opt.startswith("--") and opt != "--help":
                        line = next(x for x in DOC.splitlines() if f"hotline-edge {group} {name}" in x and "|" in x)
                        assert opt in line, (group, name, opt)


def test_routes_and_roles_table_matches_the_code(tmp_path) -> None:  # type: ignore[no-untyped-def]
    view = NodeView(blocklog=blocklog_config.BlocklogConfig(False, str(tmp_path / "b"), "", "n"),
                    state_dir=str(tmp_path), resolver_config=None)
    mine = routers(view)
    app = create_app(ApiConfig(database=str(tmp_path / "c.sqlite")), routers=mine)
    paths = set(app.openapi()["paths"])
    roles = [r.value for r in Role]
    from_code = {}
    for route in (r for router in mine for r in router.routes):
        assert isinstance(route, APIRoute) and route.path in paths
        names = [d.call.__name__ for d in route.dependant.dependencies if d.call is not None]
        [perm] = [Permission[n.removeprefix("need_").upper()] for n in names if n.startswith("need_")]
        for method in route.methods:
            from_code[(method, route.path)] = ["yes" if perm in ROLE_PERMISSIONS[Role(r)] else "—" for r in roles]
    header = "| method | route | " + " | ".join(roles) + " |"
    table = DOC[DOC.index(header):].splitlines()[2:]
    documented = {}
    for line in table:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        documented[(cells[0], cells[1].strip("`"))] = cells[2:]
    assert documented == from_code
