"""Serial number arithmetic (RFC 1982) for SOA serials and feed versions.

RFC 1982 section 3.2: "s1 is said to be less than s2 if, and only if, s1 is not equal to s2, and
   (i1 < i2 and i2 - i1 < 2^(SERIAL_BITS - 1)) or
   (i1 > i2 and i1 - i2 > 2^(SERIAL_BITS - 1))"
and the comparison of two serials exactly 2^(SERIAL_BITS-1) apart is undefined; here it is treated
as "not newer", so an undefined comparison never lets a version in.
"""

from __future__ import annotations

from enum import Enum

BITS = 32
HALF = 1 << (BITS - 1)
MOD = 1 << BITS


class Order(Enum):
    OLDER = "older"
    EQUAL = "equal"
    NEWER = "newer"
    UNDEFINED = "undefined"


def compare(new: int, old: int) -> Order:
    """Where ``new`` stands relative to ``old`` (RFC 1982 section 3.2)."""
    a, b = new % MOD, old % MOD
    if a == b:
        return Order.EQUAL
    diff = (a - b) % MOD
    if diff == HALF:
        return Order.UNDEFINED
    return Order.NEWER if diff < HALF else Order.OLDER


def is_newer(new: int, old: int) -> bool:
    return compare(new, old) is Order.NEWER


def add(serial: int, n: int) -> int:
    """RFC 1982 section 3.1: addition of a positive integer up to 2^31 - 1."""
    if not 0 < n < HALF:
        raise ValueError("serial addition is defined for 0 < n < 2^31")
    return (serial + n) % MOD
