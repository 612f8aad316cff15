import ipaddress
import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.public import PrivateKey

from admin_api.blocklog import BlocklogOpener, InMemoryBlocklog, SealedHit, hit_in_query, load_private_key, seal_client
from admin_api.clock import to_ms
from admin_api.config import ApiConfig, load_api_config
from admin_api.errors import KeyMaterialError, SealedRecordError
from admin_api.model import CaseRecord, Category, Channel, ClaimedRequester, Query, QueryKind, Scope
from admin_api.package import sign, verify
from admin_api.workflow import State
from rpz.tomlconf import ConfigErrors, parse_config

KEY = PrivateKey.generate()
Q = Query(QueryKind.BLOCKED_LOOKUP, datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC),
          frozenset({Category.SUBSCRIBER_ACCOUNT}), order_ref="HKH-2026-0042")


def hit(at: datetime, ip: str = "100.64.0.5", order: str = "HKH-2026-0042", key=KEY) -> SealedHit:
    return SealedHit(to_ms(at), "bad.example.test", "A", order, "hotline.rpz.test", "nxdomain", "edge-01",
                     seal_client(key.public_key, ip, 40001))


def case(state: State = State.APPROVED, queries=(Q,)) -> CaseRecord:
    scope = Scope(None, tuple(queries), None)
    return CaseRecord("HE-2026-000001", state, Channel.PORTAL, "RQ-1", 2, ClaimedRequester(), scope,
                      datetime(2026, 3, 9, tzinfo=UTC), datetime(2026, 3, 9, tzinfo=UTC), "alice",
                      frozen_digest=scope.digest())


def test_sealed_address_round_trips_only_with_the_private_key():
    h = hit(datetime(2026, 3, 1, 10, tzinfo=UTC))
    assert b"100.64.0.5" not in h.sealed_client
    client = BlocklogOpener(KEY).open_for(case(), Q, h)
    assert (client.ip, client.port) == ("100.64.0.5", 40001)
    with pytest.raises(SealedRecordError, match="does not open"):
        BlocklogOpener(PrivateKey.generate()).open_for(case(), Q, h)


@pytest.mark.parametrize("state", [s for s in State if s is not State.APPROVED])
def test_nothing_opens_unless_the_case_is_approved(state):
    with pytest.raises(SealedRecordError, match="opened only for an APPROVED case"):
        BlocklogOpener(KEY).open_for(case(state), Q, hit(datetime(2026, 3, 1, 10, tzinfo=UTC)))


def test_nothing_opens_outside_the_window_order_or_frozen_scope():
    opener = BlocklogOpener(KEY)
    with pytest.raises(SealedRecordError, match="outside"):
        opener.open_for(case(), Q, hit(datetime(2026, 3, 3, tzinfo=UTC)))
    with pytest.raises(SealedRecordError, match="outside"):
        opener.open_for(case(), Q, hit(datetime(2026, 3, 1, 10, tzinfo=UTC), order="OTHER-1"))
    other = replace(Q, order_ref="OTHER-1")
    with pytest.raises(SealedRecordError, match="not part of the approved scope"):
        opener.open_for(case(), other, hit(datetime(2026, 3, 1, 10, tzinfo=UTC), order="OTHER-1"))
    changed = replace(case(), scope=Scope(None, (Q, other), None))   # scope changed, digest not refrozen
    with pytest.raises(SealedRecordError, match="not part of the approved scope"):
        opener.open_for(changed, Q, hit(datetime(2026, 3, 1, 10, tzinfo=UTC)))


def test_in_memory_source_filters_by_order_name_and_window():
    src = InMemoryBlocklog([hit(datetime(2026, 3, 1, 10, tzinfo=UTC)), hit(datetime(2026, 3, 5, tzinfo=UTC)),
                            hit(datetime(2026, 3, 1, 11, tzinfo=UTC), order="OTHER-1")])
    got = list(src.sealed_hits(order_ref="HKH-2026-0042", qname=None, start=Q.start, end=Q.end))
    assert len(got) == 1 and hit_in_query(got[0], Q)


def test_private_key_file(tmp_path):
    from admin_api.blocklog import encode_key
    p = tmp_path / "k"
    p.write_text(encode_key(KEY) + "\n")
    assert bytes(load_private_key(str(p))) == bytes(KEY)
    p.write_text("not base64 at all!\n")
    with pytest.raises(KeyMaterialError, match=str(p)):
        load_private_key(str(p))


def test_package_signature_and_hash():
    key = Ed25519PrivateKey.generate()
    signed = sign({"isp_case_id": "HE-2026-000001", "queries": [{"results": [{"account": "acct-1"}]}]}, key)
    assert verify(signed, key.public_key())
    assert json.loads(signed.body)["isp_case_id"] == "HE-2026-000001"
    assert not verify(replace(signed, body=signed.body.replace("acct-1", "acct-2")), key.public_key())
    assert not verify(signed, Ed25519PrivateKey.generate().public_key())


CONFIG = b"""
[node]
state_dir = "/srv/he"

[api]
listen = "127.0.0.1:9443"
jurisdiction = "HK"
cgnat_pools = ["203.0.113.0/24", "2001:db8::/32", "not-a-prefix"]
session_retention_days = 0
emergency_followup_hours = 48
colour = "blue"
"""


def test_api_section_errors_are_line_precise():
    doc = parse_config(CONFIG, "he.toml")
    with pytest.raises(ConfigErrors) as ei:
        load_api_config(doc)
    assert [str(e) for e in ei.value.errors] == [
        "he.toml:8: api.cgnat_pools[1]: CGNAT pools are IPv4",
        "he.toml:8: api.cgnat_pools[2]: not a prefix: 'not-a-prefix' does not appear to be an IPv4 or IPv6 network",
        "he.toml:9: api.session_retention_days: must be a whole number in 1..3650",
        "he.toml:11: api.colour: unknown key (known: database, listen, isp_name, jurisdiction, case_prefix, "
        "signing_key, compliance_private_key, cgnat_pools, session_retention_days, emergency_followup_hours, "
        "followup_reminder_hours, token_max_ttl_days, argon2_time_cost, argon2_memory_kib)",
    ]


def test_api_section_defaults_follow_the_state_dir():
    cfg = load_api_config(parse_config(b'[node]\nstate_dir = "/srv/he"\n[api]\ncgnat_pools = ["203.0.113.0/24"]\n'))
    assert cfg == ApiConfig(database="/srv/he/compliance.sqlite",
                            cgnat_pools=(ipaddress.ip_network("203.0.113.0/24"),))
    assert cfg.host_port == ("127.0.0.1", 8080)
