"""Hypothesis against a brute-force model: after any sequence of writes and purges under any legal
holds, exactly the records the model keeps remain, and the chain still verifies."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolver.blocklog import DAY_MS, BlocklogStore

from .helpers import T0, template

ORDERS = ("A", "B", None)
TPL = {o: template(o, f"{(o or 'x').lower()}.bad.test.") for o in ORDERS}

batch = st.lists(st.tuples(st.integers(0, 30), st.sampled_from(ORDERS)), min_size=1, max_size=6)
hold = st.tuples(st.sampled_from(("A", "B", None)), st.one_of(st.none(), st.tuples(st.integers(0, 30),
                                                                                   st.integers(0, 30))),
                 st.integers(30, 120))
step = st.one_of(st.tuples(st.just("write"), batch), st.tuples(st.just("purge"), st.integers(0, 60)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(hold, min_size=1, max_size=3), st.lists(step, min_size=1, max_size=12), st.integers(1, 20))
def test_purges_keep_exactly_what_the_model_keeps(holds, steps, days) -> None:
    with tempfile.TemporaryDirectory() as d:
        store = BlocklogStore(str(Path(d) / "b.sqlite"), node="n")
        model: dict[int, tuple[int, str | None]] = {}     # seq -> (time_ms, order)
        active = []
        for order, window, until in holds:
            if order is None and window is None:
                continue
            start, end = (T0 + window[0] * DAY_MS, T0 + (window[0] + window[1]) * DAY_MS) if window else (None, None)
            active.append(store.add_hold(order_ref=order, start_ms=start, end_ms=end, reason="r",
                                         until_ms=T0 + until * DAY_MS, actor="a", now_ms=T0 - 1))
        seq = 0
        for kind, arg in steps:
            if kind == "write":
                raws = [(T0 + day * DAY_MS + i, "198.51.100.1", 1000 + i, (TPL[o],), "udp")
                        for i, (day, o) in enumerate(arg)]
                store.write_batch(raws, now_ms=T0, public_key=None)
                for t, _, _, (tpl,), _ in raws:
                    seq += 1
                    model[seq] = (t, tpl[7])
            else:
                now = T0 + arg * DAY_MS
                store.purge(now_ms=now, retention_days=lambda z: days, actor="p", chunk=3)
                for s, (t, o) in list(model.items()):
                    if t < now - days * DAY_MS and not any(h.active(now) and h.covers(o, t) for h in active):
                        del model[s]
            assert [r.seq for r in store.records()] == sorted(model)
            report = store.verify()
            assert report.ok, report
        store.close()
