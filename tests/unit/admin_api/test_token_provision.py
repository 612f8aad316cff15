"""Tokens provisioned by id and hash (`api token make` / `api token provision`), on a real SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from admin_api.clock import ManualClock, iso
from admin_api.errors import AccessDenied
from admin_api.roles import Role
from admin_api.store import Store
from admin_api.tokens import TokenAuthority, make_hasher, make_token, parse_provisioned

NOW = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)


@pytest.fixture
def authority(tmp_path):  # type: ignore[no-untyped-def]
    return TokenAuthority(Store(str(tmp_path / "c.sqlite")), ManualClock(NOW), make_hasher(1, 1024), timedelta(days=90))


def test_a_made_token_authenticates_once_provisioned_and_provisioning_twice_changes_nothing(authority) -> None:  # type: ignore[no-untyped-def]
    # an expiry with microseconds: the store keeps milliseconds, and a second run must still match
    token, entry = make_token(Role.AUDITOR, "audit-team", NOW + timedelta(days=30, microseconds=123_456),
                              make_hasher(1, 1024))
    entry["expires"] = iso(NOW + timedelta(days=30, microseconds=123_456))
    entries = parse_provisioned([entry], NOW, authority.max_ttl, "tokens.json")
    with pytest.raises(AccessDenied):
        authority.authenticate(token)                                  # not provisioned yet
    assert authority.provision(entries).added == (entry["id"],)
    assert authority.authenticate(token).role is Role.AUDITOR
    again = authority.provision(parse_provisioned([entry], NOW, authority.max_ttl, "tokens.json"))
    assert again.unchanged == (entry["id"],) and not again.changed


def test_a_revoked_entry_revokes_and_a_changed_entry_is_refused_without_touching_anything(authority) -> None:  # type: ignore[no-untyped-def]
    token, entry = make_token(Role.HOTLINE, "analyst", NOW + timedelta(days=10), make_hasher(1, 1024))
    authority.provision(parse_provisioned([entry], NOW, authority.max_ttl, "f"))
    other_token, other = make_token(Role.OFFICER, "officer", NOW + timedelta(days=1), make_hasher(1, 1024))
    with pytest.raises(ValueError, match=f"token {entry['id']} exists with another role"):
        authority.provision(parse_provisioned([other, {**entry, "role": "officer"}], NOW, authority.max_ttl, "f"))
    with pytest.raises(AccessDenied):
        authority.authenticate(other_token)                            # all or nothing: the new one was not added
    result = authority.provision(parse_provisioned([{**entry, "state": "revoked"}], NOW, authority.max_ttl, "f"))
    assert result.revoked == (entry["id"],)
    with pytest.raises(AccessDenied, match="revoked"):
        authority.authenticate(token)


def test_an_expired_or_too_long_entry_is_refused_by_name(authority) -> None:  # type: ignore[no-untyped-def]
    _, entry = make_token(Role.HOTLINE, "analyst", NOW + timedelta(days=10), make_hasher(1, 1024))
    with pytest.raises(ValueError, match=r"f\[0\]\.expires: .* has passed"):
        parse_provisioned([{**entry, "expires": iso(NOW - timedelta(seconds=1))}], NOW, authority.max_ttl, "f")
    with pytest.raises(ValueError, match=r"f\[0\]\.expires: .* more than 90 days away"):
        parse_provisioned([{**entry, "expires": iso(NOW + timedelta(days=91))}], NOW, authority.max_ttl, "f")
    # an expired entry may still be listed to revoke it
    assert parse_provisioned([{**entry, "expires": iso(NOW - timedelta(days=1)), "state": "revoked"}], NOW,
                             authority.max_ttl, "f")[0].revoked
