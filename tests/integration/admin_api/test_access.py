"""Every route x every role, over HTTP: the expected table below is written independently of
admin_api/roles.py, so a route that changes who may call it (or a new route) fails here."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

import pytest
from fastapi import APIRouter, Depends
from fastapi.routing import APIRoute

from admin_api.app import need
from admin_api.roles import Permission, Role
from admin_api.tokens import Principal

from .harness import World, start_world

pytestmark = pytest.mark.integration

ALL = frozenset({"officer", "approver", "hotline", "operator", "auditor"})
READERS = frozenset({"officer", "approver", "auditor"})
OFFICER = frozenset({"officer"})

# (method, path) -> roles allowed; None = no token needed (only /healthz)
EXPECTED: dict[tuple[str, str], frozenset[str] | None] = {
    ("GET", "/healthz"): None,
    ("GET", "/openapi.json"): ALL,
    ("GET", "/whoami"): ALL,
    ("GET", "/reasons"): ALL,
    ("GET", "/metrics"): frozenset({"operator"}),
    ("GET", "/registry/agencies"): READERS,
    ("POST", "/registry/agencies"): OFFICER,
    ("GET", "/registry/requesters"): READERS,
    ("POST", "/registry/requesters"): OFFICER,
    ("POST", "/registry/requesters/{requester_id}/status"): OFFICER,
    ("POST", "/disclosures"): OFFICER,
    ("GET", "/disclosures"): READERS,
    ("GET", "/disclosures/{case_id}"): READERS,
    ("PUT", "/disclosures/{case_id}/scope"): OFFICER,
    ("POST", "/disclosures/{case_id}/verification"): OFFICER,
    ("GET", "/disclosures/{case_id}/callbacks"): READERS,
    ("POST", "/disclosures/{case_id}/callbacks"): OFFICER,
    ("POST", "/disclosures/{case_id}/legal-review"): OFFICER,
    ("POST", "/disclosures/{case_id}/request-info"): OFFICER,
    ("POST", "/disclosures/{case_id}/preservation"): OFFICER,
    ("POST", "/disclosures/{case_id}/freeze"): OFFICER,
    ("POST", "/disclosures/{case_id}/submit"): OFFICER,
    ("POST", "/disclosures/{case_id}/approve"): frozenset({"approver"}),
    ("POST", "/disclosures/{case_id}/reject"): frozenset({"officer", "approver"}),
    ("POST", "/disclosures/{case_id}/withdraw"): OFFICER,
    ("POST", "/disclosures/{case_id}/execute"): OFFICER,
    ("GET", "/disclosures/{case_id}/package"): frozenset({"officer", "approver"}),
    ("POST", "/disclosures/{case_id}/deliver"): OFFICER,
    ("POST", "/disclosures/{case_id}/followup"): OFFICER,
    ("POST", "/disclosures/{case_id}/notice"): OFFICER,
    ("GET", "/disclosures/{case_id}/audit"): frozenset({"auditor"}),
    ("GET", "/audit"): frozenset({"auditor"}),
    ("GET", "/audit/verify"): frozenset({"auditor"}),
    ("GET", "/stats/transparency"): frozenset({"officer", "auditor"}),
    ("POST", "/subscribers/sessions"): frozenset({"operator"}),
}

PERSON = {"officer": "alice", "approver": "bob", "hotline": "hana", "operator": "olga", "auditor": "carol"}


def app_routes(world: World) -> set[tuple[str, str]]:
    return {(m, r.path) for r in world.app.routes if isinstance(r, APIRoute) for m in r.methods}


def fill(path: str, case_id: str, requester_id: int) -> str:
    path = path.replace("{case_id}", case_id).replace("{requester_id}", str(requester_id))
    assert not re.search(r"{\w+}", path), path
    return path + ("?year=2026" if path == "/stats/transparency" else "")


def test_the_expected_table_covers_every_route(world: World) -> None:
    assert app_routes(world) == set(EXPECTED)


def test_every_route_for_every_role(world: World) -> None:
    cid = world.approved()
    world.ok("alice", "POST", f"/disclosures/{cid}/execute")
    # a role appears in the table only if it exists
    assert {r.value for r in Role} == ALL
    for (method, path), allowed in sorted(EXPECTED.items()):
        url = fill(path, cid, world.ids["inspector"])
        body = {} if method in ("POST", "PUT") else None
        anonymous = world.call(None, method, url, body)
        if allowed is None:
            assert anonymous.status_code == 200, (method, path)
            continue
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        for role in sorted(ALL):
            r = world.call(PERSON[role], method, url, body)
            if role in allowed:
                assert r.status_code not in (401, 403), (method, path, role, r.status_code, r.text)
            else:
                assert r.status_code == 403, (method, path, role, r.status_code, r.text)
                assert r.json()["error"] == "ACCESS_DENIED"


def test_bad_expired_and_revoked_tokens_are_refused_everywhere(world: World) -> None:
    authority = world.app.state.tokens
    short, _ = authority.issue(Role.AUDITOR, "temp-auditor", timedelta(hours=1))
    revoked, record = authority.issue(Role.AUDITOR, "gone-auditor", timedelta(days=1))
    authority.revoke(record.id)
    token_id = short.split("_")[1]
    forged = f"hle_{token_id}_{'A' * 43}"          # a real id with a guessed secret
    for token in ("hle_nothing_here", forged, revoked, "Basic abc", "hle__"):
        r = world.client.get(world.server.url + "/audit/verify", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, (token, r.text)
    ok = world.client.get(world.server.url + "/audit/verify", headers={"Authorization": f"Bearer {short}"})
    assert ok.status_code == 200
    world.clock.advance(timedelta(hours=1))
    late = world.client.get(world.server.url + "/audit/verify", headers={"Authorization": f"Bearer {short}"})
    assert late.status_code == 401 and "expired" in late.json()["detail"]


def test_tokens_are_stored_only_as_argon2_hashes(world: World) -> None:
    import sqlite3
    with sqlite3.connect(world.app.state.store.path) as conn:
        stored = [row[0] for row in conn.execute("SELECT hash FROM tokens")]
        audit = "\n".join(row[0] for row in conn.execute("SELECT payload FROM audit"))
    assert stored and all(h.startswith("$argon2id$") for h in stored)
    for token in world.tokens.values():
        secret = token.split("_", 2)[2]
        assert all(secret not in h for h in stored)
        assert secret not in audit


HotlineReader = Annotated[Principal, Depends(need(Permission.HOTLINE_READ))]


def test_routes_from_other_parts_get_the_same_protection(tmp_path) -> None:
    router = APIRouter()

    @router.get("/hotline/orders/{order_ref}")
    def order(order_ref: str, who: HotlineReader) -> dict:
        return {"order_ref": order_ref}

    w = start_world(tmp_path, routers=[router])
    try:
        assert w.call(None, "GET", "/hotline/orders/HKH-1").status_code == 401
        assert w.call("hana", "GET", "/hotline/orders/HKH-1").json() == {"order_ref": "HKH-1"}
        assert w.call("alice", "GET", "/hotline/orders/HKH-1").status_code == 403
    finally:
        w.client.close()
        w.server.stop()
