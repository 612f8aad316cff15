"""The README's two set-up commands, as a newcomer runs them.

* The README's first code block holds exactly two commands: `scripts/demo` and `scripts/test`;
  `.ci/run` runs that same test command.
* `scripts/demo` (bootstrap, then `hotline-edge demo`) brings up the whole appliance on loopback:
  the signed demo feed verified and applied, the resolver enforcing it, blocked lookups in the
  SQLite log, the admin API answering the hotline token it prints. Checked here from the outside,
  with dnspython and HTTP against what the demo printed, while it runs.
* `scripts/test` treats pytest's exit 5 (nothing collected) as a failure.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def free_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            try:
                t.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(port)


def test_readme_starts_with_exactly_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```(?:sh|bash)?\n(.*?)```", text, re.S)
    assert first_block, "README.md has no code block"
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines() if line.strip()]
    assert commands == ["scripts/demo", "scripts/test"]
    assert text.index("```") < text.index("## What is here")       # the first section
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^exec scripts/test\s*$", ci, re.M), ci
    for script in ("scripts/demo", "scripts/test", ".ci/run"):
        assert os.access(ROOT / script, os.X_OK), f"{script} is not executable"


def test_scripts_demo_runs_the_whole_appliance(tmp_path: Path) -> None:
    dns_port, up_port, api_port = free_port(), free_port(), free_port()
    work = tmp_path / "demo"
    proc = subprocess.Popen([str(ROOT / "scripts" / "demo"), "--port", str(dns_port), "--upstream-port", str(up_port),
                             "--api-port", str(api_port), "--dir", str(work)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    out: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 240
        for line in proc.stdout:        # the guide ends with where the logs are
            out.append(line)
            if line.startswith("Logs of each component:") or time.monotonic() > deadline:
                break
        text = "".join(out)
        assert "Logs of each component:" in text, text
        token = re.search(r"export TOKEN=(\S+)", text)
        assert token, text

        # DNS from the outside: the signed feed's order, the local zone, an allowed name
        def ask(name: str) -> dns.message.Message:
            q = dns.message.make_query(name, "A", use_edns=0)
            return dns.query.udp(q, "127.0.0.1", port=dns_port, timeout=3)
        r = ask("csam-site.test.")
        assert r.rcode() == dns.rcode.NXDOMAIN
        ede = [o for o in r.options if o.otype == 15]
        assert ede and "TW-2026-0042" in ede[0].text
        assert ask("shop.fraud-ring.test.").rcode() == dns.rcode.NXDOMAIN
        ok = ask("www.example.test.")
        assert ok.rcode() == dns.rcode.NOERROR and "192.0.2.10" in ok.answer[0].to_text()
        # the hotline's view over HTTP with the printed token: in force, hits counted, no client data
        req = urllib.request.Request(f"http://127.0.0.1:{api_port}/hotline/orders/TW-2026-0042",
                                     headers={"Authorization": f"Bearer {token.group(1)}"})
        deadline = time.monotonic() + 10
        while True:
            with urllib.request.urlopen(req, timeout=5) as resp:
                body = resp.read().decode()
            status = json.loads(body)
            if status["hits_total"] >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status["active"] is True and status["hits_total"] >= 3, status
        assert "127.0.0.1" not in body
        # the blocked-lookup log on disk verifies
        verify = subprocess.run([str(ROOT / ".venv" / "bin" / "hotline-edge"), "log", "verify", "--json",
                                 "--config", str(work / "node" / "config.toml")],
                                capture_output=True, text=True, timeout=60, check=False)
        assert verify.returncode == 0, verify.stderr
        assert json.loads(verify.stdout)["records"] >= 3
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, "".join(out) + rest
    assert "stopping" in rest


def test_scripts_test_fails_when_nothing_is_collected() -> None:
    r = subprocess.run([str(ROOT / "scripts" / "test"), "tests/e2e/test_readme_commands.py",
                        "-k", "no_test_has_this_name"],
                       capture_output=True, text=True, timeout=600, check=False,
                       env={**os.environ, "HOTLINE_EDGE_SKIP_STATIC": "1"})
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    assert "collected no tests" in r.stdout


def test_demo_refuses_bad_options_before_starting_anything(tmp_path: Path) -> None:
    cli = [str(ROOT / ".venv" / "bin" / "hotline-edge"), "demo"]
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("operator's file")
    for args, says in ((["--port", "70000"], "70000 is not a port number"),
                       (["--port", "abc"], "'abc' is not a port number"),
                       (["--port", "5399", "--upstream-port", "5399"], "must differ"),
                       (["--dir", str(tmp_path / "used")], "is not empty")):
        r = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=60, check=False)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert says in r.stderr, (args, r.stderr)
    assert (tmp_path / "used" / "keep.txt").read_text() == "operator's file"     # nothing touched
    assert sorted(p.name for p in (tmp_path / "used").iterdir()) == ["keep.txt"]
