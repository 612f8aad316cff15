"""One real deployment of the role, shared by the tests in test_apply.py.

Tier 1 (the normal case): boot the golden tree with systemd as PID 1 in systemd-nspawn (private
network), reach it with Ansible's nsenter connection, then
  1. ``--check`` on the fresh host,  2. the first apply,  3. a second apply (must change nothing).
Tier 2 (only when nspawn cannot boot here): apply into a chroot of the golden tree with
``hotline_edge_manage_services=false`` (twice, for idempotence) and verify the installed units
offline against the real installed tree. The fallback is announced loudly on stderr and in every
test that needed a booted system; it is never silent.

The application under test comes from ``scripts/build-wheelhouse`` (this checkout), or from
``HOTLINE_EDGE_OPS_WHEELHOUSE`` (a prebuilt archive; useful to test the harness itself).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import sys
import tempfile
from collections.abc import Callable

from .ansible_run import REPO, PlaybookRun, run_playbook, write_inventory
from .container import BootError, NspawnContainer, nspawn_available
from .rootfs import (
    DEMO_UPSTREAM_PORT,
    FEED_TSIG_NAME,
    FEED_TSIG_SECRET,
    FEED_ZONE,
    cache_dir,
    copy_tree_fn,
    golden_rootfs,
    remove_tree,
)

HOST = "hetest"
API_LISTEN = "127.0.0.1:8080"
METRICS_LISTEN = "127.0.0.1:9153"
# The subcommands the units and the role call; each lands with its own part (docs/contracts.md).
REQUIRED_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("checkconf",), ("serve",), ("feed", "sync"), ("feed", "daemon"), ("api", "serve"),
    ("retention", "purge"),
)
# what an apply needs: checkconf validates the config, the handlers start the resolver and the API
APPLY_COMMANDS = ("checkconf", "serve", "api serve")
DEMO_POLICY = REPO / "rpz" / "data" / "demo-hotline.rpz"
DEMO_POLICY_ZONE = "hotline.rpz.test"
DEMO_EDE = 16
FEED_EDE = 17
FEED = "hotline-tw"


def loud(msg: str) -> None:
    bar = "!" * 100
    print(f"\n{bar}\n[ops] {msg}\n{bar}", file=sys.stderr, flush=True)


@dataclasses.dataclass
class Deployment:
    tier: str  # "nspawn" or "chroot"
    workdir: pathlib.Path
    wheelhouse: pathlib.Path
    missing_commands: list[str]
    compliance_key: str = ""
    # an API token made offline; the role provisions its entry (id and hash), the tests use the token
    api_token: str = ""
    api_token_entry: dict[str, str] = dataclasses.field(default_factory=dict)
    fallback_reason: str = ""
    container: NspawnContainer | None = None
    chroot: pathlib.Path | None = None
    runs: dict[str, PlaybookRun] = dataclasses.field(default_factory=dict)

    def run(self, argv: list[str], check: bool = False, timeout: float = 120,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        if self.container is not None:
            return self.container.run(argv, check=check, timeout=timeout, input=input)
        assert self.chroot is not None
        return subprocess.run(["chroot", str(self.chroot), *argv], capture_output=True, text=True,
                              check=check, timeout=timeout, input=input)

    def close(self) -> None:
        if self.container is not None:
            self.container.stop()
        if self.chroot is not None and not os.environ.get("HOTLINE_EDGE_OPS_KEEP"):
            remove_tree(self.chroot.parent)
        if not os.environ.get("HOTLINE_EDGE_OPS_KEEP"):
            remove_tree(self.workdir)


def missing_commands(run: Callable[[list[str]], int], cli: str) -> list[str]:
    """Subcommands the units need that this build's CLI does not have yet (RUN returns an exit code)."""
    return [" ".join(cmd) for cmd in REQUIRED_COMMANDS if run([cli, *cmd, "--help"]) != 0]


def _host_exit(argv: list[str]) -> int:
    return subprocess.run(argv, capture_output=True, check=False).returncode


def build_wheelhouse(dest: pathlib.Path) -> pathlib.Path:
    override = os.environ.get("HOTLINE_EDGE_OPS_WHEELHOUSE")
    if override:
        return pathlib.Path(override)
    out = dest / "hotline-edge-wheelhouse.tar"
    subprocess.run([str(REPO / "scripts" / "build-wheelhouse"), str(out)], check=True,
                   env={**os.environ, "HOTLINE_EDGE_BUILD_PYTHON": sys.executable})
    return out


def compliance_public_key() -> str:
    """A fresh X25519 public key (base64), as the compliance team would hand to operators."""
    import base64

    from nacl.public import PrivateKey
    return base64.b64encode(bytes(PrivateKey.generate().public_key)).decode()


def hostvars(dep: Deployment, **extra: object) -> dict[str, object]:
    """Host variables of the test host: everything on one node, the demo policy, the demo upstream."""
    if dep.container is not None:
        conn: dict[str, object] = {"ansible_connection": "community.docker.nsenter",
                                   "ansible_nsenter_pid": dep.container.init_pid}
    else:
        conn = {"ansible_connection": "community.general.chroot", "ansible_host": str(dep.chroot),
                "hotline_edge_manage_services": False}
    return {**_settings(dep), **conn, **extra}


def _settings(dep: Deployment) -> dict[str, object]:
    return {
        "ansible_python_interpreter": "/usr/bin/python3",
        "ansible_become": False,
        "hotline_edge_components": ["resolver", "feed", "retention", "api"],
        "hotline_edge_wheelhouse": str(dep.wheelhouse),
        "hotline_edge_listen": ["127.0.0.1:53", "[::1]:53"],
        "hotline_edge_allow": ["127.0.0.0/8", "::1/128"],
        "hotline_edge_upstreams": [f"127.0.0.1:{DEMO_UPSTREAM_PORT}"],
        "hotline_edge_workers": 0,  # one per core, as in production (SO_REUSEPORT workers under the sandbox)
        "hotline_edge_policy_files": [str(DEMO_POLICY)],
        # the feed first: the demo zone's rpz-ip rule covers 203.0.113.0/24, where the upstream
        # puts the feed's names too, and an earlier zone wins (draft section 5)
        "hotline_edge_policy_zones": [
            {"name": FEED_ZONE, "feed": FEED, "ede": FEED_EDE},
            {"name": DEMO_POLICY_ZONE, "file": DEMO_POLICY.name, "ede": DEMO_EDE,
             "ede_text": "blocked by order {order_ref}"},
        ],
        # the hotline's RPZ primary is NSD in the container, AXFR/IXFR with TSIG only
        "hotline_edge_tsig_keys": [{"name": FEED_TSIG_NAME, "algorithm": "hmac-sha256", "secret": FEED_TSIG_SECRET}],
        "hotline_edge_feeds": [{"name": FEED, "type": "xfr", "zone": FEED_ZONE,
                                "primaries": [f"127.0.0.1:{DEMO_UPSTREAM_PORT}"], "tsig_key": FEED_TSIG_NAME}],
        "hotline_edge_compliance_public_key": dep.compliance_key,
        "hotline_edge_api_listen": API_LISTEN,
        "hotline_edge_metrics_listen": METRICS_LISTEN,
        "hotline_edge_retention_days": 180,
        "hotline_edge_api_tokens": [dep.api_token_entry] if dep.api_token_entry else [],
    }


def offline_token() -> tuple[str, dict[str, str]]:
    """A hotline token as `hotline-edge api token make` makes it (cheap argon2 parameters: the node
    verifies with the parameters inside the hash)."""
    from datetime import UTC, datetime, timedelta

    from admin_api.roles import Role
    from admin_api.tokens import make_hasher, make_token
    return make_token(Role.HOTLINE, "analyst@hotline.test", datetime.now(UTC) + timedelta(days=7),
                      make_hasher(time_cost=1, memory_kib=1024), "provisioned by the role")


def deploy() -> Deployment:
    runs = cache_dir() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="deploy-", dir=runs))
    wheelhouse = build_wheelhouse(workdir)
    # the build under test is this checkout (installed editable in the venv running the tests);
    # after a successful apply the deployed CLI itself is asked (tests/ops/deploy.py:_apply)
    missing = [] if "HOTLINE_EDGE_OPS_WHEELHOUSE" in os.environ else \
        missing_commands(_host_exit, str(pathlib.Path(sys.executable).parent / "hotline-edge"))
    golden = golden_rootfs()
    dep = Deployment("nspawn", workdir, wheelhouse, missing, compliance_public_key())
    dep.api_token, dep.api_token_entry = offline_token()
    reason = nspawn_available()
    if os.environ.get("HOTLINE_EDGE_OPS_FORCE_CHROOT"):
        reason = "HOTLINE_EDGE_OPS_FORCE_CHROOT is set (exercising the fallback)"
    if reason is None:
        try:
            dep.container = NspawnContainer.boot(golden)
        except BootError as exc:
            reason = f"systemd-nspawn could not boot the golden tree: {exc}"
    if reason is not None:
        dep.tier, dep.fallback_reason = "chroot", reason
        loud(f"NSPAWN CANNOT BOOT HERE ({reason.splitlines()[0]}). Falling back to a chroot apply "
             "plus offline unit checks; the checks that need a running systemd are NOT run.")
        dep.chroot = workdir / "chroot" / "root"
        dep.chroot.parent.mkdir()
        copy_tree_fn(golden, dep.chroot)
    _apply(dep)
    return dep


def _apply(dep: Deployment) -> None:
    inv = dep.workdir / "inventory.yml"
    write_inventory(inv, HOST, hostvars(dep))
    dep.runs["check"] = run_playbook("check on a fresh host", inv, dep.workdir, "--check", "--diff")
    if any(c in dep.missing_commands for c in APPLY_COMMANDS):
        return  # the config cannot be validated nor the services started: the apply tests fail
    dep.runs["apply"] = run_playbook("first apply", inv, dep.workdir)
    if dep.runs["apply"].returncode == 0:
        dep.runs["again"] = run_playbook("second apply", inv, dep.workdir)
        dep.missing_commands = missing_commands(lambda argv: dep.run(argv).returncode,
                                                "/opt/hotline-edge/venv/bin/hotline-edge")
