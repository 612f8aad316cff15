"""Random and mutated zone text never raises anything but the rpz error type, on both readers."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpz.errors import RpzError
from rpz.fastzone import compile_text_fast
from rpz.zone import compile_text

SEED = b"""$ORIGIN rpz.test.
$TTL 300
@ SOA ns admin ( 1 3600 600 86400 60 ) ; c
  NS localhost.
bad.example CNAME .
*.bad.example CNAME *.
  TXT "order=TW-1"
24.0.2.0.192.rpz-ip CNAME rpz-drop.
128.1.zz.db8.2001.rpz-client-ip CNAME rpz-passthru.
ns.x.rpz-nsdname A 192.0.2.1
ld AAAA 2001:db8::1
w CNAME *.garden.test.
"""

TOKENS = [b"$ORIGIN", b"$TTL", b"$INCLUDE", b"@", b"(", b")", b";", b'"', b"\\", b"\\065", b".", b"*", b"*.",
          b"CNAME", b"A", b"TXT", b"SOA", b"NS", b"IN", b"CH", b"rpz-ip", b"rpz-nsdname", b"zz", b"300",
          b"4294967296", b"\n", b" ", b"\t", b"\r\n", b"\xff", b"\x00", b"rpz-passthru.", b"a" * 70]


def _both(data: bytes) -> None:
    for compile_ in (lambda d: compile_text(d, "fuzz"), lambda d: compile_text_fast(d, "fuzz", None, None, 0)):
        with contextlib.suppress(RpzError):
            compile_(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes(data):
    _both(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(SEED)), st.integers(0, 8), st.sampled_from(TOKENS)), max_size=6))
def test_mutated_zone(edits):
    data = bytearray(SEED)
    for at, cut, tok in edits:
        pos = min(at, len(data))
        data[pos : pos + cut] = tok
    _both(bytes(data))


@pytest.mark.parametrize("data", [b"", b"\n\n", b"$ORIGIN .\n@ SOA . . 1 2 3 4 5\n* CNAME .\n",
                                  b"$ORIGIN a.\n@ SOA a. a. 1 2 3 4 5\n" + b"x." * 130 + b" CNAME .\n"])
def test_edge_inputs(data):
    _both(data)
