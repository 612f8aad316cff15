"""The compliance store: the ONLY module with SQL for the compliance schema.

SQLite by default (one file under the state directory, WAL), schema built by explicit numbered
migrations with sqlite-utils; plain parameterised SQL otherwise, kept portable so a PostgreSQL
store can follow (integer epoch milliseconds for time, TEXT for JSON, no SQLite-only functions in
queries). Every write goes through ``Store.transaction()``; the audit record of a change is
appended with ``Tx.audit`` inside the same transaction, so both commit or neither does.

The audit log is a hash chain (``rpz.hashchain``):
    link_i = SHA-256(link_{i-1} || SHA-256(canonical(record_i)))
Each row keeps the canonical record bytes it was chained over; ``verify`` recomputes every link and
checks that the indexed columns still say what the record says.

SQL text is built only from constant identifiers (table and column names written here); every
value is a bound parameter. That is why the f-string queries carry ``noqa: S608``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlite_utils

from rpz import hashchain

from .clock import from_ms, iso, to_ms
from .codec import instrument_from_json, instrument_to_json, scope_from_json, scope_to_json
from .errors import Conflict, NotFound, StoreError
from .model import (
    Agency,
    Callback,
    CallOutcome,
    CallPerson,
    CaseRecord,
    Channel,
    ClaimedRequester,
    Requester,
    RequesterStatus,
)
from .sessions import Account, DhcpLease, PortBlock, RadiusEvent, Row
from .workflow import State

# -- migrations ----------------------------------------------------------------------------------


def _m1_initial(db: sqlite_utils.Database) -> None:
    db.table("agencies").create({"code": str, "name": str, "jurisdiction": str, "created_ms": int}, pk="code")
    db.table("requesters").create({
        "id": int, "agency": str, "name": str, "rank": str, "warrant_card": str, "official_phone": str,
        "phone_source": str, "supervisor_id": int, "status": str, "created_ms": int}, pk="id",
        not_null={"agency", "name", "official_phone", "status"})
    db.table("tokens").create({"id": str, "role": str, "subject": str, "hash": str, "created_ms": int,
                         "expires_ms": int, "revoked_ms": int, "note": str}, pk="id",
                        not_null={"role", "subject", "hash", "expires_ms"})
    db.table("cases").create({
        "id": str, "state": str, "channel": str, "agency_request_number": str, "requester_id": int,
        "claimed": str, "scope": str, "received_ms": int, "updated_ms": int, "created_by": str,
        "frozen_digest": str, "preparer": str, "approver": str, "reasons": str, "outcome": str,
        "followup": str, "followup_due_ms": int, "executed_ms": int, "delivered_ms": int,
        "version": int}, pk="id", not_null={"state", "scope", "received_ms"})
    db.table("cases").create_index(["state"])
    db.table("cases").create_index(["received_ms"])
    db.table("callbacks").create({"id": int, "case_id": str, "person": str, "requester_id": int, "number": str,
                            "number_source": str, "outcome": str, "called_by": str, "at_ms": int,
                            "note": str}, pk="id")
    db.table("callbacks").create_index(["case_id"])
    db.table("executed_instruments").create({"key": str, "case_id": str, "executed_ms": int}, pk="key")
    db.table("packages").create({"case_id": str, "body": str, "sha256": str, "signature": str, "key_id": str,
                           "created_ms": int}, pk="case_id")
    db.table("subscribers").create({"account": str, "name": str, "postal_address": str, "phone": str,
                              "email": str, "updated_ms": int}, pk="account")
    db.table("sessions").create({"id": int, "source": str, "source_key": str, "account": str, "address": str,
                           "start_ms": int, "end_ms": int, "imported_ms": int}, pk="id")
    db.table("sessions").create_index(["source_key"], unique=True)
    db.table("sessions").create_index(["address", "start_ms"])
    db.table("port_blocks").create({"id": int, "source_key": str, "public_ip": str, "port_lo": int, "port_hi": int,
                              "protocol": str, "inside": str, "start_ms": int, "end_ms": int,
                              "imported_ms": int}, pk="id")
    db.table("port_blocks").create_index(["source_key"], unique=True)
    db.table("port_blocks").create_index(["public_ip", "start_ms"])
    db.table("audit").create({"seq": int, "at_ms": int, "actor": str, "role": str, "case_id": str, "kind": str,
                        "payload": str, "link": bytes}, pk="seq", not_null={"payload", "link"})
    db.table("audit").create_index(["case_id"])
    # The head of purged audit records (none are purged today; kept so a purge can stay verifiable).
    db.table("audit_anchor").create({"id": int, "seq": int, "link": bytes}, pk="id")


def _m2_preservation_holds(db: sqlite_utils.Database) -> None:
    db.table("holds").create({"id": int, "case_id": str, "address": str, "start_ms": int, "end_ms": int,
                              "until_ms": int, "reason": str, "created_by": str, "created_ms": int}, pk="id",
                             not_null={"case_id", "address", "start_ms", "end_ms", "until_ms", "created_ms"})
    db.table("holds").create_index(["address"])


MIGRATIONS: tuple[tuple[int, str, Callable[[sqlite_utils.Database], None]], ...] = (
    (1, "initial compliance schema", _m1_initial),
    (2, "preservation holds on subscriber records", _m2_preservation_holds),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


@dataclass(frozen=True, slots=True)
class Retention:
    """What lookups may still see: records that ended after ``cutoff`` (= now - period), plus those
    a preservation hold of ``case_id`` covered while they were still retained."""

    cutoff: datetime
    period: timedelta
    now: datetime
    case_id: str | None = None


@dataclass(frozen=True, slots=True)
class Token:
    id: str
    role: str
    subject: str
    hash: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    note: str


@dataclass(frozen=True, slots=True)
class SessionHit:
    source: str
    account: str
    address: str
    start: datetime | None
    end: datetime | None


@dataclass(frozen=True, slots=True)
class PortBlockHit:
    public_ip: str
    port_lo: int
    port_hi: int
    protocol: str | None
    inside: str
    start: datetime
    end: datetime | None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    role: str
    case_id: str | None
    kind: str
    data: dict[str, Any]
    link: str


@dataclass(frozen=True, slots=True)
class ImportCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


class Store:
    """One SQLite file. Thread-safe: one connection, one lock (the API serves from a thread pool)."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            if path != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._conn = sqlite3.connect(path, check_same_thread=False, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute("PRAGMA synchronous=FULL")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"{path}: cannot open the compliance database: {exc} "
                             f"(check the path and permissions of [api] database)") from exc
        self._db = sqlite_utils.Database(self._conn, execute_plugins=False)
        self._lock = threading.RLock()
        self.migrate()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def schema_version(self) -> int:
        with self._lock:
            if "schema_migrations" not in self._db.table_names():
                return 0
            row = self._conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
            return int(row[0] or 0)

    def migrate(self) -> list[int]:
        """Apply the migrations this file lacks, each in its own transaction; returns those applied."""
        applied = []
        with self._lock:
            if "schema_migrations" not in self._db.table_names():
                self._db.table("schema_migrations").create({"version": int, "name": str, "applied_ms": int},
                                                     pk="version", if_not_exists=True)
            have = self.schema_version()
            if have > SCHEMA_VERSION:
                raise StoreError(f"{self.path}: schema version {have} is newer than this program "
                                 f"({SCHEMA_VERSION}); upgrade hotline-edge")
            for version, name, step in MIGRATIONS:
                if version <= have:
                    continue
                with self._db.atomic():
                    step(self._db)
                    self._conn.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)",
                                       (version, name, to_ms(datetime.now().astimezone())))
                applied.append(version)
        return applied

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        """A write transaction (BEGIN IMMEDIATE): everything done through the Tx commits together."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: cannot start a transaction: {exc}") from exc
            try:
                yield Tx(self._conn, self._db)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")

    @contextlib.contextmanager
    def read(self) -> Iterator[Tx]:
        with self._lock:
            yield Tx(self._conn, self._db)


def _j(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _opt_ms(value: datetime | None) -> int | None:
    return to_ms(value) if value is not None else None


def _opt_dt(value: int | None) -> datetime | None:
    return from_ms(value) if value is not None else None


class Tx:
    """Operations inside one transaction (or one read). All SQL of the compliance schema is here."""

    def __init__(self, conn: sqlite3.Connection, db: sqlite_utils.Database) -> None:
        self.conn = conn
        self.db = db

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(sql, params).fetchone()

    # -- registry --------------------------------------------------------------------------------

    def add_agency(self, a: Agency, now: datetime) -> None:
        if self._one("SELECT 1 FROM agencies WHERE code = ?", (a.code,)):
            raise Conflict(f"agency {a.code} is already registered")
        self.conn.execute("INSERT INTO agencies VALUES (?, ?, ?, ?)", (a.code, a.name, a.jurisdiction, to_ms(now)))

    def get_agency(self, code: str) -> Agency:
        row = self._one("SELECT code, name, jurisdiction FROM agencies WHERE code = ?", (code,))
        if row is None:
            raise NotFound("agency", code)
        return Agency(*row)

    def list_agencies(self) -> list[Agency]:
        return [Agency(*r) for r in self.conn.execute("SELECT code, name, jurisdiction FROM agencies ORDER BY code")]

    _REQ = "id, agency, name, rank, warrant_card, official_phone, phone_source, supervisor_id, status"

    def add_requester(self, r: Requester, now: datetime) -> Requester:
        cur = self.conn.execute(
            "INSERT INTO requesters (agency, name, rank, warrant_card, official_phone, phone_source, "
            "supervisor_id, status, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (r.agency, r.name, r.rank, r.warrant_card, r.official_phone, r.phone_source, r.supervisor_id,
             r.status.value, to_ms(now)))
        assert cur.lastrowid is not None
        return self.get_requester(cur.lastrowid)

    def _requester(self, row: Any) -> Requester:
        return Requester(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], RequesterStatus(row[8]))

    def get_requester(self, rid: int) -> Requester:
        row = self._one(f"SELECT {self._REQ} FROM requesters WHERE id = ?", (rid,))  # noqa: S608
        if row is None:
            raise NotFound("requester", str(rid))
        return self._requester(row)

    def find_requester(self, rid: int | None) -> Requester | None:
        if rid is None:
            return None
        row = self._one(f"SELECT {self._REQ} FROM requesters WHERE id = ?", (rid,))  # noqa: S608
        return self._requester(row) if row else None

    def list_requesters(self) -> list[Requester]:
        return [self._requester(r) for r in self.conn.execute(f"SELECT {self._REQ} FROM requesters ORDER BY id")]  # noqa: S608

    def set_requester_status(self, rid: int, status: RequesterStatus) -> Requester:
        self.get_requester(rid)
        self.conn.execute("UPDATE requesters SET status = ? WHERE id = ?", (status.value, rid))
        return self.get_requester(rid)

    # -- tokens ----------------------------------------------------------------------------------

    def add_token(self, t: Token) -> None:
        self.conn.execute("INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                          (t.id, t.role, t.subject, t.hash, to_ms(t.created_at), to_ms(t.expires_at),
                           _opt_ms(t.revoked_at), t.note))

    def _token(self, row: Any) -> Token:
        return Token(row[0], row[1], row[2], row[3], from_ms(row[4]), from_ms(row[5]), _opt_dt(row[6]), row[7] or "")

    def find_token(self, token_id: str) -> Token | None:
        row = self._one("SELECT id, role, subject, hash, created_ms, expires_ms, revoked_ms, note "
                        "FROM tokens WHERE id = ?", (token_id,))
        return self._token(row) if row else None

    def list_tokens(self) -> list[Token]:
        return [self._token(r) for r in self.conn.execute(
            "SELECT id, role, subject, hash, created_ms, expires_ms, revoked_ms, note FROM tokens ORDER BY created_ms")]

    def revoke_token(self, token_id: str, now: datetime) -> None:
        if self.find_token(token_id) is None:
            raise NotFound("token", token_id)
        self.conn.execute("UPDATE tokens SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL",
                          (to_ms(now), token_id))

    # -- cases -----------------------------------------------------------------------------------

    def next_case_id(self, prefix: str, year: int) -> str:
        stem = f"{prefix}-{year}-"
        row = self._one("SELECT id FROM cases WHERE id LIKE ? ORDER BY id DESC LIMIT 1", (stem + "%",))
        n = int(row[0][len(stem):]) + 1 if row else 1
        return f"{stem}{n:06d}"

    _CASE = ("id, state, channel, agency_request_number, requester_id, claimed, scope, received_ms, updated_ms, "
             "created_by, frozen_digest, preparer, approver, reasons, outcome, followup, followup_due_ms, "
             "executed_ms, delivered_ms, version")

    def _case_params(self, c: CaseRecord) -> tuple[Any, ...]:
        claimed = {"name": c.claimed.name, "agency": c.claimed.agency, "warrant_card": c.claimed.warrant_card,
                   "phone": c.claimed.phone, "email": c.claimed.email}
        return (c.id, c.state.value, c.channel.value, c.agency_request_number, c.requester_id, _j(claimed),
                _j(scope_to_json(c.scope)), to_ms(c.received_at), to_ms(c.updated_at), c.created_by,
                c.frozen_digest, c.preparer, c.approver, _j(list(c.reasons)), c.outcome,
                _j(instrument_to_json(c.followup)) if c.followup else None, _opt_ms(c.followup_due),
                _opt_ms(c.executed_at), _opt_ms(c.delivered_at), c.version)

    def _case(self, row: Any) -> CaseRecord:
        return CaseRecord(
            id=row[0], state=State(row[1]), channel=Channel(row[2]), agency_request_number=row[3] or "",
            requester_id=row[4], claimed=ClaimedRequester(**json.loads(row[5])),
            scope=scope_from_json(json.loads(row[6])), received_at=from_ms(row[7]), updated_at=from_ms(row[8]),
            created_by=row[9] or "", frozen_digest=row[10], preparer=row[11], approver=row[12],
            reasons=tuple(json.loads(row[13] or "[]")), outcome=row[14],
            followup=instrument_from_json(json.loads(row[15])) if row[15] else None,
            followup_due=_opt_dt(row[16]), executed_at=_opt_dt(row[17]), delivered_at=_opt_dt(row[18]),
            version=row[19] or 0)

    def insert_case(self, c: CaseRecord) -> None:
        self.conn.execute(f"INSERT INTO cases ({self._CASE}) VALUES ({', '.join('?' * 20)})", self._case_params(c))  # noqa: S608

    def update_case(self, c: CaseRecord, expect_version: int) -> None:
        cols = self._CASE.split(", ")
        params = self._case_params(c)
        sets = ", ".join(f"{col} = ?" for col in cols[1:])
        cur = self.conn.execute(f"UPDATE cases SET {sets} WHERE id = ? AND version = ?",  # noqa: S608
                                (*params[1:], c.id, expect_version))
        if cur.rowcount != 1:
            raise Conflict(f"case {c.id} was changed by someone else; reload it and try again")

    def get_case(self, case_id: str) -> CaseRecord:
        row = self._one(f"SELECT {self._CASE} FROM cases WHERE id = ?", (case_id,))  # noqa: S608
        if row is None:
            raise NotFound("case", case_id)
        return self._case(row)

    def list_cases(self, state: str | None = None, limit: int = 100, offset: int = 0) -> list[CaseRecord]:
        where, params = ("WHERE state = ?", [state]) if state else ("", [])
        rows = self.conn.execute(f"SELECT {self._CASE} FROM cases {where} ORDER BY received_ms, id "  # noqa: S608
                                 "LIMIT ? OFFSET ?", (*params, limit, offset))
        return [self._case(r) for r in rows]

    def cases_in_states(self, states: Sequence[str]) -> list[CaseRecord]:
        marks = ", ".join("?" * len(states))
        rows = self.conn.execute(f"SELECT {self._CASE} FROM cases WHERE state IN ({marks}) ORDER BY id", tuple(states))  # noqa: S608
        return [self._case(r) for r in rows]

    def cases_received_between(self, start: datetime, end: datetime) -> list[CaseRecord]:
        rows = self.conn.execute(f"SELECT {self._CASE} FROM cases WHERE received_ms >= ? AND received_ms < ? "  # noqa: S608
                                 "ORDER BY id", (to_ms(start), to_ms(end)))
        return [self._case(r) for r in rows]

    # -- callbacks, executed instruments, packages ------------------------------------------------

    def add_callback(self, case_id: str, cb: Callback, note: str) -> int:
        cur = self.conn.execute(
            "INSERT INTO callbacks (case_id, person, requester_id, number, number_source, outcome, called_by, "
            "at_ms, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (case_id, cb.person.value, cb.requester_id, cb.number, cb.number_source, cb.outcome.value,
             cb.called_by, to_ms(cb.at), note))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def callbacks(self, case_id: str) -> tuple[Callback, ...]:
        rows = self.conn.execute("SELECT person, requester_id, number, number_source, outcome, called_by, at_ms "
                                 "FROM callbacks WHERE case_id = ? ORDER BY id", (case_id,))
        return tuple(Callback(CallPerson(r[0]), r[1], r[2], r[3], CallOutcome(r[4]), r[5], from_ms(r[6]))
                     for r in rows)

    def executed_instrument_keys(self, except_case: str) -> frozenset[str]:
        rows = self.conn.execute("SELECT key FROM executed_instruments WHERE case_id != ?", (except_case,))
        return frozenset(r[0] for r in rows)

    def mark_instrument_executed(self, key: str, case_id: str, now: datetime) -> None:
        existing = self._one("SELECT case_id FROM executed_instruments WHERE key = ?", (key,))
        if existing is not None and existing[0] != case_id:
            raise Conflict(f"instrument {key} was already executed in case {existing[0]}")
        if existing is None:
            self.conn.execute("INSERT INTO executed_instruments VALUES (?, ?, ?)", (key, case_id, to_ms(now)))

    def put_package(self, case_id: str, *, body: str, sha256: str, signature: str, key_id: str, now: datetime) -> None:
        self.conn.execute("INSERT INTO packages VALUES (?, ?, ?, ?, ?, ?)",
                          (case_id, body, sha256, signature, key_id, to_ms(now)))

    def get_package(self, case_id: str) -> tuple[str, str, str, str]:
        row = self._one("SELECT body, sha256, signature, key_id FROM packages WHERE case_id = ?", (case_id,))
        if row is None:
            raise NotFound("package for case", case_id)
        return row[0], row[1], row[2], row[3]

    # -- subscriber sessions -----------------------------------------------------------------------

    def import_rows(self, rows: Sequence[Row], now: datetime) -> ImportCounts:
        ins = upd = same = 0
        for row in rows:
            outcome = self._import_row(row, to_ms(now))
            ins += outcome == "inserted"
            upd += outcome == "updated"
            same += outcome == "unchanged"
        return ImportCounts(ins, upd, same)

    def _upsert(self, table: str, key_col: str, key: Any, values: dict[str, Any]) -> str:
        cols = list(values)
        row = self._one(f"SELECT {', '.join(cols)} FROM {table} WHERE {key_col} = ?", (key,))  # noqa: S608
        if row is None:
            names = [key_col, *cols]
            self.conn.execute(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",  # noqa: S608
                              (key, *values.values()))
            return "inserted"
        if tuple(row) == tuple(values.values()):
            return "unchanged"
        self.conn.execute(f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in cols)} WHERE {key_col} = ?",  # noqa: S608
                          (*values.values(), key))
        return "updated"

    def _import_row(self, row: Row, now_ms: int) -> str:
        if isinstance(row, Account):
            existing = self._one("SELECT name, postal_address, phone, email FROM subscribers WHERE account = ?",
                                 (row.account,))
            values = (row.name, row.postal_address, row.phone, row.email)
            if existing is not None and tuple(existing) == values:
                return "unchanged"
            self.conn.execute("INSERT INTO subscribers VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(account) DO UPDATE "
                              "SET name = excluded.name, postal_address = excluded.postal_address, "
                              "phone = excluded.phone, email = excluded.email, updated_ms = excluded.updated_ms",
                              (row.account, *values, now_ms))
            return "inserted" if existing is None else "updated"
        if isinstance(row, PortBlock):
            key = f"cgnat|{row.public_ip}|{row.port_lo}-{row.port_hi}|{row.inside}|{to_ms(row.start)}"
            return self._upsert("port_blocks", "source_key", key, {
                "public_ip": row.public_ip, "port_lo": row.port_lo, "port_hi": row.port_hi,
                "protocol": row.protocol, "inside": row.inside, "start_ms": to_ms(row.start),
                "end_ms": _opt_ms(row.end)})
        if isinstance(row, DhcpLease):
            key = f"dhcp|{row.address}|{row.account}|{to_ms(row.start)}"
            return self._upsert("sessions", "source_key", key, {
                "source": "dhcp", "account": row.account, "address": row.address,
                "start_ms": to_ms(row.start), "end_ms": to_ms(row.end)})
        return self._import_radius(row)

    def _import_radius(self, ev: RadiusEvent) -> str:
        key = f"radius|{ev.session_id}|{ev.address}"
        cur = self._one("SELECT account, address, start_ms, end_ms FROM sessions WHERE source_key = ?", (key,))
        start, end = (cur[2], cur[3]) if cur else (None, None)
        at = to_ms(ev.at)
        derived_start = at - ev.session_seconds * 1000 if ev.session_seconds is not None else None
        if ev.status == "start":
            start = at
        elif start is None and derived_start is not None:
            start = derived_start
        if ev.status == "stop":
            end = at
        return self._upsert("sessions", "source_key", key, {
            "source": "radius", "account": ev.account, "address": ev.address, "start_ms": start, "end_ms": end})

    @staticmethod
    def _retained(table: str, address_col: str, r: Retention, any_case: bool = False) -> tuple[str, dict[str, Any]]:
        """SQL condition: the record is inside retention, or a preservation hold placed while it was
        still retained covers it (holds of ``r.case_id`` only, or of any case for the purge)."""
        whose = "" if any_case else "h.case_id = :hold_case AND "
        sql = (f"({table}.end_ms IS NULL OR {table}.end_ms >= :cutoff OR EXISTS (SELECT 1 FROM holds h WHERE "  # noqa: S608
               f"{whose}h.address = {table}.{address_col} AND h.start_ms <= {table}.end_ms "
               f"AND h.end_ms >= {table}.start_ms AND h.until_ms >= :now "
               f"AND h.created_ms <= {table}.end_ms + :period))")
        return sql, {"cutoff": to_ms(r.cutoff), "hold_case": r.case_id, "now": to_ms(r.now),
                     "period": int(r.period.total_seconds() * 1000)}

    def sessions_for(self, address: str, start: datetime, end: datetime, r: Retention) -> list[SessionHit]:
        """Sessions on ``address`` overlapping [start, end] and inside retention (or held for the case)."""
        kept, params = self._retained("sessions", "address", r)
        rows = self.conn.execute(
            "SELECT source, account, address, start_ms, end_ms FROM sessions WHERE address = :address "  # noqa: S608
            "AND start_ms IS NOT NULL AND start_ms <= :end AND (end_ms IS NULL OR end_ms >= :start) "
            f"AND {kept} ORDER BY start_ms, id",
            {**params, "address": address, "start": to_ms(start), "end": to_ms(end)})
        return [SessionHit(r[0], r[1], r[2], _opt_dt(r[3]), _opt_dt(r[4])) for r in rows]

    def port_blocks_for(self, public_ip: str, port: int, protocol: str | None, *, start: datetime,
                        end: datetime, retention: Retention) -> list[PortBlockHit]:
        kept, params = self._retained("port_blocks", "public_ip", retention)
        rows = self.conn.execute(
            "SELECT public_ip, port_lo, port_hi, protocol, inside, start_ms, end_ms FROM port_blocks "  # noqa: S608
            "WHERE public_ip = :ip AND port_lo <= :port AND port_hi >= :port "
            "AND (protocol IS NULL OR protocol = :proto) AND start_ms <= :end "
            f"AND (end_ms IS NULL OR end_ms >= :start) AND {kept} ORDER BY start_ms, id",
            {**params, "ip": public_ip, "port": port, "proto": protocol, "start": to_ms(start), "end": to_ms(end)})
        return [PortBlockHit(r[0], r[1], r[2], r[3], r[4], from_ms(r[5]), _opt_dt(r[6])) for r in rows]

    def inside_addresses(self, public_ip: str, start: datetime, end: datetime) -> list[str]:
        rows = self.conn.execute("SELECT DISTINCT inside FROM port_blocks WHERE public_ip = ? AND start_ms <= ? "
                                 "AND (end_ms IS NULL OR end_ms >= ?) ORDER BY inside",
                                 (public_ip, to_ms(end), to_ms(start)))
        return [r[0] for r in rows]

    def add_hold(self, case_id: str, address: str, start: datetime, end: datetime, *, until: datetime,
                 reason: str, by: str, now: datetime) -> int:
        cur = self.conn.execute(
            "INSERT INTO holds (case_id, address, start_ms, end_ms, until_ms, reason, created_by, created_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (case_id, address, to_ms(start), to_ms(end), to_ms(until), reason, by, to_ms(now)))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def purge_sessions(self, r: Retention) -> dict[str, int]:
        """Delete session records and port blocks past retention that no active hold covers."""
        out = {}
        for table, col in (("sessions", "address"), ("port_blocks", "public_ip")):
            kept, params = self._retained(table, col, r, any_case=True)
            cur = self.conn.execute(f"DELETE FROM {table} WHERE NOT {kept}", params)  # noqa: S608
            out[table] = cur.rowcount
        return out

    def has_port_blocks(self, public_ip: str) -> bool:
        return self._one("SELECT 1 FROM port_blocks WHERE public_ip = ? LIMIT 1", (public_ip,)) is not None

    def subscriber(self, account: str) -> Account | None:
        row = self._one("SELECT account, name, postal_address, phone, email FROM subscribers WHERE account = ?",
                        (account,))
        return Account(*row) if row else None

    # -- audit chain -----------------------------------------------------------------------------

    def _head(self) -> tuple[int, bytes]:
        row = self._one("SELECT seq, link FROM audit ORDER BY seq DESC LIMIT 1")
        if row:
            return int(row[0]), bytes(row[1])
        anchor = self._one("SELECT seq, link FROM audit_anchor WHERE id = 1")
        return (int(anchor[0]), bytes(anchor[1])) if anchor else (0, hashchain.GENESIS)

    def audit(self, at: datetime, actor: str, role: str, kind: str, data: dict[str, Any], *,
              case_id: str | None = None) -> int:
        seq, prev = self._head()
        seq += 1
        at = from_ms(to_ms(at))  # the stored precision, so the record and its column agree
        record = {"seq": seq, "at": iso(at), "actor": actor, "role": role, "case": case_id, "kind": kind,
                  "data": data}
        payload = hashchain.canonical(record)
        self.conn.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                          (seq, to_ms(at), actor, role, case_id, kind, payload.decode("utf-8"),
                           hashchain.link(prev, payload)))
        return seq

    def audit_entries(self, case_id: str | None = None, after: int = 0, limit: int = 1000) -> list[AuditEntry]:
        where, params = ("AND case_id = ?", [case_id]) if case_id else ("", [])
        rows = self.conn.execute(f"SELECT seq, payload, link FROM audit WHERE seq > ? {where} ORDER BY seq LIMIT ?",  # noqa: S608
                                 (after, *params, limit))
        out = []
        for seq, payload, link in rows:
            rec = json.loads(payload)
            out.append(AuditEntry(seq, datetime.fromisoformat(rec["at"].replace("Z", "+00:00")), rec["actor"],
                                  rec["role"], rec["case"], rec["kind"], rec["data"], bytes(link).hex()))
        return out

    def verify_audit(self) -> hashchain.ChainCheck:
        anchor = self._one("SELECT seq, link FROM audit_anchor WHERE id = 1")
        start = bytes(anchor[1]) if anchor else hashchain.GENESIS
        rows = self.conn.execute("SELECT seq, at_ms, actor, role, case_id, kind, payload, link FROM audit ORDER BY seq")
        return hashchain.verify(self._checked_entries(rows), start)

    @staticmethod
    def _checked_entries(rows: Any) -> Iterator[tuple[Any, bytes, bytes]]:
        """Feed the chain check; a row whose columns disagree with its record gets a link that cannot match."""
        for seq, at_ms, actor, role, case_id, kind, payload, link in rows:
            try:
                rec = json.loads(payload)
                ok = (rec["seq"] == seq and rec["actor"] == actor and rec["role"] == role
                      and rec["case"] == case_id and rec["kind"] == kind and iso(from_ms(at_ms)) == rec["at"])
            except (ValueError, KeyError, TypeError):
                ok = False
            yield seq, payload.encode("utf-8"), bytes(link) if ok else b"columns disagree with the record"
