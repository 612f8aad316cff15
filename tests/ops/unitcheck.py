"""Offline checks of the systemd units in ``systemd/`` (no running systemd needed).

    python -m tests.ops.unitcheck systemd/          # exit 1 on any problem, every problem listed

- ``systemd-analyze verify --recursive-errors=no`` against a throwaway root that holds a copy of
  the host's unit tree, stub executables for every ``Exec*=`` path and our units: warnings fail.
- ``systemd-analyze security --offline=true`` of every service: the exposure must be <= 1.5.
- every ``OnCalendar=`` of every timer parses with ``systemd-analyze calendar``.

systemd 252 notes (ops-conventions research): ``--threshold`` takes an integer on the 0-100 scale;
verify needs ``--man=no`` and a real copy (not a symlink) of /usr/lib/systemd/system under --root.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable

MAX_EXPOSURE = 1.5
_EXEC = re.compile(r"^Exec[A-Za-z]*=[-+!@:]*(/\S+)", re.M)
_OVERALL = re.compile(r"Overall exposure level for \S+: (\d+\.\d)")


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    unit: str
    check: str
    detail: str

    def __str__(self) -> str:
        return f"{self.unit}: {self.check}: {self.detail}"


def unit_files(src: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in src.iterdir() if p.suffix in {".service", ".timer", ".socket", ".target"})


def directives(path: pathlib.Path, key: str) -> list[str]:
    """Values of KEY= in a unit file, in order (no continuation lines are used in ours)."""
    out = []
    for line in path.read_text().splitlines():
        if line.startswith(f"{key}="):
            out.append(line.split("=", 1)[1].strip())
    return out


def fake_root(units: Iterable[pathlib.Path], dest: pathlib.Path) -> None:
    """A minimal tree for ``systemd-analyze verify --root``: host units, stub binaries, our units."""
    (dest / "etc/systemd/system").mkdir(parents=True)
    (dest / "usr/lib/systemd").mkdir(parents=True)
    (dest / "usr/bin").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", dest / "usr/lib/systemd/system", symlinks=True)
    (dest / "lib").symlink_to("usr/lib")
    (dest / "bin").symlink_to("usr/bin")
    units = list(units)
    for unit in units:
        for binary in _EXEC.findall(unit.read_text()):
            target = dest / binary.lstrip("/")
            if target.exists() or target.is_symlink():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("#!/bin/sh\n")
            target.chmod(0o755)
        shutil.copy(unit, dest / "etc/systemd/system" / unit.name)


def verify(units: list[pathlib.Path], root: pathlib.Path | None = None) -> list[Problem]:
    """Run systemd-analyze verify; with ROOT=None a fake root is built from the unit files."""
    names = [u.name for u in units]
    with tempfile.TemporaryDirectory(prefix="unitcheck-") as tmp:
        if root is None:
            root = pathlib.Path(tmp)
            fake_root(units, root)
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", "--recursive-errors=no",
                            f"--root={root}", *names], capture_output=True, text=True, check=False)
    text = (r.stdout + r.stderr).strip()
    if r.returncode == 0 and not text:
        return []
    return [Problem(",".join(names), "systemd-analyze verify", text or f"exit {r.returncode}")]


def exposure(unit: pathlib.Path) -> float:
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
                       capture_output=True, text=True, check=False)
    m = _OVERALL.search(r.stdout)
    if not m:
        raise RuntimeError(f"{unit}: no exposure in systemd-analyze output:\n{r.stdout}{r.stderr}")
    return float(m.group(1))


def security(units: list[pathlib.Path], limit: float = MAX_EXPOSURE) -> list[Problem]:
    problems = []
    for unit in units:
        if unit.suffix != ".service":
            continue
        score = exposure(unit)
        if score > limit:
            problems.append(Problem(unit.name, "systemd-analyze security --offline=true",
                                    f"exposure {score} > {limit}"))
    return problems


def calendar_spec_ok(spec: str) -> tuple[bool, str]:
    r = subprocess.run(["systemd-analyze", "calendar", "--iterations=2", spec], capture_output=True,
                       text=True, check=False)
    return r.returncode == 0, (r.stdout + r.stderr).strip()


def calendars(units: list[pathlib.Path]) -> list[Problem]:
    problems = []
    for unit in units:
        if unit.suffix != ".timer":
            continue
        for spec in directives(unit, "OnCalendar"):
            ok, out = calendar_spec_ok(spec)
            if not ok:
                problems.append(Problem(unit.name, "systemd-analyze calendar", f"{spec!r}: {out}"))
    return problems


def check_dir(src: pathlib.Path) -> list[Problem]:
    units = unit_files(src)
    return verify(units) + security(units) + calendars(units)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tests.ops.unitcheck UNIT_DIR", file=sys.stderr)
        return 2
    src = pathlib.Path(args[0])
    units = unit_files(src)
    for unit in units:
        if unit.suffix == ".service":
            print(f"{unit.name}: exposure {exposure(unit)}")
    problems = check_dir(src)
    for p in problems:
        print(p, file=sys.stderr)
    print(f"{len(units)} units checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
