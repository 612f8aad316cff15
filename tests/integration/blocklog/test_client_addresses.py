"""Who asked, as the log keeps it: our resolver (a worker shipping to the writer) answers the same
blocked question again and again from several client sockets, over IPv4 and IPv6. The first answer
takes the pipeline's full path, the rest come from the remembered answers of the batched UDP
reader, which ships the kernel's address slots as they are (every client sends before any reads,
so a batch often holds several senders); the exported records, opened with the compliance key,
name exactly the senders, as often as each one asked."""

from __future__ import annotations

import collections
import json
import socket
from pathlib import Path

import dns.message
import dns.rcode
import pytest

from .harness import make_node, running, wait_for

pytestmark = pytest.mark.integration
ROUNDS = 6


@pytest.mark.timeout(180)
@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_every_answer_is_logged_with_its_senders_address(tmp_path: Path, family: int, host: str) -> None:
    node = make_node(tmp_path / "node", workers=1, v6=True)
    clients = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(3)]
    asked: collections.Counter[tuple[str, int]] = collections.Counter()
    try:
        for c in clients:
            c.bind((host, 0))
        with running(node):
            for _ in range(ROUNDS):         # every client asks before any reads: batches of several senders
                for c in clients:
                    c.sendto(dns.message.make_query("csam-site.test.", "A").to_wire(), (host, node.port))
                for c in clients:
                    c.settimeout(5)
                    assert dns.message.from_wire(c.recv(4096)).rcode() == dns.rcode.NXDOMAIN
                    asked[c.getsockname()[:2]] += 1
            total = sum(asked.values())
            wait_for(lambda: node.metrics().get("hotline_edge_blocklog_records_total") == total, 30,
                     f"{total} records written", lambda: {k: v for k, v in node.metrics().items() if "blocklog" in k})
            # the workers' side: nothing held once all is written, and the deferred flushes counted
            wait_for(lambda: node.metrics().get("hotline_edge_blocklog_worker_held") == 0, 10,
                     "the workers' held hits reported as 0", node.metrics)
            assert node.metrics()["hotline_edge_blocklog_shipping_deferred_total"] >= 0
    finally:
        for c in clients:
            c.close()
    lines = node.cli("log", "export", "--order", "TW-2026-0042", "--from", "2020-01-01", "--to", "2100-01-01",
                     "--key", str(node.workdir / "compliance-x25519.key")).stdout.splitlines()
    logged = collections.Counter((rec["client"]["ip"], rec["client"]["port"]) for rec in map(json.loads, lines))
    assert logged == asked
    assert json.loads(node.cli("log", "verify", "--json").stdout)["ok"]
    # the operator is told at start how the log hashes and decodes its records (C extensions, or not)
    from resolver.blocklog import LEAF_HASHING
    from resolver.blocklog_ship import PACKED_DECODING
    events = [json.loads(x) for x in (node.workdir / "resolver.log").read_text().splitlines() if x.startswith("{")]
    opened = [e for e in events if e.get("event") == "blocklog_open"]
    assert opened and {e["leaf_hashing"] for e in opened} == {LEAF_HASHING}
    assert {e["packed_decoding"] for e in opened} == {PACKED_DECODING}
    assert any(e.get("event") == "blocklog_slow_leaf_hashing" for e in events) == (LEAF_HASHING != "openssl")
    assert any(e.get("event") == "blocklog_slow_decoding" for e in events) == (PACKED_DECODING != "c")
