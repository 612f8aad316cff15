"""The transfer caps against a primary that misbehaves on purpose (a small fake on loopback): one
that starts a transfer and then stalls is refused when the time cap passes; one that answers the
SOA query unsigned is refused as FEED_TSIG."""

from __future__ import annotations

import base64
import socket
import struct
import threading
import time

import dns.message
import dns.name
import dns.rdatatype
import dns.rrset
import dns.tsig
import pytest

from feedsync import config, xfr
from feedsync.errors import FeedRefused, RefusalCode

pytestmark = pytest.mark.integration
SECRET = base64.b64encode(b"k" * 32).decode()
RING = {dns.name.from_text("edge-key."): dns.tsig.Key("edge-key.", SECRET, "hmac-sha256")}


class Stalling:
    """Answers one TCP query with a signed first message of an AXFR, then sends nothing more."""

    def __init__(self, sign: bool = True) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.sign = sign
        self.stop = threading.Event()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            (n,) = struct.unpack("!H", conn.recv(2))
            data = b""
            while len(data) < n:
                data += conn.recv(n - len(data))
            q = dns.message.from_wire(data, keyring=RING)
            r = dns.message.make_response(q)
            r.answer.append(dns.rrset.from_text("feed.rpz.test.", 60, "IN", "SOA", "ns. noc. 5 3600 600 86400 60"))
            r.answer.append(dns.rrset.from_text("bad.test.feed.rpz.test.", 60, "IN", "CNAME", "."))
            if not self.sign:
                r.keyring = None
                r.tsig = None
            w = r.to_wire(multi=True)
            conn.sendall(struct.pack("!H", len(w)) + w)
            self.stop.wait(30)

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def feed(port: int) -> config.FeedConfig:
    return config.loads(f"""[[feed]]
name = "twnic"
type = "xfr"
zone = "feed.rpz.test"
primaries = ["127.0.0.1:{port}"]
tsig_name = "edge-key"
tsig_secret = "{SECRET}"
""").feeds[0]


def test_a_stalled_transfer_is_refused_at_the_time_cap() -> None:
    p = Stalling()
    f = feed(p.port)
    try:
        t0 = time.monotonic()
        with pytest.raises(FeedRefused) as exc:
            xfr.transfer(f, f.primaries[0], None, None, max_bytes=10**6, timeout=1.0)
        assert exc.value.code is RefusalCode.TOO_LARGE and exc.value.check == "transfer_timeout"
        assert time.monotonic() - t0 < 5
    finally:
        p.close()


def test_an_unsigned_transfer_is_refused_as_tsig() -> None:
    p = Stalling(sign=False)
    f = feed(p.port)
    try:
        with pytest.raises(FeedRefused) as exc:
            xfr.transfer(f, f.primaries[0], None, None, max_bytes=10**6, timeout=5.0)
        assert exc.value.code is RefusalCode.TSIG
    finally:
        p.close()
