"""Hotline verification end to end, everything real: the hotline publishes a signed bundle (`feed
publish`, TUF over HTTP on loopback), `feed sync` verifies and activates it, our resolver (with the
blocked-lookup log) enforces it and logs the hits, and `hotline-edge api serve` answers the hotline
routes and the legal-hold routes over HTTP with tokens from `api token issue`.

No hotline route returns a client address or port: checked on every response and on the schema."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import httpx
import pytest
from nacl.public import PrivateKey

from feedsync.publish import keygen
from feedsync.receipts import verify_receipt
from resolver.demo import demo_answer

from ..feedsync.conftest import HttpRepo, _Handler
from ..feedsync.test_bundle_feed import fresh, orders
from ..resolver.peers import HOTLINE_EDGE, REPO, Peer, control_ready, free_port, start_resolver, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ZONE = "hotline.rpz.test"
ROLES = ("officer", "approver", "hotline", "operator", "auditor")
PERSONAL = {"ip", "port", "client", "client_ip", "client_port", "sealed_client", "address", "source"}


class Upstream:
    """The demo's upstream answers (resolver.demo) on a UDP socket in a thread."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            out = demo_answer(data)
            if out is not None:
                self.sock.sendto(out, addr)


def cli(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([*HOTLINE_EDGE, *args, "--config", str(config)], capture_output=True, text=True, env=env,
                          cwd=str(REPO), timeout=180, check=False)


@dataclass
class Site:
    tmp: Path
    config: Path
    http: HttpRepo
    keys: str
    resolver: Peer
    api: subprocess.Popen[bytes]
    api_url: str
    port: int
    key: PrivateKey
    tokens: dict[str, str] = field(default_factory=dict)
    responses: list[Any] = field(default_factory=list)

    def publish(self, entries: list[dict]) -> None:
        path = orders(str(self.tmp / "orders.csv"), entries)
        r = subprocess.run([*HOTLINE_EDGE, "feed", "publish", "--repo", self.http.repo, "--keys", self.keys,
                            "--feed", "hotline", "--orders", path], capture_output=True, text=True, check=False,
                           env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=str(REPO))
        assert r.returncode == 0, r.stderr

    def sync(self) -> str:
        r = cli("feed", "sync", config=self.config)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    def ask(self, name: str, rdtype: str = "A") -> dns.message.Message:
        return dns.query.udp(dns.message.make_query(name, rdtype, use_edns=0), "127.0.0.1", port=self.port, timeout=2)

    def call(self, method: str, path: str, role: str = "hotline", **kw: Any) -> httpx.Response:
        r = httpx.request(method, self.api_url + path, headers={"Authorization": f"Bearer {self.tokens[role]}"},
                          timeout=30, **kw)
        if path.startswith("/hotline"):
            self.responses.append((path, r.text))
        return r


def write_config(tmp: Path, http: HttpRepo, port: int, upstream: int, api_port: int, key: PrivateKey) -> Path:
    pub = tmp / "compliance-x25519.pub"
    pub.write_text(base64.b64encode(bytes(key.public_key)).decode() + "\n")
    cfg = tmp / "config.toml"
    cfg.write_text(f"""
[node]
id = "edge-hotline-test"
state_dir = "{tmp}/state"
runtime_dir = "{tmp}/run"

[resolver]
listen = ["127.0.0.1:{port}"]
upstreams = ["127.0.0.1:{upstream}"]
allow = ["127.0.0.0/8"]
workers = 1
upstream_timeout_ms = 500

[[policy.zone]]
feed = "hotline"
ede = 17
ede_text = "blocked under order {{order_ref}}"

[blocklog]
compliance_public_key = "{pub}"
flush_interval_ms = 100

[[feed]]
name = "hotline"
type = "bundle"
zone = "{ZONE}"
url = "{http.url}"
trusted_root = "{tmp}/trusted-root.json"
freshness = 3600
categories = ["fraud", "csam"]
stop_pages = {{ default = "stop.hotline-edge.test" }}

[api]
listen = "127.0.0.1:{api_port}"
database = "{tmp}/compliance.sqlite"
argon2_time_cost = 1
argon2_memory_kib = 8
""")
    return cfg


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    import http.server
    tmp = tmp_path_factory.mktemp("hotline")
    repo = str(tmp / "repo")
    os.makedirs(repo)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.root = repo  # type: ignore[attr-defined]
    srv.requests = []  # type: ignore[attr-defined]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    http_repo = HttpRepo(srv, repo)
    keys = str(tmp / "keys")
    for name in ("root", "targets", "snapshot", "timestamp"):
        keygen(keys, name)
    upstream = Upstream()
    port, api_port = free_port(), free_port()
    key = PrivateKey.generate()
    config = write_config(tmp, http_repo, port, upstream.port, api_port, key)
    resolver = start_resolver(tmp, config, port, wait_ready=False)
    wait_until(lambda: os.path.exists(tmp / "run" / "control.sock"), 60, "resolver control socket", resolver.proc,
               resolver.log)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    api_log = (tmp / "api.log").open("wb")
    api = subprocess.Popen([*HOTLINE_EDGE, "api", "serve", "--config", str(config)], stdout=api_log,
                           stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
    s = Site(tmp, config, http_repo, keys, resolver, api, f"http://127.0.0.1:{api_port}", port, key)
    try:
        s.publish([fresh(1), fresh(2, match="subdomains"), fresh(4, action="stop_page", stop_page="default")])
        shutil.copy(os.path.join(repo, "metadata", "1.root.json"), tmp / "trusted-root.json")
        assert "applied serial 1" in s.sync()
        wait_until(lambda: control_ready(resolver), 30, "the resolver serves the feed", resolver.proc, resolver.log)
        for role in ROLES:
            r = cli("api", "token", "issue", "--role", role, "--subject", f"test-{role}", "--ttl", "1h", config=config)
            assert r.returncode == 0, r.stderr
            s.tokens[role] = r.stdout.strip()
        wait_until(lambda: _healthy(s.api_url), 30, "api serve", api, tmp / "api.log")
        yield s
    finally:
        api.terminate()
        api.wait(10)
        resolver.stop()
        upstream.stop.set()
        srv.shutdown()
        srv.server_close()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _hits_written(s: Site, order: str, n: int) -> bool:
    r = s.call("GET", f"/hotline/orders/{order}")
    return r.status_code == 200 and r.json()["hits_total"] >= n


def test_order_status_since_when_and_hits(site: Site) -> None:
    before = time.time()
    for i in range(3):
        assert site.ask("site1.bad.test.").rcode() == 3
        assert site.ask(f"x{i}.site2.bad.test.").rcode() == 3
    wait_until(lambda: _hits_written(site, "TW-2026-0001", 3), 10, "hits in the log")
    st = site.call("GET", "/hotline/orders/TW-2026-0001").json()
    assert st["active"] and st["node"] == "edge-hotline-test"
    assert [(r["name"], r["action"], r["feed"], r["trigger"]) for r in st["rules"]] == \
        [("site1.bad.test", "nxdomain", "hotline", "QNAME")]
    assert st["since"]["feed"] == "hotline" and st["since"]["serial"] == 1 and st["current"]["ended_serial"] is None
    assert st["hits_total"] == 3 and st["hits_per_day"][0]["hits"] == 3
    assert st["hits_per_day"][0]["action"] == "nxdomain"
    assert st["last_hit"] >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(before - 1))
    two = site.call("GET", "/hotline/orders/TW-2026-0002").json()
    assert {r["name"] for r in two["rules"]} == {"site2.bad.test", "*.site2.bad.test"}
    assert two["hits_total"] == 3
    assert site.call("GET", "/hotline/orders/TW-NOT-HERE").status_code == 404
    assert site.call("GET", "/hotline/orders/TW-2026-0001", role="officer").status_code == 403


def test_probe_verdicts(site: Site) -> None:
    p = site.call("POST", "/hotline/orders/TW-2026-0001/probe").json()
    assert p["verdict"] == "ENFORCED", p
    assert p["qname"] == "site1.bad.test." and p["expected"]["rcode"] == "NXDOMAIN" and p["expected"]["ede"] == 17
    assert p["actual"]["ede"] == [{"code": 17, "text": "blocked under order TW-2026-0001"}]
    w = site.call("POST", "/hotline/orders/TW-2026-0002/probe").json()
    assert w["verdict"] == "ENFORCED" and w["qname"] == "site2.bad.test.", w      # the exact rule first
    stop = site.call("POST", "/hotline/orders/TW-2026-0004/probe").json()
    assert stop["verdict"] == "ENFORCED", stop
    assert stop["actual"]["answer"][0] == "site4.bad.test. CNAME stop.hotline-edge.test."
    assert site.call("POST", "/hotline/orders/NOPE-1/probe").status_code == 404


def test_receipts_are_signed_by_the_node(site: Site) -> None:
    doc = site.call("GET", "/hotline/receipts", params={"feed": "hotline"}).json()
    assert doc["receipts"] and doc["public_key_pem"].startswith("-----BEGIN PUBLIC KEY-----")
    r = doc["receipts"][0]
    body = verify_receipt(r["body"].encode(), r["signature"], doc["public_key_pem"].encode())
    assert body is not None and body["feed"] == "hotline" and body["serial"] == 1 and body == r["receipt"]
    later = site.call("GET", "/hotline/receipts", params={"since": "2999-01-01T00:00:00Z"}).json()
    assert later["receipts"] == []
    assert site.call("GET", "/hotline/receipts", params={"since": "2026-01-01T00:00:00"}).status_code == 422


def test_an_order_withdrawn_and_another_added(site: Site) -> None:
    site.publish([fresh(2, match="subdomains"), fresh(3), fresh(4, action="stop_page", stop_page="default")])
    assert "applied serial 2" in site.sync()
    wait_until(lambda: site.ask("site3.bad.test.").rcode() == 3, 20, "serial 2 enforced")
    one = site.call("GET", "/hotline/orders/TW-2026-0001").json()
    assert not one["active"] and one["rules"] == [] and one["current"] is None
    assert one["history"][0]["serial"] == 1 and one["history"][0]["ended_serial"] == 2
    assert one["hits_total"] == 4       # what was logged stays: 3 lookups and the probe (a lookup too)
    p = site.call("POST", "/hotline/orders/TW-2026-0001/probe").json()
    assert p["verdict"] == "NOT_ACTIVE" and p["actual"]["rcode"] == "NXDOMAIN"   # the demo upstream's truth
    assert p["actual"]["ede"] == []
    three = site.call("GET", "/hotline/orders/TW-2026-0003").json()
    assert three["active"] and three["since"]["serial"] == 2


def test_legal_holds_through_the_api(site: Site) -> None:
    body = {"order_ref": "TW-2026-0001", "reason": "HE-2026-000007 preservation", "until": "2099-01-01T00:00:00Z"}
    assert site.call("POST", "/blocklog/holds", role="hotline", json=body).status_code == 403
    made = site.call("POST", "/blocklog/holds", role="officer", json=body)
    assert made.status_code == 201, made.text
    h = made.json()
    assert h["active"] and h["created_by"] == "test-officer" and h["order_ref"] == "TW-2026-0001"
    bad = site.call("POST", "/blocklog/holds", role="officer", json={"reason": "r", "until": "2099-01-01T00:00:00Z"})
    assert bad.status_code == 422 and "needs a scope" in bad.json()["detail"]
    assert site.call("POST", "/blocklog/holds", role="officer",
                     json={**body, "until": "2099-01-01T00:00:00"}).status_code == 422   # a time needs its zone
    listed = site.call("GET", "/blocklog/holds", role="auditor").json()
    assert [x["id"] for x in listed] == [h["id"]]
    done = site.call("POST", f"/blocklog/holds/{h['id']}/release", role="officer", json={"note": "case closed"})
    assert done.status_code == 200 and not done.json()["active"] and done.json()["released_by"] == "test-officer"
    assert site.call("POST", f"/blocklog/holds/{h['id']}/release", role="officer", json={}).status_code == 409
    assert site.call("POST", "/blocklog/holds/999/release", role="officer", json={}).status_code == 404
    assert site.call("GET", "/blocklog/holds", role="officer", params={"active": "true"}).json() == []
    events = json.loads(cli("log", "status", "--json", config=site.config).stdout)["events"]
    assert {"hold_created", "hold_released"} <= {e["kind"] for e in events}


ROUTES = {
    ("GET", "/hotline/orders/TW-2026-0002"): {"hotline", "operator"},
    ("POST", "/hotline/orders/TW-2026-0002/probe"): {"hotline", "operator"},
    ("GET", "/hotline/receipts"): {"hotline", "operator"},
    ("GET", "/blocklog/holds"): {"officer", "approver", "auditor"},
    ("POST", "/blocklog/holds"): {"officer"},
    ("POST", "/blocklog/holds/1/release"): {"officer"},
}


def test_every_route_by_every_role(site: Site) -> None:
    for (method, path), allowed in ROUTES.items():
        for role in ROLES:
            kw: dict[str, Any] = {"json": {"reason": "r", "until": "2099-01-01T00:00:00Z", "order_ref": "X"}} \
                if path == "/blocklog/holds" and method == "POST" else {"json": {}} if method == "POST" else {}
            r = site.call(method, path, role=role, **kw)
            assert (r.status_code != 403) == (role in allowed), (method, path, role, r.status_code, r.text)
        r = httpx.request(method, site.api_url + path, timeout=10)
        assert r.status_code == 401, (method, path)


def _keys(doc: Any) -> Iterator[str]:
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield str(k).lower()
            yield from _keys(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from _keys(v)


def test_no_hotline_route_says_who_looked_something_up(site: Site) -> None:
    """Every hotline response the tests saw, and every schema a hotline route can answer with."""
    exported = cli("log", "export", "--order", "TW-2026-0001", "--from", "2020-01-01", "--to", "2100-01-01",
                   "--key", str(_write_key(site)), config=site.config)
    assert exported.returncode == 0, exported.stderr
    clients = [json.loads(line)["client"] for line in exported.stdout.splitlines()]
    assert len(clients) >= 3 and all(c["ip"] == "127.0.0.1" for c in clients)
    assert len(site.responses) >= 10
    for path, text in site.responses:
        doc = json.loads(text)
        assert not PERSONAL & set(_keys(doc)), (path, text[:500])
        for c in clients:                       # the ports the test clients used never appear
            assert f'"{c["port"]}"' not in text and f": {c['port']}," not in text, (path, c)
        assert "127.0.0.1\"" not in text.replace(f'127.0.0.1:{site.port}"', ""), (path, text[:500])
    schema = site.call("GET", "/openapi.json", role="hotline").json()
    models = schema["components"]["schemas"]
    for path, ops in schema["paths"].items():
        if not path.startswith("/hotline"):
            continue
        for op in ops.values():
            ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
            assert not PERSONAL & _schema_fields(models, ref), (path, ref)


def _schema_fields(models: dict[str, Any], name: str, seen: set[str] | None = None) -> set[str]:
    seen = seen if seen is not None else set()
    if name in seen:
        return set()
    seen.add(name)
    out: set[str] = set()
    for prop, spec in models[name].get("properties", {}).items():
        out.add(prop.lower())
        for ref in _refs(spec):
            out |= _schema_fields(models, ref, seen)
    return out


def _refs(spec: Any) -> Iterator[str]:
    if isinstance(spec, dict):
        if "$ref" in spec:
            yield spec["$ref"].rsplit("/", 1)[-1]
        for v in spec.values():
            yield from _refs(v)
    elif isinstance(spec, list):
        for v in spec:
            yield from _refs(v)


def _write_key(site: Site) -> Path:
    path = site.tmp / "compliance-x25519.key"
    path.write_text(base64.b64encode(bytes(site.key)).decode() + "\n")
    return path


def test_hotline_cli(site: Site) -> None:
    st = cli("hotline", "status", "TW-2026-0003", "--json", config=site.config)
    assert st.returncode == 0 and json.loads(st.stdout)["since"]["serial"] == 2, st.stdout + st.stderr
    gone = cli("hotline", "status", "TW-2026-0001", config=site.config)
    assert gone.returncode == 1 and "NOT in force" in gone.stdout
    pr = cli("hotline", "probe", "TW-2026-0003", config=site.config)
    assert pr.returncode == 0 and pr.stdout.startswith("ENFORCED"), pr.stdout + pr.stderr
    assert cli("hotline", "probe", "TW-2026-0001", config=site.config).returncode == 1
    assert cli("hotline", "probe", "NOPE", config=site.config).returncode == 1
