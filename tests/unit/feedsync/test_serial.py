from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedsync import serial


def test_rfc1982_examples() -> None:
    assert serial.compare(2, 1) is serial.Order.NEWER
    assert serial.compare(1, 2) is serial.Order.OLDER
    assert serial.compare(5, 5) is serial.Order.EQUAL
    # wrap-around: 0 follows 2^32 - 1
    assert serial.compare(0, 2**32 - 1) is serial.Order.NEWER
    assert serial.compare(2**32 - 1, 0) is serial.Order.OLDER
    # exactly half way apart is undefined (and never treated as newer)
    assert serial.compare(2**31, 0) is serial.Order.UNDEFINED
    assert not serial.is_newer(2**31, 0)


def test_add_wraps_and_bounds() -> None:
    assert serial.add(2**32 - 1, 1) == 0
    with pytest.raises(ValueError):
        serial.add(1, 2**31)


@given(st.integers(0, 2**32 - 1), st.integers(1, 2**31 - 1))
def test_added_serial_is_newer(s: int, n: int) -> None:
    assert serial.compare(serial.add(s, n), s) is serial.Order.NEWER
    assert serial.compare(s, serial.add(s, n)) is serial.Order.OLDER
