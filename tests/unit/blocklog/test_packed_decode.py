"""The writer's one-pass decoder of packed batches (resolver/_packed.c) gives exactly what the numpy
path gives, refuses (returns None for) every batch list the numpy path refuses, so that path names
the culprit, and the writer reads the same records with it and without it."""

from __future__ import annotations

import marshal
import socket

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolver import blocklog_ship, mmsg
from resolver.blocklog_seal import ADDR_W
from resolver.blocklog_ship import TemplateTable, _packed_columns, decode_columns

from .test_packed_shipping import T1, T2, refs

try:
    from resolver._packed import decode_packed
except ImportError:          # pragma: no cover - depends on the install
    decode_packed = None

needs_c = pytest.mark.skipif(decode_packed is None, reason="resolver._packed not built: the install had no gcc or "
                             "python3-dev (Debian packages)")
NS = mmsg.NAME_SIZE
V4, V6 = int(socket.AF_INET), int(socket.AF_INET6)


@st.composite
def packed(draw: st.DrawFn) -> tuple[list[tuple[int, str, int, int, int]], bytes, bytes]:
    batches, names, at = [], b"", b""
    for _ in range(draw(st.integers(1, 6))):
        slots = draw(st.integers(1, 8))
        picked = draw(st.lists(st.integers(0, slots - 1), min_size=1, max_size=12))
        batches.append((draw(st.integers(-(2**63), 2**63 - 1)), draw(st.sampled_from(["udp", "tcp"])),
                        draw(st.sampled_from([V4, V6])), slots, len(picked)))
        names += draw(st.binary(min_size=NS * slots, max_size=NS * slots))
        at += bytes(picked)
    return batches, names, at


@needs_c
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(packed())
def test_one_pass_gives_what_numpy_gives(p: tuple[list[tuple[int, str, int, int, int]], bytes, bytes]) -> None:
    """Times across the whole int64 range, IPv4 and IPv6 slots of arbitrary bytes (only the
    address and port may be taken), udp and tcp, answers that repeat slots."""
    batches, names, at = p
    fast = decode_packed(batches, names, at)
    assert fast is not None
    times, addrs, tcp = _packed_columns(batches, names, at)
    assert np.frombuffer(fast[0], dtype=np.int64).tolist() == times.tolist()
    assert fast[1] == addrs.tobytes() and len(fast[1]) == ADDR_W * len(at)
    assert (None if fast[2] is None else list(fast[2])) == (None if tcp is None else tcp.tolist())
    assert (fast[2] is None) == all(b[1] == "udp" for b in batches)


S2 = bytes(2 * NS)
BAD = [   # (batches, names, at): each refused by the numpy path
    ([(7, "udp", 99, 2, 1)], S2, bytes([1])),                    # no such family
    ([(7, "udp", V4, 2, 1)], S2, bytes([2])),                    # a slot past its batch's slots
    ([(7, "udp", V4, 3, 1)], S2, bytes([0])),                    # more slots than sent
    ([(7, "udp", V4, 1, 1)], S2, bytes([0])),                    # fewer slots than sent
    ([(7, "udp", V4, 2, 1)], S2 + bytes(3), bytes([0])),         # slots that are not whole
    ([(7, "quic", V4, 2, 1)], S2, bytes([0])),                   # no such transport
    ([(7, "UDP", V4, 2, 1)], S2, bytes([0])),                    # (case matters)
    ([(7, "udp", V4, 2, 2)], S2, bytes([0])),                    # an answer missing
    ([(7, "udp", V4, 2, 1)], S2, bytes([0, 1])),                 # an answer too many
    ([(1 << 63, "udp", V4, 2, 1)], S2, bytes([0])),              # a time past int64
    ([(-(1 << 63) - 1, "udp", V4, 2, 1)], S2, bytes([0])),       # ... and below it
    ([(7.0, "udp", V4, 2, 1)], S2, bytes([0])),                  # a time not an int
    ([(True, "udp", V4, 2, 1)], S2, bytes([0])),                 # a bool, not an int
    ([(7, "udp", V4, 1 << 70, 1)], S2, bytes([0])),              # slots past int64
    ([(7, "udp", V4, 257, 1)], bytes(257 * NS), bytes([0])),     # more slots than a receive batch has
    ([(7, "udp", V4, 2, True)], S2, bytes([0])),                 # a bool count
    ([(7, "udp", V4, 2, 0)], S2, b""),                           # a batch of no answers
    ([(7, "udp", V4, 0, 1)], b"", bytes([0])),                   # a batch of no slots
    ([(7, "udp", V4, -2, 1)], S2, bytes([0])),                   # negative slots
    ([(7, ["udp"], V4, 2, 1)], S2, bytes([0])),                  # unhashable transport
    ([(7, "udp", [V4], 2, 1)], S2, bytes([0])),                  # unhashable family
    ([[7, "udp", V4, 2, 1]], S2, bytes([0])),                    # a list, not a tuple
    ([(7, "udp", V4, 2)], S2, bytes([0])),                       # a field missing
    ([(7, "udp", V4, 2, 1, 0)], S2, bytes([0])),                 # a field too many
    ([(7, "udp", V4, 1, (1 << 63) - 1), (7, "udp", V4, 1, (1 << 63) - 1), (7, "udp", V4, 1, 4)],
     bytes(3 * NS), bytes(2)),                                   # counts whose sum wraps
    ([(7, "udp", V4, 2, 1), (8, "udp", V6, 1, 1)], S2 + bytes(NS), bytes([0, 1])),   # the second batch's slot
]


@needs_c
@pytest.mark.parametrize("batches,names,at", BAD)
def test_what_numpy_refuses_is_left_to_it(batches: list[object], names: bytes, at: bytes) -> None:
    assert decode_packed(batches, names, at) is None
    with pytest.raises(ValueError, match="packed batch"):
        _packed_columns(batches, names, at)
    good = [(5, "udp", V4, 2, 1)]                 # after a good batch, too (the culprit is named by numpy)
    assert decode_packed(good + batches, S2 + names, bytes([1]) + at) is None
    with pytest.raises(ValueError, match="packed batch"):
        _packed_columns(good + batches, S2 + names, bytes([1]) + at)


@needs_c
def test_arguments_of_the_wrong_type_raise() -> None:
    with pytest.raises(TypeError):
        decode_packed((), b"", b"")                                # batches must be a list
    with pytest.raises(TypeError):
        decode_packed([], "names", b"")


@pytest.mark.parametrize("with_c", [True, False])
def test_the_writer_reads_the_same_records_with_and_without_the_extension(monkeypatch: pytest.MonkeyPatch,
                                                                           with_c: bool) -> None:
    if not with_c:
        monkeypatch.setattr(blocklog_ship, "decode_packed", None)
    elif decode_packed is None:                   # pragma: no cover - depends on the install
        pytest.skip("resolver._packed not built: the install had no gcc or python3-dev (Debian packages)")
    v4 = (np.array([V4], "=u2").tobytes() + (53).to_bytes(2, "big") + bytes([192, 0, 2, 7]) + bytes(20))
    v6 = (np.array([V6], "=u2").tobytes() + (40000).to_bytes(2, "big") + bytes(4)
          + socket.inet_pton(socket.AF_INET6, "2001:db8::5") + bytes(4))
    batches = [(1_790_000_000_000, "udp", V4, 2, 2), (1_790_000_000_001, "tcp", V6, 1, 1)]
    msg = marshal.dumps((2, 4242, 0, [], batches, v4 + bytes(NS) + v6, bytes([0, 1, 0]), refs(0, 1, 1),
                         (0, [(T1,), (T2,)])))
    _, _, cols = decode_columns(msg, TemplateTable())
    assert cols.times.tolist() == [1_790_000_000_000, 1_790_000_000_000, 1_790_000_000_001]
    assert [cols.templates[i][0] for i in cols.tpl.tolist()] == ["csam-site.test.", "fraud.test.", "fraud.test."]
    assert cols.tcp is not None and cols.tcp.tolist() == [0, 0, 1]
    assert cols.addrs.tobytes() == (bytes([4, 192, 0, 2, 7]) + bytes(12) + (53).to_bytes(2, "big")
                                    + bytes([4]) + bytes(18)
                                    + bytes([6]) + socket.inet_pton(socket.AF_INET6, "2001:db8::5")
                                    + (40000).to_bytes(2, "big"))


@needs_c
def test_the_extension_is_the_one_in_use() -> None:
    assert blocklog_ship.decode_packed is decode_packed
