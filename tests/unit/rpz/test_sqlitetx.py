"""rpz.sqlitetx.immediate: commits, rolls back on error, and joins a transaction already open."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from rpz.sqlitetx import immediate


def test_commit_rollback_and_nesting(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "t.sqlite", isolation_level=None)
    conn.execute("CREATE TABLE t (x INTEGER)")
    with immediate(conn) as c:
        c.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(RuntimeError), immediate(conn) as c:
        c.execute("INSERT INTO t VALUES (2)")
        raise RuntimeError("boom")
    with immediate(conn) as c:
        c.execute("INSERT INTO t VALUES (3)")
        with immediate(conn) as inner:      # joins: the outer one commits both
            assert inner.in_transaction
            inner.execute("INSERT INTO t VALUES (4)")
        assert conn.in_transaction
    assert not conn.in_transaction
    assert [r[0] for r in conn.execute("SELECT x FROM t ORDER BY x")] == [1, 3, 4]
    other = sqlite3.connect(tmp_path / "t.sqlite")      # committed: another connection sees it
    assert other.execute("SELECT count(*) FROM t").fetchone()[0] == 3
