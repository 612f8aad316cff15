"""Running the playbook from the tests: inventory for a test host, the run itself, the recap.

The controller is this repository's venv (ansible from the ``ops`` extra, which also brings the
collections the tests use: community.docker for the nsenter connection, community.general for
chroot). The role itself uses only ansible.builtin.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import subprocess
import sys
import time
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
_RECAP = re.compile(r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
                    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)", re.M)


@dataclasses.dataclass(frozen=True, slots=True)
class Recap:
    ok: int
    changed: int
    unreachable: int
    failed: int


@dataclasses.dataclass(frozen=True, slots=True)
class PlaybookRun:
    label: str
    argv: tuple[str, ...]
    returncode: int
    output: str
    seconds: float
    recap: dict[str, Recap]

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])

    def explain(self) -> str:
        return (f"{self.label}: exit {self.returncode} after {self.seconds:.0f} s\n"
                f"$ {' '.join(self.argv)}\n{self.tail()}")

    def changed_tasks(self) -> list[str]:
        """Task headers followed by a 'changed:' line (for idempotence failures)."""
        out, task = [], ""
        for line in self.output.splitlines():
            if line.startswith(("TASK [", "RUNNING HANDLER [")):
                task = line.rstrip(" *")
            elif line.startswith("changed:") and task:
                out.append(f"{task} {line}")
        return out


def ansible_bin(name: str) -> str:
    return str(pathlib.Path(sys.executable).parent / name)


def write_inventory(path: pathlib.Path, host: str, hostvars: dict[str, Any],
                    group: str = "hotline_edge_resolvers") -> None:
    """YAML is a superset of JSON: the inventory is written as JSON, no YAML library needed."""
    inv = {"hotline_edge": {"children": {group: {"hosts": {host: hostvars}}}}}
    path.write_text(json.dumps(inv, indent=2))


def run_playbook(label: str, inventory: pathlib.Path, log_dir: pathlib.Path, *extra: str,
                 playbook: str = "site.yml", timeout: float = 600) -> PlaybookRun:
    argv = (ansible_bin("ansible-playbook"), "-i", str(inventory), playbook, *extra)
    env = {**os.environ,
           "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
           "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_HOST_KEY_CHECKING": "0",
           "ANSIBLE_LOCAL_TEMP": str(log_dir / "ansible-tmp"),
           "PATH": f"{pathlib.Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    started = time.monotonic()
    r = subprocess.run(argv, cwd=ANSIBLE_DIR, env=env, capture_output=True, text=True,
                       timeout=timeout, check=False)
    seconds = time.monotonic() - started
    output = r.stdout + r.stderr
    (log_dir / f"{label.replace(' ', '-')}.log").write_text(output)
    recap = {m["host"]: Recap(int(m["ok"]), int(m["changed"]), int(m["unreachable"]), int(m["failed"]))
             for m in _RECAP.finditer(r.stdout)}
    print(f"[ops-ansible] {label}: exit {r.returncode} in {seconds:.0f} s {recap}", file=sys.stderr, flush=True)
    return PlaybookRun(label, argv, r.returncode, output, seconds, recap)
