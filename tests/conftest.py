from __future__ import annotations

import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return ROOT


def pytest_collection_finish(session: pytest.Session) -> None:
    # the Ansible role's deployment starts now, beside the rest of the suite (tests/ops/early.py)
    if session.config.option.collectonly:
        return
    from tests.ops import early
    early.start_if_needed(item.nodeid for item in session.items)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from tests.ops import early
    early.finish()
