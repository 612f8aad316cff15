"""A real admin API for tests: the FastAPI app under uvicorn on a free loopback port, a real
SQLite file, real keys, a manual clock, an in-memory blocked-lookup log of real sealed boxes, and
a registry and subscriber sessions loaded through the API itself. Synthetic data only."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.public import PrivateKey

from admin_api.app import create_app
from admin_api.blocklog import InMemoryBlocklog, SealedHit, seal_client
from admin_api.clock import ManualClock, to_ms
from admin_api.config import ApiConfig
from admin_api.roles import Role

T0 = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)  # "now" when a world starts
ORDER = "HKH-2026-0042"
BLOCKED = "bad.example.test"

# Subscriber personal data in the synthetic sessions: none of it may appear in any answer unless
# a case releases it. Each account's markers are the strings that would give it away.
SUBSCRIBERS = {
    "acct-1001": ("Chan Tai Man", "Flat 1, 1 Example Road, Hong Kong", "+852 5550 1001", "chan.tm@example.net"),
    "acct-2001": ("Cheung Mei Ling", "Room 2, 2 Example Street, Kowloon", "+852 5550 2001", "cheung.ml@example.net"),
    "acct-2002": ("Ho Ka Yan", "3 Example Lane, Sha Tin", "+852 5550 2002", "ho.ky@example.net"),
    "acct-3001": ("Lam Wing", "4 Example Path, Tai Po", "+852 5550 3001", "lam.w@example.net"),
    "acct-3002": ("Ng Siu Ming", "5 Example Terrace, Tuen Mun", "+852 5550 3002", "ng.sm@example.net"),
}


def markers(account: str) -> tuple[str, ...]:
    return (account, *SUBSCRIBERS[account])


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout}s")
        time.sleep(0.01)


class LiveServer:
    """uvicorn serving ``app`` in a thread, on a socket bound to 127.0.0.1:0."""

    def __init__(self, app: Any) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, 15, "uvicorn to start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def sealed_hit(pub: Any, at: datetime, ip: str, port: int, order: str = ORDER, qname: str = BLOCKED) -> SealedHit:
    return SealedHit(to_ms(at), qname, "A", order, "hotline.rpz.test", "nxdomain", "edge-01",
                     seal_client(pub, ip, port))


def session_data() -> dict[str, list[dict[str, Any]]]:
    def radius(sid: str, acct: str, ip: str, start: str, stop: str) -> list[dict[str, Any]]:
        base = {"Acct-Session-Id": sid, "User-Name": acct, "Framed-IP-Address": ip}
        return [{**base, "Acct-Status-Type": "Start", "Event-Timestamp": start},
                {**base, "Acct-Status-Type": "Stop", "Event-Timestamp": stop}]
    return {
        "radius": [
            *radius("s1", "acct-1001", "198.51.100.7", "2026-03-01T10:00:00Z", "2026-03-01T12:00:00Z"),
            *radius("s2", "acct-3001", "198.51.100.20", "2026-03-01T09:00:00Z", "2026-03-01T11:00:00Z"),
            *radius("s3", "acct-3002", "198.51.100.20", "2026-03-01T11:00:00Z", "2026-03-01T13:00:00Z"),
            *radius("s4", "acct-2001", "100.64.0.5", "2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"),
            *radius("s5", "acct-2002", "100.64.0.6", "2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"),
        ],
        "cgnat": [
            {"public_ip": "203.0.113.10", "port_start": 1024, "port_end": 2047, "inside_ip": "100.64.0.5",
             "start": "2026-03-01T00:00:00Z", "end": "2026-03-02T00:00:00Z"},
            {"public_ip": "203.0.113.10", "port_start": 2048, "port_end": 3071, "inside_ip": "100.64.0.6",
             "start": "2026-03-01T00:00:00Z", "end": "2026-03-02T00:00:00Z"},
        ],
        "accounts": [{"account": a, "name": n, "postal_address": p, "phone": ph, "email": e}
                     for a, (n, p, ph, e) in SUBSCRIBERS.items()],
    }


DOC_SHA = hashlib.sha256(b"synthetic scanned instrument").hexdigest()


def warrant(**over: Any) -> dict[str, Any]:
    base = {
        "type": "court_order", "issuer": "Eastern Magistrates' Court", "issuer_jurisdiction": "HK",
        "reference": "EMC-CO-2026-0113", "issued_on": "2026-03-09", "valid_from": "2026-03-09T00:00:00Z",
        "valid_to": "2026-03-23T00:00:00Z", "legal_provision": "Cap. 232 s.50(7)", "document_sha256": DOC_SHA,
        "agency": "HKPF", "addresses": ["198.51.100.0/24", "203.0.113.10/32"], "order_refs": [ORDER],
        "categories": ["subscriber_account", "subscriber_contact"],
        "window_start": "2026-03-01T00:00:00+08:00", "window_end": "2026-03-02T08:00:00+08:00",
    }
    return {**base, **over}


def address_query(address: str = "198.51.100.7", **over: Any) -> dict[str, Any]:
    base = {"kind": "address", "address": address, "start": "2026-03-01T18:00:00+08:00",
            "end": "2026-03-01T19:00:00+08:00", "categories": ["subscriber_account", "subscriber_contact"]}
    return {**base, **over}


@dataclass
class World:
    """One deployment: server, clock, tokens by person, registry ids, and every response seen."""

    server: LiveServer
    clock: ManualClock
    app: Any
    signing_key: Ed25519PrivateKey
    compliance_key: PrivateKey
    blocklog: Any   # InMemoryBlocklog unless the test gave another source
    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    def call(self, who: str | None, method: str, path: str, json: Any = None,
             params: dict[str, Any] | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        r = self.client.request(method, self.server.url + path, json=json, params=params, headers=headers)
        self.seen.append(r.text)
        return r

    def ok(self, who: str, method: str, path: str, json: Any = None, status: int = 200) -> Any:
        r = self.call(who, method, path, json)
        assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()

    # -- a case, step by step --------------------------------------------------------------------

    def case_body(self, **over: Any) -> dict[str, Any]:
        body = {"channel": "portal", "agency_request_number": "HKPF-RQ-2026-5531",
                "requester_id": self.ids["inspector"], "instrument": warrant(), "queries": [address_query()],
                "delivery": {"method": "portal", "recipient_id": self.ids["inspector"]}}
        return {**body, **over}

    def open(self, **over: Any) -> str:
        return str(self.ok("alice", "POST", "/disclosures", self.case_body(**over), 201)["id"])

    def verify(self, cid: str, supervisor: bool = True) -> httpx.Response:
        self.ok("alice", "POST", f"/disclosures/{cid}/verification")
        if self.case(cid)["requester_id"] is not None:
            self.ok("alice", "POST", f"/disclosures/{cid}/callbacks",
                    {"person": "requester", "outcome": "confirmed"}, 201)
            if supervisor:
                self.ok("alice", "POST", f"/disclosures/{cid}/callbacks",
                        {"person": "supervisor", "outcome": "confirmed"}, 201)
        return self.call("alice", "POST", f"/disclosures/{cid}/legal-review")

    def approved(self, **over: Any) -> str:
        cid = self.open(**over)
        assert self.verify(cid).status_code == 200
        self.ok("alice", "POST", f"/disclosures/{cid}/freeze")
        self.ok("alice", "POST", f"/disclosures/{cid}/submit")
        self.ok("bob", "POST", f"/disclosures/{cid}/approve", {"note": "in scope"})
        return cid

    def case(self, cid: str) -> dict[str, Any]:
        return self.ok("carol", "GET", f"/disclosures/{cid}")  # type: ignore[no-any-return]

    def audit(self, cid: str) -> list[dict[str, Any]]:
        return self.ok("carol", "GET", f"/disclosures/{cid}/audit")  # type: ignore[no-any-return]

    def package(self, cid: str, who: str = "alice") -> httpx.Response:
        return self.call(who, "GET", f"/disclosures/{cid}/package")

    def released_markers(self) -> set[str]:
        """Every subscriber marker that appeared in any answer so far."""
        return {m for acct in SUBSCRIBERS for m in markers(acct) if any(m in text for text in self.seen)}


def start_world(tmp: Path, *, gates: Any = None, argon2_time_cost: int = 1, routers: Any = (),
                session_retention_days: int = 365, compliance_key: PrivateKey | None = None,
                blocklog: Any = None) -> World:
    """``blocklog``: another BlocklogSource (sealed to ``compliance_key``) instead of the in-memory one."""
    clock = ManualClock(T0)
    signing_key = Ed25519PrivateKey.generate()
    compliance_key = compliance_key or PrivateKey.generate()
    pub = compliance_key.public_key
    blocklog = blocklog or InMemoryBlocklog([
        sealed_hit(pub, datetime(2026, 3, 1, 10, 15, tzinfo=UTC), "100.64.0.5", 40001),
        sealed_hit(pub, datetime(2026, 3, 1, 11, 30, tzinfo=UTC), "198.51.100.7", 53000),
        sealed_hit(pub, datetime(2026, 3, 5, 9, 0, tzinfo=UTC), "198.51.100.20", 53001),   # outside windows
        sealed_hit(pub, datetime(2026, 3, 1, 10, 20, tzinfo=UTC), "100.64.0.6", 40002, order="OTHER-1",
                   qname="other.example.test"),
    ])
    cfg = ApiConfig(database=str(tmp / "compliance.sqlite"), argon2_time_cost=argon2_time_cost,
                    argon2_memory_kib=64, cgnat_pools=(), isp_name="Example Broadband",
                    session_retention_days=session_retention_days)
    app = create_app(cfg, clock=clock, signing_key=signing_key, compliance_key=compliance_key, blocklog=blocklog,
                     gates=gates, routers=routers)
    world = World(LiveServer(app), clock, app, signing_key, compliance_key, blocklog)
    people = {"alice": Role.OFFICER, "bob": Role.APPROVER, "alice-as-approver": Role.APPROVER,
              "carol": Role.AUDITOR, "olga": Role.OPERATOR, "hana": Role.HOTLINE, "oscar": Role.OFFICER}
    for person, role in people.items():
        subject = "alice" if person == "alice-as-approver" else person
        world.tokens[person], _ = app.state.tokens.issue(role, subject, timedelta(days=30))
    world.ok("alice", "POST", "/registry/agencies", {"code": "HKPF", "name": "Hong Kong Police Force",
                                                     "jurisdiction": "HK"}, 201)
    world.ok("alice", "POST", "/registry/agencies", {"code": "C-ED", "name": "Customs and Excise",
                                                     "jurisdiction": "HK"}, 201)
    sup = world.ok("alice", "POST", "/registry/requesters", {
        "agency": "HKPF", "name": "Supt Wong Ka Ming", "rank": "SSP", "warrant_card": "HKPF-10001",
        "official_phone": "+852 2860 0001", "phone_source": "HKPF staff directory 2026-02"}, 201)
    insp = world.ok("alice", "POST", "/registry/requesters", {
        "agency": "HKPF", "name": "Insp Lee Siu Fan", "rank": "IP", "warrant_card": "HKPF-77123",
        "official_phone": "+852 2860 0002", "phone_source": "HKPF staff directory 2026-02",
        "supervisor_id": sup["id"]}, 201)
    customs = world.ok("alice", "POST", "/registry/requesters", {
        "agency": "C-ED", "name": "Officer Yip", "rank": "SCO", "warrant_card": "CED-501",
        "official_phone": "+852 2815 0003", "phone_source": "C&ED directory 2026-01"}, 201)
    world.ids.update(supervisor=sup["id"], inspector=insp["id"], customs=customs["id"])
    for kind, records in session_data().items():
        r = world.ok("olga", "POST", "/subscribers/sessions", {"kind": kind, "records": records})
        assert r["rejected"] == [], r
    world.seen.clear()
    return world
