"""NOTIFY handling (pure), the refresh schedule, and the control-socket client against a fake."""

from __future__ import annotations

import base64
import os

import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.tsigkeyring
import pytest

from feedsync import config
from feedsync.control import ControlClient
from feedsync.daemon import handle_notify, next_delay
from feedsync.errors import ControlError
from feedsync.statedb import FeedState

from .helpers import FakeResolver

SECRET = base64.b64encode(b"s" * 32).decode()
CFG = config.loads(f"""
[[feed]]
name = "twnic"
type = "xfr"
zone = "rpz.twnic.test"
primaries = ["192.0.2.53", "2001:db8::53"]
tsig_name = "edge-key"
tsig_secret = "{SECRET}"

[[feed]]
name = "hotline"
type = "bundle"
zone = "hotline.rpz.test"
url = "https://feeds.hotline.test/"
trusted_root = "{__file__}"
refresh = 300
""")
XFR, BUNDLE = CFG.feeds


def notify(zone: str = "rpz.twnic.test.", key: str | None = None) -> bytes:
    m = dns.message.make_query(zone, dns.rdatatype.SOA)
    m.set_opcode(dns.opcode.NOTIFY)
    if key is not None:
        m.use_tsig(dns.tsigkeyring.from_text({"edge-key": key}), "edge-key", algorithm="hmac-sha256")
    return m.to_wire()


def test_notify_from_a_primary_wakes_the_feed() -> None:
    out = handle_notify(notify(), "192.0.2.53", [XFR])
    assert out.feed == "twnic" and out.reply is not None
    r = dns.message.from_wire(out.reply)
    assert r.opcode() == dns.opcode.NOTIFY and r.rcode() == dns.rcode.NOERROR and r.flags & 0x8000
    assert handle_notify(notify(), "2001:db8::53", [XFR]).feed == "twnic"


def test_notify_signed_with_our_key_is_answered_signed() -> None:
    ring = dns.tsigkeyring.from_text({"edge-key": SECRET})
    m = dns.message.make_query("rpz.twnic.test.", dns.rdatatype.SOA)
    m.set_opcode(dns.opcode.NOTIFY)
    m.use_tsig(ring, "edge-key", algorithm="hmac-sha256")
    out = handle_notify(m.to_wire(), "192.0.2.53", [XFR])
    assert out.feed == "twnic" and out.reply is not None
    assert dns.message.from_wire(out.reply, keyring=ring, request_mac=m.mac).had_tsig


@pytest.mark.parametrize(("wire", "source", "rcode", "why"), [
    (notify(), "203.0.113.9", dns.rcode.REFUSED, "not a configured primary"),
    (notify("other.rpz.test."), "192.0.2.53", dns.rcode.REFUSED, "which no feed here transfers"),
    (notify(key=base64.b64encode(b"x" * 32).decode()), "192.0.2.53", None, "dropped"),
    (b"\x00\x01garbage", "192.0.2.53", None, "unparseable"),
    (dns.message.make_query("rpz.twnic.test.", "SOA").to_wire(), "192.0.2.53", None, "not a NOTIFY"),
])
def test_notify_refused_or_dropped(wire: bytes, source: str, rcode: int | None, why: str) -> None:
    out = handle_notify(wire, source, [XFR])
    assert out.feed is None and why in out.reason
    if rcode is None:
        assert out.reply is None
    else:
        assert out.reply is not None and dns.message.from_wire(out.reply).rcode() == rcode


def test_refresh_schedule_follows_soa_and_clamps() -> None:
    st = FeedState("twnic", soa_refresh=3600, soa_retry=600)
    assert next_delay(XFR, st, True, 0) == 3600
    assert next_delay(XFR, st, False, 0) == 600
    assert next_delay(XFR, FeedState("twnic", soa_refresh=5), True, 0) == XFR.refresh_min
    assert next_delay(XFR, FeedState("twnic", soa_refresh=10**7), True, 0) == XFR.refresh_max
    assert next_delay(BUNDLE, FeedState("hotline"), True, 0) == 300
    assert next_delay(BUNDLE, FeedState("hotline"), False, 0) == 60
    assert next_delay(BUNDLE, FeedState("hotline", next_change_at=100), True, 0) == pytest.approx(100.01)


def test_control_client(tmp_path) -> None:  # type: ignore[no-untyped-def]
    active = tmp_path / "active.rpz"
    active.write_bytes(b"$ORIGIN z.test.\n@ 60 SOA ns noc 7 1 1 1 1\n@ 60 NS localhost.\nx CNAME .\n")
    sock = str(tmp_path / "run" / "control.sock")
    fake = FakeResolver(sock, {"z.test": str(active)})
    try:
        c = ControlClient(sock, timeout=5)
        assert c.available()
        r = c.reload()
        assert r.ok and r.serial_of("Z.test.") == 7
        fake.mode = "fail"
        r = c.reload()
        assert not r.ok and "synthetic failure" in r.error
        fake.mode = "garbage"
        with pytest.raises(ControlError, match="not JSON"):
            c.reload()
    finally:
        fake.close()
    assert not ControlClient(sock).available()
    with pytest.raises(ControlError, match="is the resolver running"):
        ControlClient(os.path.join(str(tmp_path), "none.sock")).reload()
