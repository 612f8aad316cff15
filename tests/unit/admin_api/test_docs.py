"""docs/disclosure.md and the code agree: routes x roles, states, reason codes, [api] keys, commands."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.routing import APIRoute

from admin_api.app import create_app
from admin_api.checks import Reason
from admin_api.config import KEYS, ApiConfig
from admin_api.roles import ROLE_PERMISSIONS, Permission, Role
from admin_api.workflow import State

DOC = (Path(__file__).resolve().parents[3] / "docs" / "disclosure.md").read_text()


def table_rows(header_start: str) -> list[list[str]]:
    lines = DOC[DOC.index(header_start):].splitlines()
    rows = []
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_routes_and_roles_table_matches_the_code(tmp_path):
    app = create_app(ApiConfig(database=str(tmp_path / "c.sqlite")))
    roles = [r.value for r in Role]
    from_code = {}
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue
        names = [d.call.__name__ for d in route.dependant.dependencies if d.call is not None]
        perms = [Permission[n.removeprefix("need_").upper()] for n in names if n.startswith("need_")]
        for method in route.methods:
            if not perms:
                from_code[(method, route.path)] = ["no token"] * len(roles)
            else:
                [perm] = perms
                from_code[(method, route.path)] = ["yes" if perm in ROLE_PERMISSIONS[Role(r)] else "—"
                                                   for r in roles]
    header = "| method | route | " + " | ".join(roles) + " |"
    assert header in DOC
    documented = {(row[0], row[1].strip("`")): row[2:] for row in table_rows(header)}
    assert documented == from_code


def test_every_state_reason_key_and_command_is_documented():
    for s in State:
        assert f"`{s.value}`" in DOC, s
    for r in Reason:
        assert f"| `{r.value}` |" in DOC, r
    for k in KEYS:
        assert f"| `{k}` |" in DOC, k
    for cmd in ("api serve", "api token issue", "api keygen", "subscribers import", "audit verify"):
        assert f"hotline-edge {cmd}" in DOC, cmd
    for field in re.findall(r"hotline_edge_\w+", DOC):
        assert field in ("hotline_edge_api_requests_total", "hotline_edge_disclosure_checks_refused_total")
