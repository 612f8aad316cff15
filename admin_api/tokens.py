"""API tokens: one role each, an expiry, stored only as argon2id hashes.

A token reads ``hle_<id>_<secret>``: the id finds the row, the whole token is checked against the
stored argon2id hash. Issued on the appliance with ``hotline-edge api token issue`` (printed once,
never stored or logged in clear). A small cache of verified hashes keeps argon2's deliberate cost
to the first request of a token; expiry and revocation are checked against the store every time.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .clock import Clock, iso
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
