"""Every reader of the bundle format parses or raises its own error (BundleFormatError), whatever
bytes or JSON it is given; a parsed bundle's entries are either accepted or refused with a reason."""

from __future__ import annotations

import contextlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from feedsync import bundle as b
from feedsync.errors import BundleFormatError

from .helpers import entry

json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20)
field = st.sampled_from(b.ALL_FIELDS)
mutated_entry = st.builds(lambda k, v, drop: {**{f: x for f, x in entry(1).items() if f != drop}, k: v},
                          field, json_value, field)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data: bytes) -> None:
    for reader in (b.parse_bundle, lambda d: b.read_orders(d, "orders")):
        with contextlib.suppress(BundleFormatError):
            reader(data)


@settings(max_examples=300, deadline=None)
@given(st.lists(mutated_entry | json_value, max_size=6), json_value)
def test_arbitrary_entries(entries: list, feed: object) -> None:
    doc = {"format": b.FORMAT, "feed": feed if isinstance(feed, str) and feed else "hk", "sequence": 1,
           "generated_at": "2026-11-18T00:00:00Z", "entries": entries}
    parsed = b.parse_bundle(json.dumps(doc).encode())
    s = b.screen(parsed, b.Guards(400 * 86400))
    assert len(s.accepted) + len(s.rejected) == len(entries)
    assert all(isinstance(r.reason, b.Reason) for r in s.rejected)
    with contextlib.suppress(BundleFormatError):
        b.read_orders(json.dumps(entries).encode(), "orders.json")
