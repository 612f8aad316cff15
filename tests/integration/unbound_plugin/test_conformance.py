"""The resolver's conformance questions, asked of Unbound + plugin and of our own data plane.

Both load the same three policy zones in the same order (an allow-list zone, the hotline zone with
EDE 17 and order references, a log-only zone) and see the same truth: our resolver forwards to a
plain Unbound that resolves from Knot; the plugin's Unbound resolves from the same Knot itself.
Each question of tests/integration/resolver/test_conformance_bind.py is asked of both, over the same
transport from the same source address; rcode, header flags, the answer section, the SOA in the
additional section and the Extended DNS Errors must be identical (TTLs of upstream records within
5 seconds: each side caches on its own).

Differences, by design, checked on their own below:
- none in these answers. The module API gaps of Unbound 1.17 (no way to drop a response, to tell UDP
  from TCP, to start a sub-query) are bridged by resolver.unbound_abi; when its checks fail on
  another Unbound version the plugin falls back (DROP as SERVFAIL + EDE 18, TCP-Only as TC=1 for
  every client, a garden CNAME without the target's records) and says so in its log.
- NSDNAME/NSIP rules are not in these zones; the plugin does not evaluate them (docs/unbound-plugin.md).
"""

from __future__ import annotations

from collections.abc import Iterator

import dns.exception
import dns.message
import pytest

from ..resolver.peers import Peer, ask
from ..resolver.test_conformance_bind import QUESTIONS, _ask, _same, _view, zone_tables
from .harness import log_events, plugin_config, start_plugin

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory, knot: Peer) -> Iterator[Peer]:
    work = tmp_path_factory.mktemp("plugin")
    peer = start_plugin(work, knot.port, plugin_config(work, zone_tables(work)))
    yield peer
    peer.stop()


def _ede(m: dns.message.Message) -> list[tuple[int, str]]:
    return [(o.code, o.text or "") for o in m.options if o.otype == 15]


@pytest.mark.parametrize(("name", "rdtype", "transport", "source", "what"), QUESTIONS,
                         ids=[f"{q[0]}{q[1]}/{q[2]}{'@' + q[3] if q[3] else ''}" for q in QUESTIONS])
def test_same_answer_as_our_data_plane(ours: Peer, plugin: Peer, name: str, rdtype: str, transport: str,
                                       source: str | None, what: str) -> None:
    mine = _ask(ours, name, rdtype, transport, source)
    theirs = _ask(plugin, name, rdtype, transport, source)
    assert mine is not None, f"our data plane did not answer {name} {rdtype} ({what})"
    assert theirs is not None, f"Unbound + plugin did not answer {name} {rdtype} ({what})"
    mv, tv = _view(mine), _view(theirs)
    assert _same(mv, tv), f"{what}\nours:   {mv}\nplugin: {tv}"
    assert _ede(theirs) == _ede(mine), f"{what}: EDE ours {_ede(mine)}, plugin {_ede(theirs)}"


def _answer_or_none(peer: Peer, transport: str) -> dns.message.Message | None:
    try:
        return ask(peer.port, "drop.example.", tcp=transport == "tcp", timeout=1.5)
    except (dns.exception.Timeout, EOFError, ConnectionError):
        return None


def test_drop_gets_no_answer_from_either(ours: Peer, plugin: Peer) -> None:
    """No response at all. Over TCP Unbound closes the connection (as its own rpz-drop does); our
    data plane leaves it open until the client gives up: no answer either way."""
    for transport in ("udp", "tcp"):
        assert _answer_or_none(ours, transport) is None
        assert _answer_or_none(plugin, transport) is None
    assert _ask(plugin, "www.example.", "A", "udp", None) is not None


def test_no_ede_for_clients_without_edns(plugin: Peer) -> None:
    plain = ask(plugin.port, "blocked.example.", edns=None)
    assert plain.edns < 0 and plain.rcode() == 3 and not plain.options


def test_the_abi_bridges_were_used_not_fallen_back(plugin: Peer) -> None:
    """The answers above depend on resolver.unbound_abi on this Unbound; none of its checks failed."""
    events = [e for e in log_events(plugin) if e.get("event") in ("unbound_abi_disabled", "unbound_version_unchecked")]
    assert events == []
