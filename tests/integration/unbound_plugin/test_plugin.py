"""Unbound + plugin on its own: hits reported, answers from Unbound's cache kept honest, start-up
gating, the Unbound settings it refuses, the control socket and the CLI.

Every test here runs a real ``unbound -d`` with the module script of this checkout on loopback.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from ..resolver import zones
from ..resolver.peers import HOTLINE_EDGE, REPO, Peer, ask, control, wait_until
from .harness import log_events, plugin_config, read_hits, start_plugin

pytestmark = pytest.mark.integration

MAIN = [{"file": "", "name": "rpz.test.", "max_policy_ttl": 60, "ede": 17, "ede_text": "order {order_ref}"}]
# the hotline zone without its CLIENT-IP rules: answers are the same for every client, so Unbound may
# keep them (with CLIENT-IP rules nothing is kept: test_client_ip_rules_keep_every_answer_out_...)
SHARED = "".join(line + "\n" for line in zones.POLICY_MAIN.splitlines() if "rpz-client-ip" not in line)


def _main_zone(work: Path, text: str = zones.POLICY_MAIN) -> list[dict[str, object]]:
    f = work / "rpz.test.zone"
    tmp = f.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(f)
    return [dict(MAIN[0], file=str(f))]


@pytest.fixture()
def plugin(tmp_path: Path, knot: Peer) -> Iterator[Peer]:
    log_only = {"file": str(_write(tmp_path, "log.zone", zones.POLICY_LOGONLY)), "name": "log.rpz.test.",
                "override": "disabled"}
    zones_ = [*_main_zone(tmp_path), log_only]
    peer = start_plugin(tmp_path, knot.port, plugin_config(tmp_path, zones_))
    yield peer
    peer.stop()


def _write(work: Path, name: str, text: str) -> Path:
    p = work / name
    p.write_text(text)
    return p


def _udp_from(port: int, name: str, source_port: int, rdtype: str = "A") -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, use_edns=0)
    return dns.query.udp(q, "127.0.0.1", port=port, timeout=2, source="127.0.0.1", source_port=source_port)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_hits(peer: Peer, n: int) -> list[dict[str, object]]:
    wait_until(lambda: len(read_hits(peer)) >= n, 5, f"{n} hit records")
    return read_hits(peer)


def test_every_hit_reported_also_when_unbound_answers_from_its_cache(tmp_path: Path, knot: Peer) -> None:
    """The first NXDOMAIN comes from the plugin, the repeats from Unbound's cache: one record each,
    with the asking client's address and port, and the EDE on every answer."""
    plugin = start_plugin(tmp_path, knot.port, plugin_config(tmp_path, _main_zone(tmp_path, SHARED)))
    try:
        _check_cached_hits(plugin)
    finally:
        plugin.stop()


def _check_cached_hits(plugin: Peer) -> None:
    ports = [_free_udp_port() for _ in range(3)]
    for p in ports:
        r = _udp_from(plugin.port, "blocked.example.", p)
        assert r.rcode() == dns.rcode.NXDOMAIN
        assert [(o.code, o.text) for o in r.options if o.otype == 15] == [(17, "order TW-2026-0042")]
    hits = _wait_hits(plugin, 3)
    assert [h["client_port"] for h in hits] == ports
    h = hits[0]
    assert (h["client_ip"], h["qname"], h["qtype"], h["zone"], h["serial"], h["trigger"], h["rule_owner"],
            h["action"], h["order_ref"], h["transport"]) == \
        ("127.0.0.1", "blocked.example.", 1, "rpz.test.", 2026010101, "QNAME", "blocked.example.rpz.test.",
         "nxdomain", "TW-2026-0042", "udp")
    status = control(plugin, {"cmd": "status"})
    assert status["counters"]["cache_answers"] >= 2          # the repeats were Unbound's cache answers


def test_hits_name_the_transport_the_trigger_and_log_only_zones(plugin: Peer) -> None:
    ask(plugin.port, "garden.example.", tcp=True)                          # local data over TCP
    ask(plugin.port, "pass.blocked.example.")                              # PASSTHRU: logged, the truth
    ask(plugin.port, "pass.blocked.example.")                              # ... every time
    ask(plugin.port, "logged.example.")                                    # log-only zone
    ask(plugin.port, "goodip.example.", source="127.0.0.2")                # CLIENT-IP
    ask(plugin.port, "chain.example.")                                     # a CNAME target hit
    hits = _wait_hits(plugin, 6)
    got = [(h["qname"], h["transport"], h["trigger"], h["action"], h["zone"], h["client_ip"]) for h in hits]
    assert got == [
        ("garden.example.", "tcp", "QNAME", "local-data", "rpz.test.", "127.0.0.1"),
        ("pass.blocked.example.", "udp", "QNAME", "passthru", "rpz.test.", "127.0.0.1"),
        ("pass.blocked.example.", "udp", "QNAME", "passthru", "rpz.test.", "127.0.0.1"),
        ("logged.example.", "udp", "QNAME", "disabled", "log.rpz.test.", "127.0.0.1"),
        ("goodip.example.", "udp", "CLIENT-IP", "nxdomain", "rpz.test.", "127.0.0.2"),
        ("blocked.example.", "udp", "QNAME", "nxdomain", "rpz.test.", "127.0.0.1"),
    ]


def _policy_with(extra: str) -> str:
    return SHARED.replace("2026010101", "2026010102") + extra


@pytest.mark.parametrize(("name", "rule"), [
    ("www.example.", "www.example CNAME ."),                                  # QNAME on the name itself
    ("chain3.example.", "www.example CNAME ."),                               # ... on its CNAME target
    ("goodip.example.", "24.0.113.0.203.rpz-ip CNAME ."),                     # rpz-ip on its address
])
def test_an_answer_unbound_keeps_is_not_served_past_a_policy_that_hits_it(tmp_path: Path, knot: Peer, name: str,
                                                                          rule: str) -> None:
    """Answers the policy leaves alone are served from Unbound's cache without the plugin; a new
    policy that hits one is enforced on the very next query (CD=1 included)."""
    peer = start_plugin(tmp_path, knot.port, plugin_config(tmp_path, _main_zone(tmp_path, SHARED)))
    try:
        for _ in range(3):
            assert ask(peer.port, name).rcode() == dns.rcode.NOERROR
        assert control(peer, {"cmd": "status"})["vetted"]["answers"] >= 1
        _main_zone(tmp_path, _policy_with(rule + "\n"))
        reply = control(peer, {"cmd": "reload"})
        assert reply["ok"] and reply["zones"] == {"rpz.test.": 2026010102}
        assert ask(peer.port, name).rcode() == dns.rcode.NXDOMAIN
        q = dns.message.make_query(name, "A", use_edns=0)
        q.flags |= dns.flags.CD
        assert dns.query.udp(q, "127.0.0.1", port=peer.port, timeout=2).rcode() == dns.rcode.NXDOMAIN
    finally:
        peer.stop()


def test_a_stored_policy_answer_is_dropped_with_the_rule(tmp_path: Path, knot: Peer) -> None:
    peer = start_plugin(tmp_path, knot.port, plugin_config(tmp_path, _main_zone(tmp_path, SHARED)))
    try:
        for _ in range(3):
            assert ask(peer.port, "blocked.example.").rcode() == dns.rcode.NXDOMAIN
        assert control(peer, {"cmd": "status"})["counters"]["cache_answers"] >= 1
        text = "".join(line + "\n" for line in SHARED.splitlines()
                       if not line.startswith(("blocked.example", "*.blocked.example", "   ")))
        _main_zone(tmp_path, text.replace("2026010101", "2026010103"))
        assert control(peer, {"cmd": "reload"})["ok"]
        r = ask(peer.port, "blocked.example.")
        assert r.rcode() == dns.rcode.NOERROR and "203.0.113.1" in r.answer[0].to_text()
    finally:
        peer.stop()


def test_client_ip_rules_keep_every_answer_out_of_unbounds_cache(tmp_path: Path, knot: Peer) -> None:
    """With CLIENT-IP rules an answer depends on the client: 127.0.0.1 asks first (the truth), then
    the listed 127.0.0.2 must still get NXDOMAIN, and the other way round."""
    peer = start_plugin(tmp_path, knot.port, plugin_config(tmp_path, _main_zone(tmp_path)))
    try:
        for _ in range(2):
            assert ask(peer.port, "www.example.").rcode() == dns.rcode.NOERROR
        assert ask(peer.port, "www.example.", source="127.0.0.2").rcode() == dns.rcode.NXDOMAIN
        assert ask(peer.port, "mx.example.", "MX", source="127.0.0.2").rcode() == dns.rcode.NXDOMAIN
        assert ask(peer.port, "mx.example.", "MX").rcode() == dns.rcode.NOERROR
        assert control(peer, {"cmd": "status"})["vetted"]["answers"] == 0
    finally:
        peer.stop()


def test_no_policy_no_answers_until_the_feed_arrives(tmp_path: Path, knot: Peer) -> None:
    """Never unfiltered: before the first policy loads every client query is REFUSED; the feed's
    first activation is picked up by the watcher."""
    cfg = plugin_config(tmp_path, [{"feed": "hotline", "name": "swap.rpz.test."}])
    peer = start_plugin(tmp_path, knot.port, cfg, wait=False)
    try:
        wait_until(lambda: _rcode(peer, "www.example.") == dns.rcode.REFUSED, 30, "refusing before the policy",
                   peer.proc, peer.log)
        assert control(peer, {"cmd": "status"})["ready"] is False
        feed = tmp_path / "state" / "feeds" / "hotline"
        feed.mkdir(parents=True)
        _write(feed, "active.rpz", zones.hammer_policy(7, ["www.example."]))
        wait_until(lambda: _rcode(peer, "www.example.") == dns.rcode.NXDOMAIN, 10, "the first policy", peer.proc,
                   peer.log)
        assert _rcode(peer, "mx.example.", "MX") == dns.rcode.NOERROR
    finally:
        peer.stop()


def _rcode(peer: Peer, name: str, rdtype: str = "A") -> int | None:
    try:
        return int(ask(peer.port, name, rdtype, timeout=0.5).rcode())
    except Exception:
        return None


@pytest.mark.parametrize(("setting", "event"), [
    ({"modules": "python iterator"}, "module_config_refused"),
    ({"modules": "python validator iterator"}, "module_config_refused"),
    ({"extra": "    ignore-cd-flag: no"}, "unbound_option_refused"),
    ({"extra": "    serve-expired: yes"}, "unbound_option_refused"),
])
def test_settings_that_would_let_cached_answers_bypass_the_policy_are_refused(
        tmp_path: Path, knot: Peer, setting: dict[str, str], event: str) -> None:
    peer = start_plugin(tmp_path, knot.port, plugin_config(tmp_path, _main_zone(tmp_path)), wait=False, **setting)
    try:
        peer.proc.wait(30)
        assert peer.proc.returncode != 0
        assert event in [e.get("event") for e in log_events(peer)]
    finally:
        peer.stop()


def test_reload_and_status_from_the_cli(plugin: Peer, tmp_path: Path) -> None:
    sock = str(plugin.extra["control"])
    r = subprocess.run([*HOTLINE_EDGE, "reload", "--socket", sock], capture_output=True, text=True, cwd=str(REPO),
                       timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert "2026010101" in r.stdout
    status = control(plugin, {"cmd": "status"})
    assert status["mode"] == "unbound_plugin" and status["ready"] is True
    assert status["zones"] == {"rpz.test.": 2026010101, "log.rpz.test.": 2026010101}


def test_stops_cleanly(tmp_path: Path, knot: Peer) -> None:
    peer = start_plugin(tmp_path, knot.port, plugin_config(tmp_path, _main_zone(tmp_path)))
    t0 = time.monotonic()
    peer.stop()
    assert peer.proc.returncode == 0 and time.monotonic() - t0 < 10
    assert "plugin_stopped" in [e.get("event") for e in log_events(peer)]
    assert not Path(str(peer.extra["control"])).exists()
