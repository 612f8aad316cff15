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


def serve_api(config: Path) -> tuple[int, subprocess.Popen[str]]:
    """`hotline-edge api serve` on a free loopback port, once it answers /healthz."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "admin_api.cli", "api", "serve", "--config", str(config),
                             "--listen", f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)

    def up() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False
    try:
        wait_until(up, 30, "api serve to answer /healthz")
    except BaseException:
        proc.kill()
        proc.communicate(timeout=30)
        raise
    return port, proc


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

    port, proc = serve_api(config)
    try:
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


def test_tokens_made_offline_are_provisioned_by_hash_idempotently_and_revoked(tmp_path: Path, config: Path) -> None:
    import json
    made = he("api", "token", "make", "--role", "hotline", "--subject", "analyst@hotline.test", "--ttl", "30d")
    assert made.returncode == 0, made.stderr
    out = json.loads(made.stdout)
    token, entry = out["token"], out["entry"]
    assert token.startswith(f"hle_{entry['id']}_") and token.split("_", 2)[2] not in json.dumps(entry)
    assert not (tmp_path / "compliance.sqlite").exists()            # made offline: nothing stored
    vault = tmp_path / "api-tokens.json"
    vault.write_text(json.dumps([entry]))

    def provision() -> dict:  # type: ignore[type-arg]
        r = he("api", "token", "provision", "--config", str(config), str(vault))
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)  # type: ignore[no-any-return]

    assert provision() == {"added": [entry["id"]], "revoked": [], "unchanged": [], "changed": True}
    assert provision() == {"added": [], "revoked": [], "unchanged": [entry["id"]], "changed": False}

    port, proc = serve_api(config)
    try:
        auth = {"Authorization": f"Bearer {token}"}
        who = httpx.get(f"http://127.0.0.1:{port}/whoami", headers=auth)
        assert who.status_code == 200 and who.json()["role"] == "hotline", who.text
        wrong = {"Authorization": f"Bearer hle_{entry['id']}_{'x' * 43}"}             # right id, wrong secret
        assert httpx.get(f"http://127.0.0.1:{port}/whoami", headers=wrong).status_code == 401
        vault.write_text(json.dumps([{**entry, "state": "revoked"}]))
        assert provision() == {"added": [], "revoked": [entry["id"]], "unchanged": [], "changed": True}
        assert httpx.get(f"http://127.0.0.1:{port}/whoami", headers=auth).status_code == 401
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    with sqlite3.connect(tmp_path / "compliance.sqlite") as conn:
        kinds = [k for (k,) in conn.execute("SELECT kind FROM audit WHERE kind LIKE 'token.%' ORDER BY rowid")]
    assert kinds == ["token.provisioned", "token.revoked"]


def test_token_provision_refuses_a_bad_file_naming_each_problem_and_changes_nothing(tmp_path: Path,
                                                                                     config: Path) -> None:
    import json
    entry = json.loads(he("api", "token", "make", "--role", "auditor", "--subject", "audit-team",
                          "--ttl", "2d").stdout)["entry"]
    bad = [entry, {"id": "XYZ", "role": "boss", "subject": "s", "hash": "plain", "expires": "2026-01-01",
                   "colour": "red"}, {**entry, "hash": entry["hash"]}]
    f = tmp_path / "tokens.json"
    f.write_text(json.dumps(bad))
    r = he("api", "token", "provision", "--config", str(config), str(f))
    assert r.returncode == 2
    for problem in (f"{f}[1].colour: unknown key", f"{f}[1].id: 'XYZ' is not 16 lowercase hex digits",
                    f"{f}[1].role: 'boss' is not one of", f"{f}[1].hash: not an argon2 hash string",
                    f"{f}[1].expires: '2026-01-01' has no time zone", f"{f}[2].id: {entry['id']} is listed twice"):
        assert problem in r.stderr, (problem, r.stderr)
    f.write_text(json.dumps([{**entry, "expires": "2099-01-01T00:00:00Z"}]))
    r = he("api", "token", "provision", "--config", str(config), str(f))
    assert r.returncode == 2 and f"{f}[0].expires: 2099-01-01T00:00:00Z is more than" in r.stderr
    f.write_text("[{")
    r = he("api", "token", "provision", "--config", str(config), str(f))
    assert r.returncode == 2 and f"{f}:1:3: not JSON" in r.stderr
    with sqlite3.connect(tmp_path / "compliance.sqlite") as conn:      # nothing accepted from any bad file
        assert conn.execute("SELECT COUNT(*) FROM tokens").fetchone()[0] == 0
    f.write_text(json.dumps([entry]))
    assert he("api", "token", "provision", "--config", str(config), str(f)).returncode == 0
    f.write_text(json.dumps([{**entry, "role": "officer"}]))                       # never changed in place
    r = he("api", "token", "provision", "--config", str(config), str(f))
    assert r.returncode == 2 and f"token {entry['id']} exists with another role" in r.stderr
