"""Receipts pushed to the hotline's receipt URL (a real HTTP server on loopback), retried when it is
down; the CLI refuses a bad configuration with line-precise errors (exit 2); metrics over HTTP."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from feedsync import config as fconfig
from feedsync.control import ControlClient
from feedsync.receipts import verify_receipt
from feedsync.statedb import StateDB
from feedsync.sync import FeedSync
from tests.unit.feedsync.helpers import FakeResolver, write_config

from .conftest import HttpRepo
from .test_bundle_feed import ZONE, cli, fresh, orders

pytestmark = pytest.mark.integration


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.got.append(json.loads(body))  # type: ignore[attr-defined]
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[http.server.ThreadingHTTPServer]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    srv.got = []  # type: ignore[attr-defined]
    srv.status = 503  # type: ignore[attr-defined]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_receipts_pushed_and_retried(tmp_path, http_repo: HttpRepo, keys: str,  # type: ignore[no-untyped-def]
                                     receiver: http.server.ThreadingHTTPServer) -> None:
    path = orders(str(tmp_path / "o.csv"), [fresh(i) for i in range(1, 6)])
    assert cli("feed", "publish", "--repo", http_repo.repo, "--keys", keys, "--feed", "hotline",
               "--orders", path).returncode == 0
    root = str(tmp_path / "root.json")
    shutil.copy(os.path.join(http_repo.repo, "metadata", "1.root.json"), root)
    url = f"http://127.0.0.1:{receiver.server_address[1]}/receipts"
    conf = write_config(str(tmp_path / "config.toml"), str(tmp_path / "state"), str(tmp_path / "run"), [{
        "name": "hotline", "type": "bundle", "zone": ZONE, "url": http_repo.url, "trusted_root": root,
        "receipt_url": url}])
    cfg = fconfig.load(conf)
    fake = FakeResolver(cfg.control_socket, {ZONE: os.path.join(cfg.feed_dir("hotline"), "active.rpz")})
    db = StateDB(os.path.join(cfg.node.state_dir, "feeds", "feedsync.db"))
    try:
        sync = FeedSync(cfg, cfg.feed("hotline"), db, ControlClient(cfg.control_socket))
        assert sync.cycle().outcome == "applied"
        (r,) = db.receipts("hotline")
        assert r["pushed_at"] is None and r["push_error"] == "HTTP 503"     # kept, to be retried
        receiver.status = 204  # type: ignore[attr-defined]
        assert sync.cycle().outcome == "no_change"
        (r,) = db.receipts("hotline")
        assert r["pushed_at"] is not None and r["push_error"] is None
        got = receiver.got[-1]  # type: ignore[attr-defined]
        pub = open(os.path.join(cfg.node.state_dir, "node.pub"), "rb").read()  # noqa: SIM115
        doc = verify_receipt(got["body"].encode(), got["signature"], pub)
        assert doc is not None and doc["feed"] == "hotline" and doc["serial"] == 1 and got["receipt"] == doc
        out = cli("feed", "receipts", "--config", conf, "--feed", "hotline")
        assert json.loads(out.stdout)[0]["signature"] == got["signature"]
    finally:
        fake.close()
        db.close()


def test_cli_bad_config_is_located_and_exit_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    conf = tmp_path / "config.toml"
    conf.write_text('[[feed]]\nname = "twnic"\ntype = "xfr"\nzone = "z.test"\nprimaries = ["192.0.2.1"]\n'
                    'tsig_name = "k"\ntsig_algorithm = "hmac-md5"\ntsig_secret = "c2VjcmV0c2VjcmV0c2VjcmV0"\n')
    r = cli("feed", "status", "--config", str(conf))
    assert r.returncode == 2
    assert f"{conf}:7: feed[0].tsig_algorithm: hmac-md5 is too weak" in r.stderr
    r = cli("feed", "sync", "--config", str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "cannot read the configuration" in r.stderr


def test_keygen_never_overwrites(tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = str(tmp_path / "k")
    assert cli("feed", "keygen", "--out", d, "root").returncode == 0
    assert oct(os.stat(os.path.join(d, "root.key")).st_mode & 0o777) == "0o600"
    r = cli("feed", "keygen", "--out", d, "root")
    assert r.returncode == 2 and "refusing to overwrite" in r.stderr


def test_help_teaches() -> None:
    r = subprocess.run([sys.executable, "-m", "admin_api.cli", "feed", "--help"], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0 and "hotline-edge feed approve hotline" in r.stdout
