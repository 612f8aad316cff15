"""Static checks of ansible/ (issue 7): syntax, ansible-lint production profile, the rendered
config of the example fleet, the role's preflight refusals, and that the role, the argument spec
and the unit files agree with each other. No host is contacted (connection local, render only).
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import tomllib

import pytest

from .ansible_run import ANSIBLE_DIR, REPO, ansible_bin
from .unitcheck import directives, unit_files

ROLE = ANSIBLE_DIR / "roles" / "hotline_edge"
EXAMPLE = ANSIBLE_DIR / "inventory" / "example" / "hosts.yml"
RENDER = pathlib.Path(__file__).parent / "render.yml"

pytestmark = pytest.mark.timeout(300)


def ansible(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "PATH": f"{pathlib.Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    return subprocess.run([ansible_bin(tool), *args], cwd=ANSIBLE_DIR, env=env, capture_output=True,
                          text=True, check=False, timeout=240)


def render(tmp_path: pathlib.Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return ansible("ansible-playbook", "-i", str(EXAMPLE), str(RENDER), "-e", f"render_dir={tmp_path}",
                   "-e", f"hotline_edge_wheelhouse={REPO / 'pyproject.toml'}", *extra)


def yaml_load(path: pathlib.Path) -> object:
    import yaml  # comes with ansible-core
    return yaml.safe_load(path.read_text())


def test_playbook_syntax_check() -> None:
    r = ansible("ansible-playbook", "--syntax-check", "-i", str(EXAMPLE), "site.yml")
    assert r.returncode == 0, r.stdout + r.stderr


def test_ansible_lint_production_profile() -> None:
    r = ansible("ansible-lint", "--profile", "production", "--offline")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Profile 'production' was required, and it passed" in r.stdout + r.stderr


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:  # type: ignore[type-arg]
    out = tmp_path_factory.mktemp("render")
    r = render(out)
    assert r.returncode == 0, r.stdout + r.stderr
    return {p.stem: tomllib.loads(p.read_text()) for p in out.glob("*.toml")}


def test_example_fleet_renders_valid_toml_for_every_host(rendered: dict[str, dict]) -> None:  # type: ignore[type-arg]
    assert set(rendered) == {"edge-tpe-1", "edge-tpe-2", "edge-khh-1", "edge-admin-1"}


def test_resolver_node_config(rendered: dict[str, dict]) -> None:  # type: ignore[type-arg]
    c = rendered["edge-tpe-1"]
    assert c["node"]["id"] == "edge-tpe-1"
    assert c["resolver"]["listen"] == ["192.0.2.11:53", "[2001:db8:11::53]:53"]
    assert "0.0.0.0/0" not in c["resolver"]["allow"] and c["resolver"]["allow"]
    assert [z["name"] for z in c["policy"]["zone"]] == ["local.rpz.test", "rpz.hotline-tw.test", "rpz.hotline-hk.test"]
    assert c["policy"]["zone"][0]["file"] == "/etc/hotline-edge/policy/local-exceptions.rpz"
    feeds = {f["name"]: f for f in c["feed"]}
    assert feeds["hotline-tw"]["tsig_name"] == "hotline-tw"
    assert feeds["hotline-tw"]["tsig_algorithm"] == "hmac-sha256"
    assert feeds["hotline-tw"]["tsig_secret_file"] == "/etc/hotline-edge/tsig/hotline-tw.secret"
    assert "tsig_secret" not in feeds["hotline-tw"], "secrets stay out of config.toml"
    assert feeds["hotline-hk"]["url"] == "https://bundles.hotline-hk.test/metadata/"
    assert feeds["hotline-hk"]["trusted_root"] == "/etc/hotline-edge/trust/hotline-hk-root.json"
    assert c["blocklog"]["retention_days"] == 180
    assert "api" not in c


def test_admin_node_config(rendered: dict[str, dict]) -> None:  # type: ignore[type-arg]
    c = rendered["edge-admin-1"]
    assert c["api"]["listen"] == "127.0.0.1:8080"
    assert c["api"]["signing_key"] == "/etc/hotline-edge/keys/package-ed25519.pem"
    assert c["api"]["compliance_private_key"] == "/etc/hotline-edge/keys/compliance-x25519.key"
    assert c["api"]["cgnat_pools"] == ["203.0.113.0/24"]
    assert "resolver" not in c and "feed" not in c


@pytest.mark.parametrize(("extra", "message"), [
    ('{"hotline_edge_mode": "unbound_plugin", "hotline_edge_components": ["feed", "retention"]}',
     "unbound_plugin runs the policy inside Unbound"),
    ('{"hotline_edge_allow": ["0.0.0.0/0"]}', "must list the customer prefixes"),
    ('{"hotline_edge_tsig_keys": [{"name": "hotline-tw", "algorithm": "hmac-md5", "secret": "eA=="}]}',
     "Check the TSIG keys"),
    ("hotline_edge_wheelhouse=/nonexistent/wheelhouse.tar", "scripts/build-wheelhouse"),
])
def test_preflight_refuses_unsafe_or_impossible_settings(tmp_path: pathlib.Path, extra: str, message: str) -> None:
    r = render(tmp_path, "--limit", "edge-tpe-1", "-e", extra)
    assert r.returncode != 0
    assert message.replace("\n", " ") in re.sub(r"\s+", " ", r.stdout + r.stderr)
    assert "c3ludGhldGljLWV4YW1wbGUtdHNpZy1zZWNyZXQtMDAwMQ" not in r.stdout + r.stderr, "TSIG secret in the output"


def test_argument_spec_documents_every_default() -> None:
    defaults = yaml_load(ROLE / "defaults" / "main.yml")
    spec = yaml_load(ROLE / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]  # type: ignore[index]
    assert isinstance(defaults, dict)
    assert set(defaults) == set(spec), set(defaults) ^ set(spec)


def test_role_paths_match_the_unit_files() -> None:
    rvars = yaml_load(ROLE / "vars" / "main.yml")
    assert isinstance(rvars, dict)
    units = unit_files(REPO / "systemd")
    listed = {u for us in rvars["hotline_edge_units_by_component"].values() for u in us}
    assert listed == {u.name for u in units}, "every unit in systemd/ is installed by the role"
    for unit in units:
        for line in directives(unit, "ExecStart") + directives(unit, "ExecStartPre"):
            assert line.startswith(rvars["hotline_edge_cli"] + " "), f"{unit.name}: {line}"
        for line in directives(unit, "Environment"):
            assert line == f"HOTLINE_EDGE_CONFIG={rvars['hotline_edge_config']}", f"{unit.name}: {line}"
        if unit.suffix == ".service":
            assert directives(unit, "User") == [rvars["hotline_edge_user"]]


def _materialise(rendered_text: str, etc: pathlib.Path) -> str:
    """The files the example config names, under ETC instead of /etc/hotline-edge."""
    files = ANSIBLE_DIR / "inventory" / "example" / "files"
    for sub in ("policy", "trust", "tsig", "keys"):
        (etc / sub).mkdir(parents=True, exist_ok=True)
    (etc / "policy" / "local-exceptions.rpz").write_text((files / "local-exceptions.rpz").read_text())
    (etc / "trust" / "hotline-hk-root.json").write_text((files / "hotline-hk-root.json").read_text())
    vault = yaml_load(ANSIBLE_DIR / "inventory" / "example" / "group_vars" / "hotline_edge_resolvers" / "vault.yml")
    assert isinstance(vault, dict)
    (etc / "tsig" / "hotline-tw.secret").write_text(vault["vault_hotline_edge_tsig_hotline_tw"] + "\n")
    return rendered_text.replace("/etc/hotline-edge/", f"{etc}/")


@pytest.mark.parametrize("host", ["edge-tpe-1", "edge-admin-1"])
def test_example_config_passes_checkconf(host: str, rendered: dict[str, dict], tmp_path: pathlib.Path) -> None:  # type: ignore[type-arg]
    """The role's rendered config is accepted by the application's own validator (no key drift)."""
    source = tmp_path / "rendered"
    source.mkdir()
    r = render(source, "--limit", host)
    assert r.returncode == 0, r.stdout + r.stderr
    conf = tmp_path / "config.toml"
    conf.write_text(_materialise((source / f"{host}.toml").read_text(), tmp_path / "etc"))
    cli = pathlib.Path(sys.executable).parent / "hotline-edge"
    out = subprocess.run([str(cli), "checkconf", str(conf)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def _unbound_checkconf() -> str | None:
    for p in ("/usr/sbin/unbound-checkconf", "/usr/bin/unbound-checkconf"):
        if os.path.exists(p):
            return p
    return None


def test_unbound_plugin_mode_renders_unbound_settings_and_a_plugin_config(tmp_path: pathlib.Path) -> None:
    """hotline_edge_mode=unbound_plugin: config.toml without the forwarder's keys, accepted by the
    plugin's checkconf; the Unbound snippet has the settings the plugin requires and passes
    unbound-checkconf; the unbound.service drop-in names the config and the venv."""
    r = render(tmp_path, "--limit", "edge-tpe-1", "-e", "hotline_edge_mode=unbound_plugin",
               "-e", '{"hotline_edge_upstreams": []}')
    assert r.returncode == 0, r.stdout + r.stderr
    text = (tmp_path / "edge-tpe-1.toml").read_text()
    c = tomllib.loads(text)
    assert "upstreams" not in c["resolver"] and "listen" not in c["resolver"]
    assert c["resolver"]["allow"] and c["policy"]["zone"][0]["name"] == "local.rpz.test"
    assert c["blocklog"]["path"] == "/var/lib/hotline-edge/blocklog/blocklog.sqlite"
    conf = tmp_path / "config.toml"
    conf.write_text(_materialise(text, tmp_path / "etc"))
    out = subprocess.run([sys.executable, "-m", "resolver.unbound_runtime", "checkconf", str(conf)], cwd=REPO,
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    # the resolver's own checkconf would demand upstreams: the role validates with the plugin's
    cli = pathlib.Path(sys.executable).parent / "hotline-edge"
    own = subprocess.run([str(cli), "checkconf", str(conf)], capture_output=True, text=True, check=False)
    assert own.returncode != 0 and "upstream" in own.stdout + own.stderr

    snippet = (tmp_path / "edge-tpe-1.unbound.conf").read_text()
    for line in ('module-config: "validator python iterator"', "ignore-cd-flag: yes", "serve-expired: no",
                 "interface: 192.0.2.11@53", "interface: 2001:db8:11::53@53", "interface: 127.0.0.1@53",
                 "access-control: 0.0.0.0/0 refuse",
                 'python-script: "/opt/hotline-edge/venv/lib/python3.11/site-packages/resolver/unbound_plugin.py"'):
        assert line in snippet, line
    assert "0.0.0.0/0 allow" not in snippet and "::/0 allow" not in snippet
    dropin = (tmp_path / "edge-tpe-1.dropin.conf").read_text()
    for line in ("Environment=HOTLINE_EDGE_CONFIG=/etc/hotline-edge/config.toml",
                 "Environment=HOTLINE_EDGE_VENV=/opt/hotline-edge/venv",
                 "Environment=PYTHONPATH=/usr/lib/python3/dist-packages", "SupplementaryGroups=hotline-edge",
                 "UMask=0007"):
        assert line in dropin, line

    checkconf = _unbound_checkconf()
    if checkconf is None:
        pytest.skip("unbound-checkconf missing (Debian package unbound)")
    # unbound-checkconf on the snippet alone, with this checkout's module and addresses it can check
    local = snippet.replace("/opt/hotline-edge/venv/lib/python3.11/site-packages/resolver/unbound_plugin.py",
                            str(REPO / "resolver" / "unbound_plugin.py"))
    local = local.replace('server:\n', f'server:\n    directory: "{tmp_path}"\n    username: ""\n    pidfile: ""\n', 1)
    (tmp_path / "unbound.conf").write_text(local)
    env = {**os.environ, "PYTHONPATH": "/usr/lib/python3/dist-packages"}    # as the drop-in sets it
    out = subprocess.run([checkconf, str(tmp_path / "unbound.conf")], capture_output=True, text=True, check=False,
                         env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "plugin_settings_ok" in out.stdout + out.stderr, "unbound-checkconf ran the plugin's own checks"
