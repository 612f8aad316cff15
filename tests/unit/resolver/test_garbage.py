"""A failed upstream query leaves no reference cycle behind (resolver/upstream.py, and the
pipeline's lookup), which is what lets a data-plane process collect its oldest generation rarely
(resolver/service.py, GC_THRESHOLDS).

Each refused or timed-out query used to leave its exception, traceback, frame, future, closures
and timer handle in a cycle that only the garbage collector frees. Under a dead upstream that is
hundreds of cyclic objects a second, which feeds the collector's full (gen 2) collections: the
data plane's latency tail. Here a real UDP socket on loopback asks a port nobody listens on (the
kernel's ICMP port unreachable becomes ConnectionRefusedError) or a silent socket (timeout), with
the collector off, and then counts what only the collector could free.
"""

from __future__ import annotations

import asyncio
import gc
import socket

import pytest

from resolver.config import Endpoint
from resolver.errors import UpstreamError
from resolver.upstream import UpstreamClient


def closed_port() -> int:
    """A UDP port on 127.0.0.1 with nothing bound to it (bound once, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def fail(client: UpstreamClient, n: int) -> list[str]:
    errors = []
    for i in range(n):
        try:
            await client.resolve(f"q{i}.example.test.".encode(), 1, 1, False, False)
        except UpstreamError as exc:
            errors.append(str(exc))
    return errors


def cyclic_garbage_of(run: object) -> tuple[int, list[str]]:
    """(objects only the collector could free, the errors) of ``run`` (a coroutine factory) with the
    collector off, on a fresh event loop whose own set-up garbage is collected first."""
    loop = asyncio.new_event_loop()
    try:
        gc.collect()
        gc.disable()
        try:
            errors = loop.run_until_complete(run())  # type: ignore[operator]
            found = gc.collect()
        finally:
            gc.enable()
    finally:
        loop.close()
    return found, errors


@pytest.mark.parametrize("pool", [0, 4])
def test_refused_queries_leave_no_cycles(pool: int) -> None:
    port = closed_port()

    async def run() -> list[str]:
        client = UpstreamClient([Endpoint("127.0.0.1", port)], 0.5, 1.0, 1232, pool=pool)
        await fail(client, 2)         # warm up: the first calls create what stays (pools, stats)
        gc.collect()
        return await fail(client, 40)

    found, errors = cyclic_garbage_of(run)
    assert len(errors) == 40 and all("refused" in e.lower() for e in errors), errors[:3]
    # before the fix: 1,116 here (about 28 objects per failed query)
    assert found < 20, f"{found} objects in reference cycles after 40 refused queries"


@pytest.mark.parametrize("pool", [0, 4])
def test_timed_out_queries_leave_no_cycles(pool: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:     # reads nothing, answers nothing
        silent.bind(("127.0.0.1", 0))
        port = int(silent.getsockname()[1])

        async def run() -> list[str]:
            client = UpstreamClient([Endpoint("127.0.0.1", port)], 0.01, 0.05, 1232, pool=pool)
            await fail(client, 2)
            gc.collect()
            return await fail(client, 20)

        found, errors = cyclic_garbage_of(run)
    assert len(errors) == 20 and all("timed out" in e for e in errors), errors[:3]
    assert found < 20, f"{found} objects in reference cycles after 20 timed-out queries"


def test_servfail_from_a_refusing_upstream_leaves_no_cycles() -> None:
    """The pipeline's side: queries (two at a time for the same name, so one waits on the other's
    lookup) answered SERVFAIL because the upstream refuses; no cycle per query either."""
    import dns.message
    import dns.rcode

    from .test_pipeline import World, main_policy

    w = World(main_policy())     # its upstream is 127.0.0.1:9, where nothing listens
    answers: list[bytes] = []

    async def ask(n: int, start: int) -> None:
        for i in range(start, start + n):
            pending = [w.ask(f"h{i}.example.test", ip="127.0.0.1")[1] for _ in range(2)]
            out = await asyncio.gather(*(w.p.resolve(p) for p in pending))  # type: ignore[arg-type]
            answers.extend(o for o in out if o is not None)

    async def run() -> list[str]:
        await ask(2, 0)
        gc.collect()
        answers.clear()
        await ask(30, 100)
        return []

    found, _ = cyclic_garbage_of(run)
    assert len(answers) == 60 and {dns.message.from_wire(a).rcode() for a in answers} == {dns.rcode.SERVFAIL}
    # before the fix: 630 here (per query its tracebacks, frames, query, pending, the exception and
    # the future the two shared)
    assert found < 20, f"{found} objects in reference cycles after 60 SERVFAIL answers"


def test_tune_collector_makes_full_collections_rare() -> None:
    """(That every data-plane process calls it: the gc metrics in tests/integration/resolver.)"""
    from resolver.service import GC_THRESHOLDS, tune_collector

    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)            # CPython's default
        tune_collector()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[:2] == (700, 10) and GC_THRESHOLDS[2] >= 1000   # only the oldest is rarer
    finally:
        gc.set_threshold(*before)
