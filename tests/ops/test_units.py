"""Offline checks of systemd/ (issue 7): verify, security exposure <= 1.5, timers parse.

These need only the systemd 252 tools on this machine, no running systemd. The negative controls
show each check bites: a misspelt directive, an unsandboxed unit and a bad calendar spec fail.
"""

from __future__ import annotations

import pathlib
import shutil

import pytest

from .ansible_run import REPO
from .unitcheck import MAX_EXPOSURE, calendar_spec_ok, calendars, directives, exposure, security, unit_files, verify

UNIT_DIR = REPO / "systemd"
UNITS = unit_files(UNIT_DIR)
SERVICES = [u for u in UNITS if u.suffix == ".service"]
TIMERS = [u for u in UNITS if u.suffix == ".timer"]

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze not found (Debian package systemd)")


def test_the_expected_units_exist() -> None:
    assert {u.name for u in UNITS} == {
        "hotline-edge-resolver.service", "hotline-edge-api.service",
        "hotline-edge-feed-sync.service", "hotline-edge-feed-sync.timer",
        "hotline-edge-feed-daemon.service",
        "hotline-edge-retention-purge.service", "hotline-edge-retention-purge.timer"}


def test_units_verify_without_warnings() -> None:
    problems = verify(UNITS)
    assert problems == [], "\n".join(map(str, problems))


@pytest.mark.parametrize("unit", SERVICES, ids=lambda u: u.name)
def test_service_exposure_is_at_most_1_5(unit: pathlib.Path) -> None:
    assert exposure(unit) <= MAX_EXPOSURE


@pytest.mark.parametrize("timer", TIMERS, ids=lambda u: u.name)
def test_timer_schedules_parse_and_spread(timer: pathlib.Path) -> None:
    specs = directives(timer, "OnCalendar")
    assert specs, f"{timer.name} has no OnCalendar="
    assert calendars([timer]) == []
    assert directives(timer, "Persistent") == ["true"], "a run missed while the node was down must catch up"
    assert directives(timer, "RandomizedDelaySec"), "a fleet must not fire at the same second"


def test_resolver_contract() -> None:
    u = UNIT_DIR / "hotline-edge-resolver.service"
    assert directives(u, "Type") == ["notify"]
    assert directives(u, "WatchdogSec")
    assert directives(u, "ExecReload") == ["/bin/kill -HUP $MAINPID"]
    assert directives(u, "CapabilityBoundingSet") == ["CAP_NET_BIND_SERVICE"]
    assert directives(u, "AmbientCapabilities") == ["CAP_NET_BIND_SERVICE"]
    assert directives(u, "RuntimeDirectory") == ["hotline-edge"]  # control.sock (docs/contracts.md)
    assert any("checkconf" in x for x in directives(u, "ExecStartPre"))


@pytest.mark.parametrize("unit", SERVICES, ids=lambda u: u.name)
def test_services_share_one_user_and_state_directory(unit: pathlib.Path) -> None:
    assert directives(unit, "User") == ["hotline-edge"]
    assert directives(unit, "Group") == ["hotline-edge"]
    assert directives(unit, "StateDirectory") == ["hotline-edge"]
    assert directives(unit, "ProtectSystem") == ["strict"], "config and code must be read-only"
    if unit.name != "hotline-edge-resolver.service":
        assert directives(unit, "CapabilityBoundingSet") == [""], "only the resolver holds a capability"
        assert directives(unit, "RuntimeDirectory") == [], \
            "only the resolver owns /run/hotline-edge (systemd removes it when an owner stops)"


# -- negative controls: each check fails on a broken unit ------------------------------------------

def _broken_copy(tmp_path: pathlib.Path, name: str, old: str, new: str) -> list[pathlib.Path]:
    for u in UNITS:
        shutil.copy(u, tmp_path / u.name)
    target = tmp_path / name
    text = target.read_text()
    assert old in text
    target.write_text(text.replace(old, new))
    return unit_files(tmp_path)


def test_verify_catches_a_misspelt_directive(tmp_path: pathlib.Path) -> None:
    units = _broken_copy(tmp_path, "hotline-edge-api.service", "ProtectHome=yes", "ProtectHomee=yes")
    problems = verify(units)
    assert problems and "ProtectHomee" in problems[0].detail


def test_security_catches_an_unsandboxed_unit(tmp_path: pathlib.Path) -> None:
    unit = tmp_path / "plain.service"
    unit.write_text("[Service]\nExecStart=/usr/bin/true\n")
    assert security([unit]) and exposure(unit) > MAX_EXPOSURE


def test_calendar_check_catches_a_bad_spec() -> None:
    assert calendar_spec_ok("*-*-* 03:30:00")[0]
    assert not calendar_spec_ok("*-*-* 25:00")[0]
