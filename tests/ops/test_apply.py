"""The Ansible role applied for real to a booted Debian 12 container (issue 7).

One deployment per module (tests/ops/deploy.py): golden rootfs (cached) -> systemd-nspawn boot ->
``--check`` on the fresh host -> first apply -> second apply. The tests below then look at the
running system from inside the container: units, sandbox, DNS answers, the API, security scores,
and finally a config-only run (``--tags config``) that must reload the resolver, not restart it.

Tests that need a subcommand (``REQUIRED_COMMANDS``) fail naming it when the build lacks it.
Tests that need a running systemd are skipped with the reason when nspawn could not boot here and
the chroot fallback ran instead (announced loudly on stderr as well).
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator

import pytest

from . import early
from .ansible_run import run_playbook, write_inventory
from .deploy import (
    API_LISTEN,
    APPLY_COMMANDS,
    DEMO_EDE,
    DEMO_POLICY,
    FEED,
    FEED_EDE,
    HOST,
    METRICS_LISTEN,
    Deployment,
    hostvars,
)
from .unitcheck import MAX_EXPOSURE, verify

pytestmark = [pytest.mark.ops, pytest.mark.slow, pytest.mark.timeout(900)]

RUNNING_UNITS = ("hotline-edge-resolver.service", "hotline-edge-api.service",
                 "hotline-edge-feed-sync.timer", "hotline-edge-retention-purge.timer")
SERVICES = ("hotline-edge-resolver.service", "hotline-edge-api.service",
            "hotline-edge-feed-sync.service", "hotline-edge-feed-daemon.service",
            "hotline-edge-retention-purge.service")
VENV_PYTHON = "/opt/hotline-edge/venv/bin/python"

# Asked inside the container with dnspython from the deployed venv (the resolver on 127.0.0.1:53).
DNS_PROBE = r"""
import json, sys
import dns.edns, dns.message, dns.query, dns.rcode
out = {}
for name in sys.argv[1:]:
    q = dns.message.make_query(name, "A", use_edns=0)
    try:
        r = dns.query.udp(q, "127.0.0.1", port=53, timeout=2)
    except Exception as exc:
        out[name] = {"error": repr(exc)}
        continue
    out[name] = {
        "rcode": dns.rcode.to_text(r.rcode()),
        "ede": [[o.code, o.text] for o in r.options if o.otype == dns.edns.EDE],
        "answer": sorted(rr.to_text() for rrset in r.answer for rr in rrset),
    }
print(json.dumps(out))
"""
HTTP_PROBE = r"""
import json, sys, urllib.error, urllib.request
auth = {"Authorization": "Bearer " + sys.argv[2]} if len(sys.argv) > 2 else {}
req = urllib.request.Request(sys.argv[1], headers=auth)
try:
    with urllib.request.urlopen(req, timeout=3) as r:
        print(json.dumps({"status": r.status, "body": r.read().decode(errors="replace")}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "body": e.read().decode(errors="replace")}))
"""


def http_get(d: Deployment, url: str, unit: str, timeout: float = 20,
             token: str | None = None) -> dict:  # type: ignore[type-arg]
    """GET URL from inside the container (retrying until TIMEOUT: the service may still be binding)."""
    deadline = time.monotonic() + timeout
    while True:
        r = d.run([VENV_PYTHON, "-c", HTTP_PROBE, url, *([token] if token else [])])
        if r.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert r.returncode == 0, f"GET {url}: {r.stderr}\n{journal(d, unit)}"
    return json.loads(r.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def dep() -> Iterator[Deployment]:
    d, how = early.take()       # usually started when collection ended (tests/ops/early.py)
    print(f"[ops] {how}; " + ", ".join(f"{k}: exit {r.returncode}" for k, r in d.runs.items()),
          file=sys.stderr, flush=True)
    try:
        yield d
    finally:
        d.close()


def needs_app(d: Deployment, *commands: str) -> None:
    missing = [c for c in commands or APPLY_COMMANDS if c in d.missing_commands]
    if missing:
        pytest.fail("this build has no `hotline-edge " + "`, `hotline-edge ".join(missing) + "`")


def needs_systemd(d: Deployment) -> None:
    if d.container is None:
        pytest.skip(f"NSPAWN COULD NOT BOOT, chroot fallback ran instead: {d.fallback_reason}")


def applied(d: Deployment) -> None:
    needs_app(d)
    run = d.runs["apply"]
    assert run.returncode == 0, run.explain()


def sh(d: Deployment, *argv: str) -> str:
    r = d.run(list(argv))
    assert r.returncode == 0, f"{' '.join(argv)}: exit {r.returncode}\n{r.stdout}{r.stderr}"
    return r.stdout


def python_json(d: Deployment, script: str, *args: str) -> dict:  # type: ignore[type-arg]
    return json.loads(sh(d, VENV_PYTHON, "-c", script, *args))


def ask(d: Deployment, *names: str, until=None, timeout: float = 20) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """Ask the resolver; with UNTIL, retry until UNTIL(answers) holds or TIMEOUT passes."""
    deadline = time.monotonic() + timeout
    while True:
        answers = python_json(d, DNS_PROBE, *names)
        if until is None or until(answers) or time.monotonic() > deadline:
            return answers
        time.sleep(0.3)


def journal(d: Deployment, unit: str) -> str:
    return d.run(["journalctl", "-u", unit, "--no-pager", "-n", "40"]).stdout


# -- the three playbook runs ---------------------------------------------------------------------

def test_check_mode_succeeds_on_a_fresh_host(dep: Deployment) -> None:
    run = dep.runs["check"]
    assert run.returncode == 0, run.explain()
    assert run.recap[HOST].failed == 0
    assert run.recap[HOST].changed > 0, "check mode on a fresh host must report what it would change"


def test_first_apply_succeeds(dep: Deployment) -> None:
    applied(dep)
    assert dep.runs["apply"].recap[HOST].failed == 0


def test_second_apply_changes_nothing(dep: Deployment) -> None:
    applied(dep)
    run = dep.runs["again"]
    assert run.returncode == 0, run.explain()
    assert run.recap[HOST].changed == 0, "not idempotent:\n" + "\n".join(run.changed_tasks())


# -- the installed system -----------------------------------------------------------------------

def test_installed_units_verify_clean(dep: Deployment) -> None:
    applied(dep)
    if dep.chroot is not None:
        installed = sorted((dep.chroot / "etc/systemd/system").glob("hotline-edge-*"))
        problems = verify([p for p in installed if p.is_file()], root=dep.chroot)
        assert problems == [], "\n".join(map(str, problems))
        return
    r = dep.run(["sh", "-c", "systemd-analyze verify --recursive-errors=no"
                 " /etc/systemd/system/hotline-edge-*.service /etc/systemd/system/hotline-edge-*.timer"])
    assert r.returncode == 0 and not r.stderr.strip(), r.stdout + r.stderr


def test_config_is_root_owned_and_readable_only_by_the_service_group(dep: Deployment) -> None:
    applied(dep)
    out = sh(dep, "stat", "-c", "%U %G %a", "/etc/hotline-edge", "/etc/hotline-edge/config.toml",
             "/opt/hotline-edge/venv/bin/hotline-edge")
    assert out.split("\n")[:3] == ["root hotline-edge 750", "root hotline-edge 640", "root root 755"]


def test_all_units_are_active(dep: Deployment) -> None:
    applied(dep)
    needs_systemd(dep)
    r = dep.run(["systemctl", "is-active", *RUNNING_UNITS])
    states = dict(zip(RUNNING_UNITS, r.stdout.split(), strict=False))
    bad = {u: s for u, s in states.items() if s != "active"}
    assert not bad, f"{bad}\n" + "\n".join(journal(dep, u) for u in bad)


def test_resolver_runs_unprivileged_with_only_net_bind_service(dep: Deployment) -> None:
    applied(dep)
    needs_systemd(dep)
    pid = sh(dep, "systemctl", "show", "-p", "MainPID", "--value", "hotline-edge-resolver.service").strip()
    status = sh(dep, "cat", f"/proc/{pid}/status")
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert int(fields["CapEff"], 16) == 1 << 10, f"CapEff {fields['CapEff']}: only CAP_NET_BIND_SERVICE (bit 10)"
    assert int(fields["CapBnd"], 16) == 1 << 10
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Seccomp"].strip() == "2"
    uid = fields["Uid"].split()[0]
    assert sh(dep, "id", "-nu", uid).strip() == "hotline-edge"


def test_blocked_name_gets_nxdomain_with_ede(dep: Deployment) -> None:
    applied(dep)
    needs_systemd(dep)
    names = ("csam-site.test.", "www.csam-site.test.")
    answers = ask(dep, *names, until=lambda a: all(x.get("rcode") == "NXDOMAIN" for x in a.values()))
    for name in names:
        a = answers[name]
        assert a.get("rcode") == "NXDOMAIN", f"{name}: {a}"
        assert a["answer"] == [], f"{name}: the upstream's address leaked: {a}"
        assert DEMO_EDE in [code for code, _text in a["ede"]], f"{name}: expected EDE {DEMO_EDE}: {a}"


def test_feed_fetched_over_tsig_before_the_resolver_started_is_enforced(dep: Deployment) -> None:
    applied(dep)
    needs_systemd(dep)
    answers = ask(dep, "feed-blocked.test.", until=lambda a: a["feed-blocked.test."].get("rcode") == "NXDOMAIN")
    a = answers["feed-blocked.test."]
    assert a.get("rcode") == "NXDOMAIN" and FEED_EDE in [c for c, _t in a["ede"]], a
    assert sh(dep, "stat", "-c", "%U", f"/var/lib/hotline-edge/feeds/{FEED}/active.rpz").strip() == "hotline-edge"


def test_allowed_name_resolves_from_the_demo_upstream(dep: Deployment) -> None:
    applied(dep)
    needs_systemd(dep)
    answers = ask(dep, "allowed.test.", until=lambda a: a["allowed.test."].get("rcode") == "NOERROR")
    a = answers["allowed.test."]
    assert a.get("rcode") == "NOERROR", a
    assert any(r.endswith("192.0.2.10") for r in a["answer"]), a
    assert a["ede"] == [], f"no EDE on an allowed answer: {a}"


def test_admin_api_healthz_answers(dep: Deployment) -> None:
    applied(dep)
    needs_systemd(dep)
    assert http_get(dep, f"http://{API_LISTEN}/healthz", "hotline-edge-api.service")["status"] == 200


def test_the_api_token_from_the_inventory_authenticates_and_only_its_hash_is_on_the_node(dep: Deployment) -> None:
    applied(dep)
    needs_systemd(dep)
    me = http_get(dep, f"http://{API_LISTEN}/whoami", "hotline-edge-api.service", token=dep.api_token)
    assert me["status"] == 200 and json.loads(me["body"])["role"] == "hotline", me
    wrong = dep.api_token[:-4] + ("AAAA" if not dep.api_token.endswith("AAAA") else "BBBB")
    assert http_get(dep, f"http://{API_LISTEN}/whoami", "hotline-edge-api.service", token=wrong)["status"] == 401
    listed = dep.run(["runuser", "-u", "hotline-edge", "--", "/opt/hotline-edge/venv/bin/hotline-edge", "api",
                      "token", "list", "--config", "/etc/hotline-edge/config.toml"])
    assert dep.api_token_entry["id"] in listed.stdout, listed.stderr
    secret = dep.api_token.split("_", 2)[2]
    on_disk = dep.run(["grep", "-rl", secret, "/etc/hotline-edge", "/var/lib/hotline-edge"])
    assert on_disk.stdout == "", f"the token's secret is on the node: {on_disk.stdout}"


def test_resolver_metrics_count_the_queries(dep: Deployment) -> None:
    applied(dep)
    needs_systemd(dep)
    ask(dep, "csam-site.test.", "allowed.test.")
    # worker processes report their counters to the main process every second or so: wait for it
    deadline = time.monotonic() + 20
    while True:
        body = http_get(dep, f"http://{METRICS_LISTEN}/metrics", "hotline-edge-resolver.service")["body"]
        samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
                   if line.startswith("hotline_edge_resolver_") and " " in line}
        hits = [v for k, v in samples.items() if k.startswith("hotline_edge_resolver_policy_hits")]
        if (hits and sum(hits) >= 1) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert hits and sum(hits) >= 1, "no policy hit counted within 20 s:\n" + body[:2000]
    assert samples.get("hotline_edge_resolver_ready") == 1.0, body[:2000]


@pytest.mark.parametrize(("unit", "command"), [
    ("hotline-edge-feed-sync.service", "feed sync"),
    ("hotline-edge-retention-purge.service", "retention purge"),
])
def test_oneshot_service_succeeds_under_its_sandbox(dep: Deployment, unit: str, command: str) -> None:
    applied(dep)
    needs_systemd(dep)
    needs_app(dep, command)
    r = dep.run(["systemctl", "start", unit], timeout=300)
    result = sh(dep, "systemctl", "show", "-p", "Result", "--value", unit).strip()
    assert r.returncode == 0 and result == "success", f"{unit}: {result}\n{journal(dep, unit)}"


def test_online_security_scores(dep: Deployment) -> None:
    applied(dep)
    needs_systemd(dep)
    scores = {}
    for unit in SERVICES:
        out = sh(dep, "systemd-analyze", "security", "--no-pager", unit)
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", out)
        assert m, out
        scores[unit] = float(m.group(1))
    assert all(s <= MAX_EXPOSURE for s in scores.values()), scores


def test_feed_update_reaches_the_resolver_through_the_sandboxed_feed_sync(dep: Deployment) -> None:
    """The hotline publishes a new serial; one feed sync (as the timer runs it, under its sandbox)
    fetches it over TSIG and tells the resolver through /run/hotline-edge/control.sock."""
    applied(dep)
    needs_systemd(dep)
    needs_app(dep, "feed sync")
    zone = "/etc/nsd/rpz.hotline-tw.test.zone"
    text = sh(dep, "cat", zone).replace("( 1 ", "( 2 ") + "feed-later.test     CNAME .\n"
    dep.run(["sh", "-c", f"cat > {zone}"], check=True, input=text)
    sh(dep, "systemctl", "reload", "nsd.service")
    pid_before = sh(dep, "systemctl", "show", "-p", "MainPID", "--value", "hotline-edge-resolver.service")
    r = dep.run(["systemctl", "start", "hotline-edge-feed-sync.service"], timeout=300)
    assert r.returncode == 0, journal(dep, "hotline-edge-feed-sync.service")
    answers = ask(dep, "feed-later.test.", until=lambda a: a["feed-later.test."].get("rcode") == "NXDOMAIN")
    later = answers["feed-later.test."]
    assert later.get("rcode") == "NXDOMAIN" and FEED_EDE in [c for c, _t in later["ede"]], \
        f"{answers}\n{journal(dep, 'hotline-edge-feed-sync.service')}\n{journal(dep, 'hotline-edge-resolver.service')}"
    pid_after = sh(dep, "systemctl", "show", "-p", "MainPID", "--value", "hotline-edge-resolver.service")
    assert pid_after == pid_before, "the feed update must swap the policy, not restart the resolver"


# -- a partial run: config only, and the handler reloads instead of restarting ------------------

def test_policy_change_with_tags_config_reloads_the_resolver(dep: Deployment) -> None:
    applied(dep)
    needs_systemd(dep)
    pid_before = sh(dep, "systemctl", "show", "-p", "MainPID", "--value", "hotline-edge-resolver.service")
    changed = dep.workdir / "policy" / DEMO_POLICY.name
    changed.parent.mkdir(exist_ok=True)
    changed.write_text(DEMO_POLICY.read_text() + "allowed.test            CNAME .\n"
                       "                        TXT   \"order=TW-2026-0099\"\n")
    inv = dep.workdir / "inventory-changed.yml"
    write_inventory(inv, HOST, hostvars(dep, hotline_edge_policy_files=[str(changed)]))
    run = run_playbook("config only", inv, dep.workdir, "--tags", "config")
    assert run.returncode == 0, run.explain()
    changed_tasks = {t.split("]", 1)[0] + "]" for t in run.changed_tasks()}
    assert changed_tasks == {"TASK [hotline_edge : Copy local policy zone files]",
                             "RUNNING HANDLER [hotline_edge : Reload hotline-edge resolver]"}, run.changed_tasks()
    assert "RUNNING HANDLER [hotline_edge : Reload hotline-edge resolver]" in run.output
    assert "RUNNING HANDLER [hotline_edge : Restart hotline-edge resolver]" not in run.output
    answers = ask(dep, "allowed.test.", until=lambda a: a["allowed.test."].get("rcode") == "NXDOMAIN")
    assert answers["allowed.test."].get("rcode") == "NXDOMAIN", answers
    pid_after = sh(dep, "systemctl", "show", "-p", "MainPID", "--value", "hotline-edge-resolver.service")
    assert pid_after == pid_before, "the resolver was restarted; a policy change must only reload it"


# -- last: nothing the tests above started has failed ----------------------------------------------

def test_no_failed_units(dep: Deployment) -> None:
    applied(dep)
    needs_systemd(dep)
    out = sh(dep, "systemctl", "--failed", "--no-legend", "--plain")
    assert out.strip() == "", out + "\n".join(journal(dep, line.split()[0]) for line in out.splitlines())
