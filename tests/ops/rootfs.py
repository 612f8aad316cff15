"""The golden Debian 12 root file system the ops tests boot, built once and cached.

    python -m tests.ops.rootfs            # build (or find) it and print its path
    python -m tests.ops.rootfs --rebuild  # throw the cached one away first

The cache lives outside the repository (``/var/cache/hotline-edge-test`` unless
``HOTLINE_EDGE_TEST_CACHE`` says otherwise), one directory per key: the key is a hash of the
package list and of the customisation below, so changing either builds a new tree and an old tree
is never reused by mistake. A tree is built in a temporary directory and renamed into place only
when complete, so an interrupted build leaves nothing that looks usable.

What is in it, and why:
- systemd, systemd-sysv, dbus: systemd as PID 1 in ``systemd-nspawn -b``; dbus for ``systemctl``
  and ``systemd-analyze security`` (online) inside the container.
- python3, python3-venv, python3-apt: what the role needs on a node (Ansible's own Python, the
  application venv, the apt module) without network access inside the container.
- procps, iproute2: what a Debian server has and what the units' reload path and operators use.
- nsd: the demo upstream for the functional checks (an authoritative server on 127.0.0.1:5300
  serving the synthetic ``test.`` zone below); it never listens on port 53 in this image.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

SUITE = "bookworm"
PACKAGES: tuple[str, ...] = (
    "systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "python3-apt",
    "procps", "iproute2", "nsd",
)
HOST_PACKAGES: tuple[str, ...] = ("debootstrap", "systemd-container")
DEFAULT_CACHE = "/var/cache/hotline-edge-test"

# NSD on 127.0.0.1:5300 (and nothing else) plays two parts: the demo upstream, authoritative for
# test., and the hotline's RPZ primary for the feed rpz.hotline-tw.test, transferred only with TSIG.
# (NSD refuses a TXT beside a CNAME, so this feed's rules carry no order reference.)
DEMO_UPSTREAM_PORT = 5300
FEED_ZONE = "rpz.hotline-tw.test"
FEED_TSIG_NAME = "hotline-tw"
FEED_TSIG_SECRET = "c3ludGhldGljLW9wcy10ZXN0LXRzaWcta2V5LTAwMDAwMDE="  # synthetic, test only
NSD_CONF = f"""\
# Demo upstream and demo RPZ primary for the hotline-edge ops tests (synthetic data only).
server:
    ip-address: 127.0.0.1@{DEMO_UPSTREAM_PORT}
    ip-address: ::1@{DEMO_UPSTREAM_PORT}
    do-ip6: yes
    zonesdir: "/etc/nsd"
    username: nsd
remote-control:
    control-enable: no
key:
    name: "{FEED_TSIG_NAME}"
    algorithm: hmac-sha256
    secret: "{FEED_TSIG_SECRET}"
zone:
    name: "test."
    zonefile: "test.zone"
zone:
    name: "{FEED_ZONE}."
    zonefile: "{FEED_ZONE}.zone"
    provide-xfr: 127.0.0.1 {FEED_TSIG_NAME}
    provide-xfr: ::1 {FEED_TSIG_NAME}
"""
FEED_ZONE_TEXT = f"""\
$ORIGIN {FEED_ZONE}.
$TTL 60
@   SOA ns.hotline-tw.test. noc.hotline-tw.test. ( 1 60 30 86400 60 )
    NS  localhost.
feed-blocked.test   CNAME .
"""
DEMO_ZONE = """\
$ORIGIN test.
$TTL 300
@       SOA ns.test. noc.test. ( 2026112201 3600 600 86400 300 )
        NS  ns.test.
ns      A   127.0.0.1
; allowed names: the resolver relays these answers unchanged
allowed           A     192.0.2.10
www.allowed       A     192.0.2.11
; names under takedown orders in the demo policy: the upstream knows them, the resolver must not
; hand them out
csam-site         A     203.0.113.66
www.csam-site     A     203.0.113.66
fraud-shop        A     203.0.113.77
; the stop page the walled-garden action points to
stop.hotline-edge A     192.0.2.80
; blocked through the feed (rpz.hotline-tw.test), and one the tests add to the feed later
feed-blocked      A     203.0.113.88
feed-later        A     203.0.113.89
"""

# (path inside the tree, content): the customisation after debootstrap. Part of the cache key.
CUSTOMISATION: tuple[tuple[str, str], ...] = (
    ("etc/nsd/nsd.conf", NSD_CONF),
    ("etc/nsd/test.zone", DEMO_ZONE),
    (f"etc/nsd/{FEED_ZONE}.zone", FEED_ZONE_TEXT),
    ("etc/hostname", "hotline-edge-test\n"),
    # no getty on the container console: nothing waits for a terminal
    ("etc/systemd/system/console-getty.service", ""),
    ("etc/systemd/system/getty@.service", ""),
)


class RootfsError(RuntimeError):
    """The golden root file system could not be built; the message says which step and why."""


def cache_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("HOTLINE_EDGE_TEST_CACHE", DEFAULT_CACHE))


def cache_key() -> str:
    h = hashlib.sha256()
    h.update(SUITE.encode())
    h.update("\0".join(PACKAGES).encode())
    for path, content in CUSTOMISATION:
        h.update(b"\0" + path.encode() + b"\0" + content.encode())
    return h.hexdigest()[:16]


def log(msg: str) -> None:
    print(f"[ops-rootfs] {msg}", file=sys.stderr, flush=True)


def ensure_host_packages() -> None:
    """Install debootstrap and systemd-container with apt when a tool is missing (needs root)."""
    missing = [p for p in HOST_PACKAGES if not _deb_installed(p)]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RootfsError(f"missing Debian packages {missing}: run as root on Debian, or "
                          f"apt-get install {' '.join(missing)}")
    log(f"installing {' '.join(missing)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], env=env, check=False, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
                   env=env, check=True, stdout=subprocess.DEVNULL)


def _deb_installed(pkg: str) -> bool:
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True,
                       check=False)
    return r.returncode == 0 and "ok installed" in r.stdout


def mounts_under(path: pathlib.Path) -> list[str]:
    """Mount points below PATH, deepest first (debootstrap leaves proc/sys mounted when it fails)."""
    prefix = str(path.resolve()) + "/"
    points = []
    for line in pathlib.Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        if point.startswith(prefix):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def remove_tree(path: pathlib.Path) -> None:
    """rm -rf that first unmounts anything mounted inside, so it never descends into /proc or /sys."""
    for point in mounts_under(path):
        subprocess.run(["umount", "-l", point], check=False)
    if mounts_under(path):
        raise RootfsError(f"{path}: still has mounts inside; not removing it (umount them by hand)")
    shutil.rmtree(path, ignore_errors=True)


def copy_tree_fn(src: pathlib.Path, dest: pathlib.Path) -> None:
    """Copy a tree with owners, modes, links and device nodes (reflinks where the FS has them)."""
    subprocess.run(["cp", "-a", "--reflink=auto", str(src), str(dest)], check=True)


def mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 or one-line sources)."""
    for path in sorted(pathlib.Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in path.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    src = pathlib.Path("/etc/apt/sources.list")
    if src.exists():
        for line in src.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "security" not in parts[1]:
                return parts[1]
    return "http://deb.debian.org/debian"


def golden_rootfs(rebuild: bool = False) -> pathlib.Path:
    """Return the cached golden tree, building it first when it is missing (~60-90 s)."""
    ensure_host_packages()
    base = cache_dir()
    target = base / f"rootfs-{SUITE}-{cache_key()}"
    if rebuild and target.exists():
        remove_tree(target)
    if (target / ".complete").exists():
        os.utime(target / ".complete")  # last use, for pruning
        return target
    base.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="build-", dir=base))
    started = time.monotonic()
    log(f"building {target} with debootstrap from {mirror()} (one-off, about a minute)")
    cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
           str(tmp / "root"), mirror()]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        remove_tree(tmp)
        tail = "\n".join((r.stdout + r.stderr).splitlines()[-15:])
        raise RootfsError(f"debootstrap failed (exit {r.returncode}):\n{tail}")
    root = tmp / "root"
    for rel, content in CUSTOMISATION:
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink() or dest.exists():
            dest.unlink()
        if content == "" and rel.startswith("etc/systemd/system/"):
            dest.symlink_to("/dev/null")  # masked
        else:
            dest.write_text(content)
    # apt caches are not needed in the image
    for p in (root / "var/cache/apt/archives").glob("*.deb"):
        p.unlink()
    (root / ".complete").write_text(f"{cache_key()}\n")
    if target.exists():
        remove_tree(target)
    root.rename(target)
    remove_tree(tmp)
    log(f"built {target} in {time.monotonic() - started:.0f} s")
    prune(base, keep=target)
    return target


def prune(base: pathlib.Path, keep: pathlib.Path, max_age_days: float = 14) -> None:
    """Remove golden trees of other keys unused for MAX_AGE_DAYS, and test runs older than a day
    (left behind by an interrupted test; finished runs remove themselves)."""
    now = time.time()
    for tree in base.glob("rootfs-*"):
        stamp = tree / ".complete"
        if tree != keep and (not stamp.exists() or now - stamp.stat().st_mtime > max_age_days * 86400):
            log(f"pruning unused {tree}")
            remove_tree(tree)
    for run in (base / "runs").glob("*"):
        if now - run.stat().st_mtime > 86400:
            log(f"pruning stale test run {run}")
            remove_tree(run)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rebuild", action="store_true", help="discard the cached tree and build it again")
    args = p.parse_args(argv)
    try:
        print(golden_rootfs(rebuild=args.rebuild))
    except RootfsError as exc:
        log(str(exc))
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
