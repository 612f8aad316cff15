"""Prometheus gauges for feed status, read from the state database at scrape time, so that the
daemon's endpoint, ``feed status --prometheus`` and the textfile written after each ``feed sync``
show the same numbers as ``feed status``.

    hotline_edge_feed_serial{feed}                      serial of the version serving now
    hotline_edge_feed_applied_timestamp_seconds{feed}   when it was applied
    hotline_edge_feed_last_success_timestamp_seconds{feed}
    hotline_edge_feed_age_seconds{feed}                 seconds since the last successful refresh
    hotline_edge_feed_entries{feed,state}               state = accepted | in_force | rejected
    hotline_edge_feed_held{feed}                        1 while a version waits for `feed approve`
    hotline_edge_feed_alarm{feed,code}                  1 while FEED_STALE / FEED_EXPIRED lasts
    hotline_edge_feed_last_failure{feed,code}           1 for the code of the last failure
    hotline_edge_feed_refusals_total{feed,code}         refused versions and alarms, by code (audit)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .config import Config
from .errors import RefusalCode
from .statedb import StateDB

METRIC_NAMES = (
    "hotline_edge_feed_serial", "hotline_edge_feed_applied_timestamp_seconds",
    "hotline_edge_feed_last_success_timestamp_seconds", "hotline_edge_feed_age_seconds",
    "hotline_edge_feed_entries", "hotline_edge_feed_held", "hotline_edge_feed_alarm",
    "hotline_edge_feed_last_failure", "hotline_edge_feed_refusals_total",
)


class FeedCollector:
    def __init__(self, cfg: Config, db_path: str, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.db_path = db_path
        self.clock = clock

    def collect(self) -> Iterable[Metric]:
        db = StateDB(self.db_path)
        try:
            yield from self._collect(db)
        finally:
            db.close()

    def _collect(self, db: StateDB) -> Iterable[Metric]:
        now = float(self.clock())
        serial = GaugeMetricFamily("hotline_edge_feed_serial", "Serial of the feed version serving now",
                                   labels=["feed"])
        applied = GaugeMetricFamily("hotline_edge_feed_applied_timestamp_seconds",
                                    "When the serving version was applied", labels=["feed"])
        success = GaugeMetricFamily("hotline_edge_feed_last_success_timestamp_seconds",
                                    "Last refresh that reached the source and verified", labels=["feed"])
        age = GaugeMetricFamily("hotline_edge_feed_age_seconds", "Seconds since the last successful refresh",
                                labels=["feed"])
        entries = GaugeMetricFamily("hotline_edge_feed_entries", "Entries of the serving version",
                                    labels=["feed", "state"])
        held = GaugeMetricFamily("hotline_edge_feed_held", "1 while a version waits for approval", labels=["feed"])
        alarm = GaugeMetricFamily("hotline_edge_feed_alarm", "1 while an alarm lasts", labels=["feed", "code"])
        failure = GaugeMetricFamily("hotline_edge_feed_last_failure", "Code of the last failure",
                                    labels=["feed", "code"])
        refusals = CounterMetricFamily("hotline_edge_feed_refusals", "Refused versions and alarms by code",
                                       labels=["feed", "code"])
        counts = db.refusal_counts()
        for f in self.cfg.feeds:
            st = db.state(f.name)
            if st.serial is not None:
                serial.add_metric([f.name], st.serial)
            if st.applied_at is not None:
                applied.add_metric([f.name], st.applied_at)
            if st.last_success_at is not None:
                success.add_metric([f.name], st.last_success_at)
            since = st.last_success_at or st.first_attempt_at
            if since is not None:
                age.add_metric([f.name], max(0.0, now - since))
            entries.add_metric([f.name, "accepted"], st.entries)
            entries.add_metric([f.name, "in_force"], st.in_force)
            entries.add_metric([f.name, "rejected"], len(st.rejected_list))
            held.add_metric([f.name], 1 if db.holds(f.name, "held") else 0)
            for code in (RefusalCode.STALE.value, RefusalCode.EXPIRED.value):
                alarm.add_metric([f.name, code], 1 if st.alarm == code else 0)
            if st.last_failure_code:
                failure.add_metric([f.name, st.last_failure_code], 1)
            for code in RefusalCode:
                refusals.add_metric([f.name, code.value], counts.get((f.name, code.value), 0))
        yield from (serial, applied, success, age, entries, held, alarm, failure, refusals)


def registry(cfg: Config, db_path: str) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(FeedCollector(cfg, db_path))
    return reg


def exposition(cfg: Config, db_path: str) -> bytes:
    return bytes(generate_latest(registry(cfg, db_path)))
