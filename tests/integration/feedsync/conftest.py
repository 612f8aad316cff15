from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from feedsync.publish import keygen


class _Handler(http.server.SimpleHTTPRequestHandler):
    def translate_path(self, path: str) -> str:
        rel = super().translate_path(path)[len(os.getcwd()):].lstrip("/")
        return os.path.join(self.server.root, rel)  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: object) -> None:
        self.server.requests.append(self.path)  # type: ignore[attr-defined]


@dataclass
class HttpRepo:
    server: http.server.ThreadingHTTPServer
    repo: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def serve(self, root: str) -> None:
        self.server.root = root  # type: ignore[attr-defined]

    @property
    def requests(self) -> list[str]:
        return self.server.requests  # type: ignore[attr-defined, no-any-return]


@pytest.fixture
def http_repo(tmp_path) -> Iterator[HttpRepo]:  # type: ignore[no-untyped-def]
    """A real HTTP server on loopback serving a repository folder (swappable, for rollback tests)."""
    repo = str(tmp_path / "repo")
    os.makedirs(repo)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.root = repo  # type: ignore[attr-defined]
    srv.requests = []  # type: ignore[attr-defined]
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield HttpRepo(srv, repo)
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def keys(tmp_path) -> str:  # type: ignore[no-untyped-def]
    d = str(tmp_path / "keys")
    for name in ("root", "targets", "snapshot", "timestamp"):
        keygen(d, name)
    return d
