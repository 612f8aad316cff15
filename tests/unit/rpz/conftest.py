"""Helpers for the policy-core unit tests: zones from short texts, questions in text form."""

from __future__ import annotations

import ipaddress

import pytest

from rpz import names
from rpz.policy import Policy, PolicyZone, Stage, ZoneSettings
from rpz.zone import compile_text

HEAD = """$ORIGIN {origin}
$TTL 300
@ SOA ns.{origin} admin.{origin} {serial} 3600 600 86400 60
@ NS localhost.
"""


def make_zone(body: str, origin: str = "rpz.test.", serial: int = 1, fast: bool = False):
    return compile_text((HEAD.format(origin=origin, serial=serial) + body).encode(), f"{origin}zone", fast=fast)


def make_policy(*zones, settings=None):
    settings = settings or [ZoneSettings() for _ in zones]
    return Policy([PolicyZone(z, s) for z, s in zip(zones, settings, strict=True)])


def wire(name: str) -> bytes:
    return names.from_text(name if name.endswith(".") else name + ".").lower()


def ask(policy, qname, qtype=1, client=None, chain=(), answer_ips=(), ns=(), ns_ips=()):
    """Evaluate a complete question; chain = CNAME targets in order, answer_ips owned by the last."""
    stage_names = [wire(qname), *[wire(c) for c in chain]]
    packed = tuple(ipaddress.ip_address(a).packed for a in answer_ips)
    ns_w = tuple(wire(n) for n in ns)
    ns_p = tuple(ipaddress.ip_address(a).packed for a in ns_ips)
    stages = [Stage(n, ns_names=ns_w, ns_addresses=ns_p) for n in stage_names]
    stages[-1] = Stage(stage_names[-1], addresses=packed, ns_names=ns_w, ns_addresses=ns_p)
    return policy.evaluate(client, qtype, stages)


@pytest.fixture
def zone():
    return make_zone
