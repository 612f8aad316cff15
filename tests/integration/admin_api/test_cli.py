"""The admin commands as an operator runs them: real processes, real files, real HTTP."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from .harness import wait_until

pytestmark = pytest.mark.integration


def he(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "admin_api.cli", *args], capture_output=True, text=True, check=False,
                          timeout=120, env={**os.environ, "HOTLINE_EDGE_CONFIG": "", **(env or {})})


GOOD = """\
Acct-Status-Type,Acct-Session-Id,User-Name,Framed-IP-Address,Event-Timestamp
Start,s1,acct-1001,198.51.100.7,2026-03-01T18:00:00+08:00
Stop,s1,acct-1001,198.51.100.7,2026-03-01T20:00:00+08:00
"""
BAD = GOOD + "Start,s2,acct-1002,198.51.100.300,2026-03-01T10:00:00Z\n"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[api]\ndatabase = "{tmp_path / "compliance.sqlite"}"\nargon2_time_cost = 1\n'
                   'argon2_memory_kib = 64\n')
    return cfg


def test_import_reports_bad_rows_by_line_and_is_idempotent(tmp_path: Path, config: Path) -> None:
    f = tmp_path / "radius.csv"
    f.write_text(BAD)
    first = he("subscribers", "import", str(f), "--config", str(config))
    assert first.returncode == 1
    assert f"{f}:4: framed_ip_address: '198.51.100.300' is not an IPv4 or IPv6 address" in first.stderr
    assert "radius: 1 new, 1 updated, 0 unchanged, 1 rejected" in first.stdout
    again = he("subscribers", "import", str(f), "--config", str(config))
    assert "radius: 0 new, 0 updated, 2 unchanged, 1 rejected" in again.stdout
    f.write_text(GOOD)
    assert he("subscribers", "import", str(f), "--config", str(config)).returncode == 0
    with sqlite3.connect(tmp_path / "compliance.sqlite") as conn:
        assert conn.execute("SELECT account, address FROM sessions").fetchall() == [("acct-1001", "198.51.100.7")]
        imports = conn.execute("SELECT COUNT(*) FROM audit WHERE kind = 'sessions.imported'").fetchone()[0]
    assert imports == 3


def test_purge_deletes_what_is_past_retention(tmp_path: Path, config: Path) -> None:
    config.write_text(config.read_text() + "session_retention_days = 1\n")
    f = tmp_path / "radius.csv"
    f.write_text(GOOD)                           # sessions of 2026-03-01: long past a 1-day retention
    he("subscribers", "import", str(f), "--config", str(config))
    r = he("subscribers", "purge", "--config", str(config))
    assert r.returncode == 0 and "purged 1 session records and 0 port blocks" in r.stdout
    with sqlite3.connect(tmp_path / "compliance.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM audit WHERE kind = 'sessions.purged'").fetchone()[0] == 1


def test_import_dry_run_and_unreadable_input(tmp_path: Path, config: Path) -> None:
    f = tmp_path / "radius.csv"
    f.write_text(BAD)
    dry = he("subscribers", "import", str(f), "--config", str(config), "--dry-run")
    assert dry.returncode == 1 and "2 valid, 1 rejected (dry run" in dry.stdout
    assert not (tmp_path / "compliance.sqlite").exists()
    assert he("subscribers", "import", str(tmp_path / "missing.csv"), "--config", str(config)).returncode == 2
    (tmp_path / "odd.csv").write_text("a,b\n1,2\n")
    odd = he("subscribers", "import", str(tmp_path / "odd.csv"), "--config", str(config))
    assert odd.returncode == 2 and "--kind" in odd.stderr


def test_audit_verify_exit_codes(tmp_path: Path, config: Path) -> None:
    assert he("audit", "verify", "--config", str(config)).returncode == 2      # no database yet
    f = tmp_path / "radius.csv"
    f.write_text(GOOD)
    he("subscribers", "import", str(f), "--config", str(config))
    he("subscribers", "import", str(f), "--config", str(config))
    ok = he("audit", "verify", "--config", str(config))
    assert ok.returncode == 0 and "chain intact: 2 records" in ok.stdout
    with sqlite3.connect(tmp_path / "compliance.sqlite") as conn:
        conn.execute("UPDATE audit SET payload = replace(payload, 'radius', 'dhcp') WHERE seq = 1")
    broken = he("audit", "verify", "--config", str(config), "--json")
    assert broken.returncode == 1 and '"first_bad": 1' in broken.stdout


def test_bad_config_is_reported_with_its_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[api]\nlisten = "127.0.0.1"\n')
    r = he("audit", "verify", "--config", str(cfg))
    assert r.returncode == 2 and f"{cfg}:2: api.listen:" in r.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_keygen_token_and_serve(tmp_path: Path, config: Path) -> None:
    keys = tmp_path / "keys"
    assert he("api", "keygen", "--out", str(keys)).returncode == 0
    assert oct((keys / "package-ed25519.pem").stat().st_mode & 0o777) == "0o600"
    assert oct((keys / "compliance-x25519.key").stat().st_mode & 0o777) == "0o600"
    assert he("api", "keygen", "--out", str(keys)).returncode == 2                 # never overwrites silently
    config.write_text(config.read_text() + f'signing_key = "{keys / "package-ed25519.pem"}"\n'
                      f'compliance_private_key = "{keys / "compliance-x25519.key"}"\n')
    issued = he("api", "token", "issue", "--role", "auditor", "--subject", "audit-team", "--ttl", "2h",
                "--config", str(config))
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    assert token.startswith("hle_") and token not in issued.stderr
    listed = he("api", "token", "list", "--config", str(config))
    assert "auditor" in listed.stdout and token.split("_", 2)[2] not in listed.stdout

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "admin_api.cli", "api", "serve", "--config", str(config),
                             "--listen", f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        wait_until(up, 30, "api serve to answer /healthz")
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"http://127.0.0.1:{port}/audit/verify", headers=auth).json()["ok"] is True
        assert httpx.get(f"http://127.0.0.1:{port}/openapi.json").status_code == 401
        assert "/disclosures" in httpx.get(f"http://127.0.0.1:{port}/openapi.json", headers=auth).json()["paths"]
        token_id = token.split("_")[1]
        assert he("api", "token", "revoke", token_id, "--config", str(config)).returncode == 0
        assert httpx.get(f"http://127.0.0.1:{port}/whoami", headers=auth).status_code == 401
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert '"event": "api.listening"' in err
    assert '"event": "request"' in err and token.split("_", 2)[2] not in err   # logs never hold secrets


def test_help_teaches_with_examples() -> None:
    for cmd in (["api", "serve"], ["api", "token"], ["subscribers", "import"], ["audit", "verify"], ["api", "keygen"]):
        r = he(*cmd, "--help")
        assert r.returncode == 0 and "hotline-edge " + " ".join(cmd[:1]) in r.stdout, cmd
