"""Unbound with the hotline-edge plugin, started the way an operator runs it: ``unbound -d`` with the
module script of this checkout, Debian's ``unboundmodule`` on PYTHONPATH, our configuration file
named by HOTLINE_EDGE_CONFIG. High ports on 127.0.0.1, configuration written here, stopped by PID.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ..resolver.peers import REPO, Peer, answers, free_port, need, wait_until

UNBOUNDMODULE = "/usr/lib/python3/dist-packages/unboundmodule.py"
PLUGIN = REPO / "resolver" / "unbound_plugin.py"
MODULES = "validator python iterator"


def need_pythonmod() -> str:
    unbound = need("unbound")
    if not os.path.exists(UNBOUNDMODULE):
        pytest.skip("Unbound's pythonmod needs unboundmodule.py (Debian package python3-unbound)")
    return unbound


def plugin_config(workdir: Path, zones: list[dict[str, object]], *, extra: str = "") -> Path:
    """The hotline-edge configuration the plugin reads: [node], [resolver], [[policy.zone]]."""
    lines = ["[node]", 'id = "plugin-test"', f'state_dir = "{workdir}/state"', f'runtime_dir = "{workdir}/run"', "",
             "[resolver]", 'allow = ["127.0.0.0/8"]']
    if extra:
        lines.append(extra)
    for z in zones:
        lines += ["", "[[policy.zone]]"] + [f"{k} = {json.dumps(v)}" for k, v in z.items()]
    (workdir / "run").mkdir(parents=True, exist_ok=True)
    (workdir / "state").mkdir(parents=True, exist_ok=True)
    path = workdir / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def unbound_conf(workdir: Path, port: int, auth_port: int, *, modules: str = MODULES, extra: str = "") -> Path:
    conf = workdir / "unbound.conf"
    stubs = "".join(f'stub-zone:\n    name: "{z}"\n    stub-addr: 127.0.0.1@{auth_port}\n'
                    for z in ("example.", "walled.test.", "signed.example."))
    conf.write_text(f"""server:
    interface: 127.0.0.1
    port: {port}
    do-ip6: no
    access-control: 127.0.0.0/8 allow
    num-threads: 1
    username: ""
    chroot: ""
    directory: "{workdir}"
    pidfile: "{workdir}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    do-not-query-localhost: no
    module-config: "{modules}"
    ignore-cd-flag: yes
    minimal-responses: no
    qname-minimisation: no
    local-zone: "test." nodefault
{extra}
{stubs}
python:
    python-script: "{PLUGIN}"
remote-control:
    control-enable: no
""")
    return conf


def start_plugin(workdir: Path, auth_port: int, config: Path, *, modules: str = MODULES, extra: str = "",
                 env: dict[str, str] | None = None, wait: bool = True) -> Peer:
    """Unbound + plugin on a free port; waits until it answers (unless ``wait`` is False)."""
    unbound = need_pythonmod()
    port = free_port()
    conf = unbound_conf(workdir, port, auth_port, modules=modules, extra=extra)
    hits = workdir / "hits.jsonl"
    e = {k: v for k, v in os.environ.items() if k not in ("HOTLINE_EDGE_VENV", "VIRTUAL_ENV")}
    e.update({"PYTHONPATH": os.path.dirname(UNBOUNDMODULE), "HOTLINE_EDGE_CONFIG": str(config),
              "HOTLINE_EDGE_HIT_SINK": "tests.integration.unbound_plugin.filesink:factory",
              "HOTLINE_EDGE_TEST_HITS": str(hits)})
    e.update(env or {})
    log = workdir / "unbound.log"
    proc = subprocess.Popen([unbound, "-d", "-c", str(conf)], stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            env=e, cwd=str(workdir))
    peer = Peer("unbound+plugin", port, proc, workdir, log,
                extra={"control": str(workdir / "run" / "control.sock"), "hits": hits})
    if wait:
        wait_until(lambda: answers(port, "www.example."), 60, "unbound with the plugin", proc, log)
    return peer


def read_hits(peer: Peer) -> list[dict[str, object]]:
    path = Path(str(peer.extra["hits"]))
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def log_events(peer: Peer) -> list[dict[str, object]]:
    out = []
    for line in peer.log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out
