import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from admin_api.sessions import Account, DhcpLease, PortBlock, RadiusEvent
from admin_api.store import SCHEMA_VERSION, Retention, Store

T = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)


def d(h: int, day: int = 1) -> datetime:
    return datetime(2026, 3, day, h, tzinfo=UTC)


def keep(cutoff: datetime, case_id: str | None = None, now: datetime = T) -> Retention:
    return Retention(cutoff, now - cutoff, now, case_id)


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "c.sqlite"))
    yield s
    s.close()


def test_migrations_are_explicit_and_idempotent(tmp_path):
    path = str(tmp_path / "m.sqlite")
    s = Store(path)
    assert s.schema_version() == SCHEMA_VERSION
    s.close()
    again = Store(path)
    assert again.migrate() == []
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version, name FROM schema_migrations").fetchall() == [
            (1, "initial compliance schema"), (2, "preservation holds on subscriber records")]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_audit_record_and_change_commit_together_or_not_at_all(store):
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.audit(T, "alice", "officer", "case.test", {"n": 1})
        raise RuntimeError("the change failed after its audit record was written")
    with store.read() as tx:
        assert tx.audit_entries() == []
        assert tx.verify_audit().ok and tx.verify_audit().checked == 0


def append(store, n):
    with store.transaction() as tx:
        for i in range(n):
            tx.audit(T + timedelta(seconds=i), "alice", "officer", "case.test", {"i": i}, case_id="HE-2026-000001")


@pytest.mark.parametrize("tamper", [
    "UPDATE audit SET payload = replace(payload, '\"i\":2', '\"i\":9') WHERE seq = 3",
    "UPDATE audit SET actor = 'mallory' WHERE seq = 3",
    "UPDATE audit SET case_id = 'HE-2026-000002' WHERE seq = 3",
    "DELETE FROM audit WHERE seq = 3",
    "UPDATE audit SET at_ms = at_ms + 1 WHERE seq = 3",
])
def test_the_chain_names_the_first_tampered_record(store, tamper):
    append(store, 5)
    with store.read() as tx:
        assert tx.verify_audit().ok and tx.verify_audit().checked == 5
    with sqlite3.connect(store.path) as conn:
        conn.execute(tamper)
    with store.read() as tx:
        check = tx.verify_audit()
    assert not check.ok
    assert check.first_bad in (3, 4)  # a deleted record breaks the link of the next one
    assert check.checked == 2


def test_reordering_is_detected(store):
    append(store, 3)
    with sqlite3.connect(store.path) as conn:
        rows = conn.execute("SELECT seq, payload, link FROM audit ORDER BY seq").fetchall()
        conn.execute("UPDATE audit SET payload = ?, link = ? WHERE seq = 1", rows[1][1:])
        conn.execute("UPDATE audit SET payload = ?, link = ? WHERE seq = 2", rows[0][1:])
    with store.read() as tx:
        assert tx.verify_audit().first_bad == 1


def test_import_is_idempotent_and_pairs_radius_start_and_stop(store):
    rows = [RadiusEvent("start", "s1", "acct-1", "198.51.100.7", d(10)),
            RadiusEvent("stop", "s1", "acct-1", "198.51.100.7", d(12)),
            RadiusEvent("stop", "s9", "acct-9", "198.51.100.9", d(12), session_seconds=3600),
            DhcpLease("2001:db8::5", "acct-4", d(0), d(0, 2)),
            PortBlock("203.0.113.10", 1024, 2047, "100.64.0.5", d(0), None, None),
            Account("acct-1", "Chan Tai Man")]
    with store.transaction() as tx:
        first = tx.import_rows(rows, T)
    with store.transaction() as tx:
        second = tx.import_rows(rows, T)
    assert (first.inserted, first.updated) == (5, 1)   # the Stop completes the session its Start opened
    assert (second.inserted, second.updated, second.unchanged) == (0, 0, 6)
    with store.read() as tx:
        [s] = tx.sessions_for("198.51.100.7", d(11), d(11), keep(d(0)))
        assert (s.account, s.start, s.end) == ("acct-1", d(10), d(12))
        [s9] = tx.sessions_for("198.51.100.9", d(11), d(11), keep(d(0)))
        assert s9.start == d(11)                       # derived from Acct-Session-Time
        assert tx.sessions_for("198.51.100.7", d(13), d(14), keep(d(0))) == []
        assert len(tx.port_blocks_for("203.0.113.10", 2000, "tcp", start=d(5), end=d(6), retention=keep(d(0)))) == 1
        assert tx.port_blocks_for("203.0.113.10", 2048, "tcp", start=d(5), end=d(6), retention=keep(d(0))) == []


def test_records_older_than_the_retention_cutoff_are_not_found(store):
    with store.transaction() as tx:
        tx.import_rows([DhcpLease("192.0.2.10", "acct-old", d(0), d(1))], T)
    with store.read() as tx:
        assert len(tx.sessions_for("192.0.2.10", d(0), d(1), keep(d(0)))) == 1
        assert tx.sessions_for("192.0.2.10", d(0), d(1), keep(d(2))) == []


def test_a_preservation_hold_keeps_records_for_its_case_only(store):
    # retention 5 days; the lease ended on day 2; now is day 10: outside retention
    period = timedelta(days=5)
    now = datetime(2026, 3, 10, tzinfo=UTC)
    with store.transaction() as tx:
        tx.import_rows([DhcpLease("192.0.2.10", "acct-old", d(0), d(0, 2)),
                        DhcpLease("192.0.2.11", "acct-late", d(0), d(0, 2))], T)
        # held on day 4 (still retained then) for case A; the other hold came too late (day 8)
        tx.add_hold("A", "192.0.2.10", d(0), d(0, 2), until=d(0, 31), reason="preservation request", by="alice",
                    now=d(0, 4))
        tx.add_hold("A", "192.0.2.11", d(0), d(0, 2), until=d(0, 31), reason="too late", by="alice", now=d(0, 8))
    lookup = Retention(now - period, period, now, "A")
    with store.read() as tx:
        assert [s.account for s in tx.sessions_for("192.0.2.10", d(0), d(1), lookup)] == ["acct-old"]
        assert tx.sessions_for("192.0.2.10", d(0), d(1), Retention(now - period, period, now, "B")) == []
        assert tx.sessions_for("192.0.2.11", d(0), d(1), lookup) == []
    with store.transaction() as tx:
        assert tx.purge_sessions(Retention(now - period, period, now)) == {"sessions": 1, "port_blocks": 0}
    with store.read() as tx:
        assert len(tx.sessions_for("192.0.2.10", d(0), d(1), lookup)) == 1     # the held one survived
    after_hold = datetime(2026, 4, 1, tzinfo=UTC)                              # the hold ended on day 31
    with store.transaction() as tx:
        assert tx.purge_sessions(Retention(after_hold - period, period, after_hold))["sessions"] == 1
