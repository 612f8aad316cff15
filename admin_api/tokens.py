"""API tokens: one role each, an expiry, stored only as argon2id hashes.

A token reads ``hle_<id>_<secret>``: the id finds the row, the whole token is checked against the
stored argon2id hash. Issued on the appliance with ``hotline-edge api token issue`` (printed once,
never stored or logged in clear), or made offline with ``hotline-edge api token make`` and
provisioned by id and hash only (``token provision``, which the Ansible role runs from a vault
variable): the appliance then never sees the secret at all. A small cache of verified hashes keeps
argon2's deliberate cost to the first request of a token; expiry and revocation are checked
against the store every time.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .clock import Clock, iso, parse_instant, to_ms
from .errors import AccessDenied
from .roles import Role
from .store import Store, Token

PREFIX = "hle"


@dataclass(frozen=True, slots=True)
class Principal:
    token_id: str
    subject: str
    role: Role | None      # None only for the system's own timers (expiry, deadlines)
    expires_at: datetime


def make_hasher(time_cost: int = 3, memory_kib: int = 65536) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)


def split_token(token: str) -> tuple[str, str] | None:
    parts = token.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


TOKEN_ID = re.compile(r"[0-9a-f]{16}")
PROVISION_KEYS = {"id", "role", "subject", "hash", "expires", "note", "state"}


@dataclass(frozen=True, slots=True)
class ProvisionedToken:
    """A token known to the appliance by id and argon2id hash only (the secret stays with its user)."""
    id: str
    role: Role
    subject: str
    hash: str
    expires_at: datetime
    note: str
    revoked: bool


@dataclass(frozen=True, slots=True)
class ProvisionResult:
    added: tuple[str, ...]
    revoked: tuple[str, ...]
    unchanged: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.added or self.revoked)


def make_token(role: Role, subject: str, expires_at: datetime, hasher: PasswordHasher,
               note: str = "") -> tuple[str, dict[str, str]]:
    """A new token and the entry that provisions it (id, role, subject, argon2id hash, expiry):
    the token goes to its user, the entry to the inventory's vault. Nothing is stored."""
    if not subject.strip():
        raise ValueError("a token needs a subject (the person or system that uses it)")
    token_id = secrets.token_hex(8)
    full = f"{PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
    expires_at = expires_at.replace(microsecond=0)
    entry = {"id": token_id, "role": role.value, "subject": subject.strip(), "hash": hasher.hash(full),
             "expires": iso(expires_at), "note": note}
    return full, entry


def parse_provisioned(items: Any, now: datetime, max_ttl: timedelta, source: str) -> list[ProvisionedToken]:
    """Check a list of provisioning entries; every problem is reported (``source[i].field: what``)
    in one ValueError and nothing is accepted unless all entries are good."""
    if not isinstance(items, list):
        raise ValueError(f"{source}: expected a list of token entries, got {type(items).__name__}")
    problems: list[str] = []
    out: list[ProvisionedToken] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"{source}[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: expected a table with id, role, subject, hash, expires")
            continue
        bad = len(problems)
        for key in sorted(set(item) - PROVISION_KEYS):
            problems.append(f"{where}.{key}: unknown key (known: {', '.join(sorted(PROVISION_KEYS))})")
        text = {}
        for key in ("id", "role", "subject", "hash", "expires"):
            value = item.get(key)
            if not isinstance(value, str) or not value.strip():
                problems.append(f"{where}.{key}: missing (a non-empty string)")
            else:
                text[key] = value.strip()
        token_id = text.get("id")
        if token_id is not None:
            if not TOKEN_ID.fullmatch(token_id):
                problems.append(f"{where}.id: {token_id!r} is not 16 lowercase hex digits (as `token make` prints)")
            elif token_id in seen:
                problems.append(f"{where}.id: {token_id} is listed twice")
            seen.add(token_id)
        role = None
        if "role" in text:
            try:
                role = Role(text["role"])
            except ValueError:
                problems.append(f"{where}.role: {text['role']!r} is not one of {', '.join(r.value for r in Role)}")
        if "hash" in text:
            try:
                if extract_parameters(text["hash"]).type is not Type.ID:
                    problems.append(f"{where}.hash: not an argon2id hash")
            except (ValueError, InvalidHashError):
                problems.append(f"{where}.hash: not an argon2 hash string ($argon2id$v=19$m=...)")
        expires = None
        if "expires" in text:
            try:
                expires = parse_instant(text["expires"])
            except ValueError as exc:
                problems.append(f"{where}.expires: {exc}")
        state = item.get("state", "present")
        if state not in ("present", "revoked"):
            problems.append(f"{where}.state: {state!r} is not present or revoked")
        note = item.get("note", "")
        if not isinstance(note, str):
            problems.append(f"{where}.note: expected a string")
        if expires is not None and state == "present":
            if expires <= now:
                problems.append(f"{where}.expires: {iso(expires)} has passed (make a new token, or set "
                                "state = revoked to retire this one)")
            elif expires - now > max_ttl:
                problems.append(f"{where}.expires: {iso(expires)} is more than {max_ttl.days} days away "
                                "([api] token_max_ttl_days)")
        if len(problems) == bad and token_id is not None and role is not None and expires is not None:
            out.append(ProvisionedToken(token_id, role, text["subject"], text["hash"], expires, note,
                                        state == "revoked"))
    if problems:
        raise ValueError("\n".join(problems))
    return out


class TokenAuthority:
    def __init__(self, store: Store, clock: Clock, hasher: PasswordHasher, max_ttl: timedelta) -> None:
        self.store = store
        self.clock = clock
        self.hasher = hasher
        self.max_ttl = max_ttl
        self._verified: dict[bytes, str] = {}
        self._lock = threading.Lock()

    def issue(self, role: Role, subject: str, ttl: timedelta, note: str = "", *,
              actor: str = "cli", actor_role: str = "local-admin") -> tuple[str, Token]:
        if not subject.strip():
            raise ValueError("a token needs a subject (the person or system that uses it)")
        if ttl <= timedelta(0) or ttl > self.max_ttl:
            raise ValueError(f"token lifetime must be positive and at most {self.max_ttl.days} days")
        token_id = secrets.token_hex(8)
        full = f"{PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
        now = self.clock.now()
        record = Token(token_id, role.value, subject.strip(), self.hasher.hash(full), now, now + ttl, None, note)
        with self.store.transaction() as tx:
            tx.add_token(record)
            tx.audit(now, actor, actor_role, "token.issued",
                     {"token_id": token_id, "role": role.value, "subject": record.subject,
                      "expires": iso(record.expires_at), "note": note})
        return full, record

    def provision(self, entries: list[ProvisionedToken], *, actor: str = "cli",
                  actor_role: str = "local-admin") -> ProvisionResult:
        """Make the store hold ``entries`` (checked by ``parse_provisioned``): new ids are added,
        entries marked revoked are revoked, identical ones left alone. A token is never changed in
        place: an id that exists with another role, subject, hash or expiry is refused (revoke it
        and provision a new one). Tokens issued on the node and not listed are not touched. One
        transaction: all or nothing; every addition and revocation is audited."""
        now = self.clock.now()
        added: list[str] = []
        revoked: list[str] = []
        unchanged: list[str] = []
        with self.store.transaction() as tx:
            conflicts = []
            for e in entries:
                old = tx.find_token(e.id)
                if old is None:
                    continue
                # the store keeps milliseconds: compare expiries at that precision
                if (old.role, old.subject, old.hash, to_ms(old.expires_at)) != \
                        (e.role.value, e.subject, e.hash, to_ms(e.expires_at)):
                    conflicts.append(f"token {e.id} exists with another role, subject, hash or expiry: tokens are "
                                     "not changed in place; revoke it (state = revoked) and provision a new id")
            if conflicts:
                raise ValueError("\n".join(conflicts))
            for e in entries:
                old = tx.find_token(e.id)
                if old is None:
                    tx.add_token(Token(e.id, e.role.value, e.subject, e.hash, now, e.expires_at,
                                       now if e.revoked else None, e.note))
                    tx.audit(now, actor, actor_role, "token.provisioned",
                             {"token_id": e.id, "role": e.role.value, "subject": e.subject,
                              "expires": iso(e.expires_at), "revoked": e.revoked, "note": e.note})
                    (revoked if e.revoked else added).append(e.id)
                elif e.revoked and old.revoked_at is None:
                    tx.revoke_token(e.id, now)
                    tx.audit(now, actor, actor_role, "token.revoked", {"token_id": e.id, "via": "provision"})
                    revoked.append(e.id)
                else:
                    unchanged.append(e.id)
        return ProvisionResult(tuple(added), tuple(revoked), tuple(unchanged))

    def revoke(self, token_id: str, actor: str = "cli", actor_role: str = "local-admin") -> None:
        now = self.clock.now()
        with self.store.transaction() as tx:
            tx.revoke_token(token_id, now)
            tx.audit(now, actor, actor_role, "token.revoked", {"token_id": token_id})

    def authenticate(self, presented: str | None) -> Principal:
        if not presented:
            raise AccessDenied("no token: send 'Authorization: Bearer <token>'")
        parts = split_token(presented)
        if parts is None:
            raise AccessDenied("malformed token")
        with self.store.read() as tx:
            record = tx.find_token(parts[0])
        if record is None:
            raise AccessDenied("unknown token")
        now = self.clock.now()
        if record.revoked_at is not None:
            raise AccessDenied("token revoked")
        if now >= record.expires_at:
            raise AccessDenied(f"token expired at {iso(record.expires_at)}")
        self._check_secret(presented, record.hash)
        try:
            role = Role(record.role)
        except ValueError:
            raise AccessDenied("token has an unknown role") from None
        return Principal(record.id, record.subject, role, record.expires_at)

    def _check_secret(self, presented: str, stored_hash: str) -> None:
        digest = hashlib.sha256(presented.encode("utf-8")).digest()
        with self._lock:
            if self._verified.get(digest) == stored_hash:
                return
        try:
            self.hasher.verify(stored_hash, presented)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            raise AccessDenied("invalid token") from None
        with self._lock:
            if len(self._verified) > 4096:
                self._verified.clear()
            self._verified[digest] = stored_hash
