"""A hit sink for the plugin's integration tests: one JSON object per hit, appended to the file named
by HOTLINE_EDGE_TEST_HITS, so a test outside the Unbound process can read what was reported.

The plugin loads it through HOTLINE_EDGE_HIT_SINK=tests.integration.unbound_plugin.filesink:factory
(resolver.service.make_sink, the same hook the resolver's tests use).
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading

from resolver.hits import HitRecord


class FileSink:
    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()

    def submit(self, hit: HitRecord) -> None:
        line = json.dumps(dataclasses.asdict(hit)) + "\n"
        with self.lock, open(self.path, "a") as f:
            f.write(line)


def factory() -> FileSink:
    return FileSink(os.environ["HOTLINE_EDGE_TEST_HITS"])
