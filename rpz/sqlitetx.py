"""One write transaction on a SQLite connection, shared by the node's SQLite stores (feedsync's
state database, the blocked-lookup log).

    with immediate(conn) as c:
        c.execute(...)

``BEGIN IMMEDIATE`` takes the write lock at once, so writers serialize and readers (WAL) go on;
an exception rolls everything back. Inside a transaction already open it only yields: the outer
one commits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
