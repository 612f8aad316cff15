"""A throwaway Debian 12 container with systemd as PID 1, for applying the role for real.

    with NspawnContainer.boot(golden_rootfs()) as c:
        c.run(["systemctl", "is-system-running"])     # inside every namespace of the container
        c.init_pid                                    # for Ansible's community.docker.nsenter

``systemd-nspawn -b`` boots a copy of the golden tree with its own network namespace (loopback
only: nothing the tests start inside is reachable from the host's network, and nothing outside is
reachable from inside). This machine's PID 1 is not systemd, so ``--register=no --keep-unit`` are
required (otherwise nspawn wants the host's D-Bus). Commands enter the container with ``nsenter``
on the container's init PID. Stopping: SIGTERM to nspawn powers the container off cleanly; a
container that has not finished booting ignores it, so after a deadline the nspawn process is
killed (by its PID, never by name).

When nspawn cannot boot (no kernel support, no privileges) ``boot`` raises ``BootError`` with
nspawn's own output, and the tests fall back to a chroot apply and say so.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from types import TracebackType

from .rootfs import cache_dir, copy_tree_fn, remove_tree


class BootError(RuntimeError):
    """systemd-nspawn could not boot the tree; the message carries its log."""


def log(msg: str) -> None:
    print(f"[ops-container] {msg}", file=sys.stderr, flush=True)


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll PREDICATE until it returns a truthy value or TIMEOUT seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class NspawnContainer:
    def __init__(self, workdir: pathlib.Path, name: str) -> None:
        self.workdir = workdir
        self.root = workdir / "root"
        self.name = name
        self.boot_log = workdir / "boot.log"
        self.nspawn: subprocess.Popen[bytes] | None = None
        self.init_pid = 0

    # -- life cycle -------------------------------------------------------------------------
    @classmethod
    def boot(cls, golden: pathlib.Path, timeout: float = 90) -> NspawnContainer:
        runs = cache_dir() / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        workdir = pathlib.Path(tempfile.mkdtemp(prefix="run-", dir=runs))
        c = cls(workdir, f"hetest-{uuid.uuid4().hex[:8]}")
        started = time.monotonic()
        copy_tree_fn(golden, c.root)
        (c.root / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
        try:
            c._start(timeout)
        except BaseException:
            c.stop()
            raise
        log(f"{c.name} booted in {time.monotonic() - started:.1f} s (init pid {c.init_pid})")
        return c

    def _start(self, timeout: float) -> None:
        with self.boot_log.open("wb") as out:
            self.nspawn = subprocess.Popen(
                ["systemd-nspawn", "-D", str(self.root), "-M", self.name, "--register=no",
                 "--keep-unit", "--private-network", "-b", "--console=read-only"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        nspawn = self.nspawn

        def child() -> int:
            if nspawn.poll() is not None:
                raise BootError(f"systemd-nspawn exited with {nspawn.returncode}:\n{self.boot_output()}")
            try:
                kids = pathlib.Path(f"/proc/{nspawn.pid}/task/{nspawn.pid}/children").read_text().split()
            except OSError:
                return 0
            return int(kids[0]) if kids else 0

        self.init_pid = wait_for(child, timeout=30, what="the container's init process")

        last = ["(never answered)"]

        def booted() -> bool:
            # nspawn's first child can be its short-lived outer child, caught before it forked the
            # container's init and exited: follow nspawn's child as it is now (raises when nspawn died)
            pid = child()
            if pid:
                self.init_pid = pid
            r = self.run(["systemctl", "is-system-running"], check=False, timeout=10)
            state = r.stdout.strip()
            last[0] = f"{state or '(nothing)'} (exit {r.returncode}) {r.stderr.strip()}".strip()
            return state in {"running", "degraded"}

        try:
            wait_for(booted, timeout=timeout, interval=0.3, what="systemd in the container to finish booting")
        except TimeoutError as exc:
            # what systemd still waits for, so that a slow boot can be told from a stuck unit
            try:
                jobs = self.run(["systemctl", "list-jobs", "--no-pager"], check=False, timeout=10).stdout.strip()
            except subprocess.TimeoutExpired:
                jobs = "(systemctl list-jobs did not answer within 10 s)"
            raise BootError(f"{exc}; the last `systemctl is-system-running`: {last[0]}\n"
                            f"systemctl list-jobs:\n{jobs}\n{self.boot_output()}") from exc

    def boot_output(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.boot_log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no boot log)"

    def stop(self, timeout: float = 30) -> None:
        p = self.nspawn
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name}: nspawn (pid {p.pid}) ignored SIGTERM for {timeout:.0f} s; killing it")
                p.kill()
                p.wait(timeout=30)
        if os.environ.get("HOTLINE_EDGE_OPS_KEEP"):
            log(f"keeping {self.workdir} (HOTLINE_EDGE_OPS_KEEP is set)")
            return
        remove_tree(self.workdir)

    def __enter__(self) -> NspawnContainer:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- inside ------------------------------------------------------------------------------
    def run(self, argv: Sequence[str], check: bool = True, timeout: float = 120,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ARGV inside every namespace of the container (as root)."""
        r = subprocess.run(["nsenter", f"--target={self.init_pid}", "--all", "--", *argv],
                           capture_output=True, text=True, check=False, timeout=timeout, input=input,
                           env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
        if check and r.returncode != 0:
            raise subprocess.CalledProcessError(r.returncode, argv, r.stdout, r.stderr)
        return r


def nspawn_available() -> str | None:
    """None when systemd-nspawn and nsenter exist, else what is missing."""
    missing = [t for t in ("systemd-nspawn", "nsenter") if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not found (apt-get install systemd-container util-linux)"
    if os.geteuid() != 0:
        return "not root: systemd-nspawn needs root"
    return None
