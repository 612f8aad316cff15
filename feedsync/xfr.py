"""RPZ over zone transfer: SOA check, AXFR/IXFR with TSIG, ZONEMD, size and time caps.

dnspython owns the protocol where it is cheap: ``dns.xfr.Inbound`` applies an IXFR (RFC 1995) to the
base zone, ``dns.tsig`` verifies every message's TSIG (RFC 8945: the first and the last message of a
transfer must carry one), ``Zone.verify_digest`` checks ZONEMD (RFC 8976). A full transfer (an AXFR,
or an IXFR answered AXFR-style) is read by ``feedsync.xfrwire`` into records per owner, which builds
the zone Inbound would build without a dnspython object per record (minutes at a million rules
otherwise); its TSIGs are verified by ``dns.tsig`` over the raw messages all the same. The IXFR base
is a dnspython zone whose nodes are built on demand from those records (``BaseNodes``). This module
reads the TCP stream itself so it can count bytes and enforce the transfer deadline
(``dns.query.inbound_xfr`` has neither), and translates errors into refusal codes where they enter:

    | dnspython (or xfrwire, in dnspython's words) raises | refusal                |
    |----------------------------------------------------|------------------------|
    | tsig.BadSignature/BadKey/BadTime/Peer*, UnknownTSIGKey, BadTSIG, "missing TSIG", NOTAUTH | FEED_TSIG |
    | xfr.SerialWentBackwards; SOA serial older (RFC 1982) | FEED_ROLLBACK        |
    | "IXFR base serial mismatch", "unexpected end of IXFR sequence", "empty IXFR sequence",
    | transaction.DeleteNotExact (the delta does not fit our base)          | FEED_INCONSISTENT      |
    | zone.DigestVerificationFailure; NoDigest when require_zonemd | FEED_INTEGRITY |
    | bytes > max_bytes, names > max_entries, deadline passed | FEED_TOO_LARGE      |
    | other FormError (malformed messages, a record outside the zone or of another class) | FEED_INTEGRITY |
    | connection refused/reset, timeout before any data, REFUSED/SERVFAIL | FEED_UNREACHABLE (not a refusal) |
"""

from __future__ import annotations

import queue
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

import dns.exception
import dns.message
import dns.name
import dns.node
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.transaction
import dns.tsig
import dns.xfr
import dns.zone

from . import serial as serials
from . import xfrwire
from .config import FeedConfig, Primary
from .errors import FeedRefused, FetchFailed, RefusalCode

TSIG_ERRORS: tuple[type[BaseException], ...] = (
    dns.tsig.BadSignature, dns.tsig.BadKey, dns.tsig.BadTime, dns.tsig.BadAlgorithm, dns.tsig.PeerError,
    dns.message.UnknownTSIGKey, dns.message.BadTSIG)
INCONSISTENT_MESSAGES = ("IXFR base serial mismatch", "unexpected end of IXFR sequence", "empty IXFR sequence")
FUDGE = 300  # RFC 8945 section 10: 300 seconds is RECOMMENDED


@dataclass(frozen=True, slots=True)
class SoaInfo:
    serial: int
    refresh: int
    retry: int
    expire: int
    primary: Primary


class TooLarge(Exception):
    pass


class _InPlaceVersion(dns.zone.WritableVersion):
    """dnspython's writer copies the zone's map of names per transaction (a million entries per IXFR,
    for a thousand changes). This one changes the zone's own map and remembers the original node of
    every name it touches (dnspython replaces a node rather than changing it: copy on write), so a
    transfer that fails puts them back. A full transfer (``replacement``) builds a new map as usual."""

    def __init__(self, zone: dns.zone.Zone, replacement: bool = False) -> None:
        super().__init__(zone, True)
        self.in_place = not replacement
        if self.in_place:
            self.nodes = zone.nodes
        self.undo: dict[dns.name.Name, Any] = {}

    def _remember(self, name: dns.name.Name) -> None:
        if self.in_place and name not in self.undo:
            self.undo[name] = self.nodes.get(name)

    def _maybe_cow_with_name(self, name: dns.name.Name) -> tuple[Any, dns.name.Name]:
        name = self._validate_name(name)
        self._remember(name)
        return super()._maybe_cow_with_name(name)

    def delete_node(self, name: dns.name.Name) -> None:
        name = self._validate_name(name)
        self._remember(name)
        super().delete_node(name)

    def rollback(self) -> None:
        for name, node in self.undo.items():
            if node is None:
                self.nodes.pop(name, None)
            else:
                self.nodes[name] = node
        self.undo.clear()


class IxfrZone(dns.zone.Zone):
    """The zone feedsync keeps as the IXFR base: transactions change it in place (_InPlaceVersion)."""

    __slots__ = ()
    writable_version_factory = _InPlaceVersion

    def _end_write(self, txn: Any) -> None:      # a rolled-back transaction
        if isinstance(txn.version, _InPlaceVersion):
            txn.version.rollback()


class RecordSource(Protocol):
    """Where a ``BaseNodes`` map finds the zone's records (feedsync.xfrindex.XfrIndex)."""

    def zone_records(self, key: bytes) -> tuple[bytes, tuple[xfrwire.RR, ...]] | None: ...

    def zone_keys(self) -> Iterator[bytes]: ...

    def zone_size(self) -> int: ...


def node_of(rrs: tuple[xfrwire.RR, ...]) -> dns.node.Node:
    node: dns.node.Node = dns.node.Node()  # type: ignore[no-untyped-call]
    for t, ttl, rd in rrs:
        rds = node.find_rdataset(dns.rdataclass.IN, dns.rdatatype.RdataType.make(t),
                                 dns.rdatatype.RdataType.make(xfrwire.covers(t, rd)), create=True)
        rds.add(dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.RdataType.make(t), rd, 0, len(rd)), ttl)
    return node


def rrs_of(node: dns.node.Node) -> tuple[xfrwire.RR, ...]:
    return tuple((int(rds.rdtype), int(rds.ttl), bytes(rd.to_wire() or b"")) for rds in node.rdatasets for rd in rds)


class BaseNodes(MutableMapping[dns.name.Name, dns.node.Node]):
    """The node map of the IXFR base zone, made from the records XfrIndex keeps per owner: a node
    is built when dnspython asks for it (an IXFR touches a few names of a million), and what an IXFR
    writes stays here until ``settle`` (after XfrIndex took the touched owners over). So the base
    costs no dnspython object per owner, and ``dns.xfr.Inbound`` still applies every IXFR."""

    def __init__(self, source: RecordSource) -> None:
        self.source = source
        self.live: dict[dns.name.Name, dns.node.Node | None] = {}    # None: deleted

    @staticmethod
    def key(name: dns.name.Name) -> bytes:
        return bytes(name.to_wire() or b"").lower()

    def get(self, name: dns.name.Name, default: Any = None) -> Any:
        if name in self.live:
            node = self.live[name]
            return default if node is None else node
        found = self.source.zone_records(self.key(name))
        return default if found is None or not found[1] else node_of(found[1])

    def __getitem__(self, name: dns.name.Name) -> dns.node.Node:
        node: dns.node.Node | None = self.get(name)
        if node is None:
            raise KeyError(name)
        return node

    def __contains__(self, name: object) -> bool:
        return isinstance(name, dns.name.Name) and self.get(name) is not None

    def __setitem__(self, name: dns.name.Name, node: dns.node.Node) -> None:
        self.live[name] = node

    def __delitem__(self, name: dns.name.Name) -> None:
        if self.get(name) is None:
            raise KeyError(name)
        self.live[name] = None

    def __iter__(self) -> Iterator[dns.name.Name]:
        seen: set[bytes] = set()
        for name, node in self.live.items():
            seen.add(self.key(name))
            if node is not None:
                yield name
        for key in self.source.zone_keys():
            if key not in seen:
                found = self.source.zone_records(key)
                if found is not None and found[1]:
                    yield dns.name.from_wire(found[0], 0)[0]

    def __len__(self) -> int:
        n = self.source.zone_size()
        for name, node in self.live.items():
            before = self.source.zone_records(self.key(name)) is not None
            n += (node is not None) - before
        return n

    def settle(self) -> None:
        """XfrIndex has taken over the touched owners: drop the nodes built for them."""
        self.live.clear()


def base_zone(feed: FeedConfig, source: RecordSource) -> IxfrZone:
    """The IXFR base over ``source`` (its records per owner, no dnspython node per owner)."""
    zone = IxfrZone(dns.name.from_text(feed.zone + "."), relativize=False)
    zone.nodes = BaseNodes(source)
    return zone


def keyring(feed: FeedConfig) -> dict[dns.name.Name, dns.tsig.Key]:
    name = dns.name.from_text(feed.tsig_name)
    return {name: dns.tsig.Key(name, feed.tsig_secret, dns.name.from_text(feed.tsig_algorithm))}


def _tsig(msg: dns.message.Message, feed: FeedConfig) -> None:
    ring = keyring(feed)
    (name, key), = ring.items()
    msg.use_tsig(ring, name, fudge=FUDGE, algorithm=key.algorithm)


def refused_from(exc: BaseException, feed: FeedConfig, serial: int | None, primary: Primary) -> FeedRefused | None:
    """The refusal a dnspython error means, or None when it is not about the data (network)."""
    where = f"primary {primary}"
    if isinstance(exc, TSIG_ERRORS):
        return FeedRefused(RefusalCode.TSIG, feed.name, serial, "tsig",
                           f"{where}: {type(exc).__name__}: {exc or 'TSIG verification failed'}")
    if isinstance(exc, dns.xfr.SerialWentBackwards):
        return FeedRefused(RefusalCode.ROLLBACK, feed.name, serial, "serial",
                           f"{where}: the IXFR answer's serial is older than {serial}")
    if isinstance(exc, dns.xfr.TransferError) and exc.rcode == dns.rcode.NOTAUTH:
        return FeedRefused(RefusalCode.TSIG, feed.name, serial, "tsig", f"{where}: NOTAUTH (the primary "
                                                                         "rejected our TSIG key)")
    if isinstance(exc, dns.exception.FormError):
        text = str(exc)
        if "missing TSIG" in text:
            return FeedRefused(RefusalCode.TSIG, feed.name, serial, "tsig", f"{where}: a message of the "
                                                                             "transfer was not signed")
        if any(m in text for m in INCONSISTENT_MESSAGES):
            return FeedRefused(RefusalCode.INCONSISTENT, feed.name, serial, "ixfr", f"{where}: {text}")
        return FeedRefused(RefusalCode.INTEGRITY, feed.name, serial, "message", f"{where}: malformed: {text}")
    if isinstance(exc, dns.transaction.DeleteNotExact):
        return FeedRefused(RefusalCode.INCONSISTENT, feed.name, serial, "ixfr",
                           f"{where}: the IXFR deletes records our base of serial {serial} does not have")
    if isinstance(exc, TooLarge):
        return FeedRefused(RefusalCode.TOO_LARGE, feed.name, serial, str(exc.args[0]), str(exc.args[1]))
    return None


def query_soa(feed: FeedConfig, primary: Primary, timeout: float) -> SoaInfo:
    """SOA of the feed's zone from one primary, TSIG-signed both ways."""
    q = dns.message.make_query(feed.zone + ".", dns.rdatatype.SOA)
    _tsig(q, feed)
    try:
        r = _tcp_query(q, primary, timeout)
    except (OSError, dns.exception.Timeout) as exc:
        raise FetchFailed(feed.name, f"primary {primary}", f"SOA query: {exc}") from exc
    except Exception as exc:
        refused = refused_from(exc, feed, None, primary)
        if refused is None:
            raise
        raise refused from exc
    if not r.had_tsig:
        rc = dns.rcode.to_text(r.rcode())
        raise FeedRefused(RefusalCode.TSIG, feed.name, None, "tsig",
                          f"primary {primary}: the SOA answer is not signed (rcode {rc})")
    if r.rcode() == dns.rcode.NOTAUTH:
        raise FeedRefused(RefusalCode.TSIG, feed.name, None, "tsig", f"primary {primary}: NOTAUTH")
    if r.rcode() != dns.rcode.NOERROR:
        raise FetchFailed(feed.name, f"primary {primary}", f"SOA query answered {dns.rcode.to_text(r.rcode())}")
    for rrset in r.answer:
        if rrset.rdtype == dns.rdatatype.SOA and rrset.name == dns.name.from_text(feed.zone + "."):
            soa = rrset[0]
            return SoaInfo(soa.serial, soa.refresh, soa.retry, soa.expire, primary)
    raise FetchFailed(feed.name, f"primary {primary}", f"no SOA for {feed.zone} in the answer (not authoritative?)")


def _tcp_query(q: dns.message.Message, primary: Primary, timeout: float) -> dns.message.Message:
    deadline = time.monotonic() + timeout
    with socket.create_connection((primary.host, primary.port), timeout=timeout) as s:
        wire = q.to_wire()
        s.sendall(struct.pack("!H", len(wire)) + wire)
        (n,) = struct.unpack("!H", _read(s, 2, deadline))
        data = _read(s, n, deadline)
    return dns.message.from_wire(data, keyring=q.keyring, request_mac=q.mac)


def _read(s: socket.socket, n: int, deadline: float) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise dns.exception.Timeout
        s.settimeout(left)
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed by the primary")
        buf += chunk
    return bytes(buf)


def _defer_tsig(message: dns.message.Message, name: dns.name.Name) -> bool:
    """A keyring for dns.message.from_wire that records the TSIG without checking it (a falsy key):
    _TsigCheck checks it, against the time the message arrived rather than the time it is parsed."""
    return False


class _TsigCheck:
    """RFC 8945 for a multi-message transfer: every TSIG verified (MAC chained over the messages
    since the previous one, section 5.3.1), its time checked against the message's arrival. A large
    AXFR parses more slowly than it arrives; checking the time at parse would refuse the last
    messages of a genuine transfer (BADTIME) on a slow or busy node."""

    def __init__(self, ring: dict[dns.name.Name, dns.tsig.Key], request_mac: bytes) -> None:
        ((self.name, self.key),) = ring.items()
        self.request_mac = request_mac
        self.ctx: Any = None

    def __call__(self, wire: bytes, msg: dns.message.Message, arrived: float) -> None:
        if msg.tsig is None:
            self._unsigned(wire)
            return
        rd = msg.tsig[0]
        owner = msg.tsig.name
        owner_wire = bytes(owner.to_wire() or b"")
        start = len(wire) - (len(owner_wire) + 10 + len(rd.to_wire() or b""))
        if start < 12 or wire[start:start + len(owner_wire)].lower() != owner_wire.lower():
            raise dns.exception.FormError(  # type: ignore[no-untyped-call]
                "the TSIG record is not the last record, or its name is compressed")
        self._signed(wire, owner, rd, start, arrived)

    def raw(self, wire: bytes, msg: xfrwire.Message, arrived: float) -> None:
        """The same check for a message read by xfrwire (the TSIG record's place is known)."""
        if msg.tsig is None:
            self._unsigned(wire)
            return
        owner_wire, start, rstart, rend = msg.tsig
        owner = dns.name.from_wire(owner_wire, 0)[0]
        rd = dns.rdata.from_wire(dns.rdataclass.ANY, dns.rdatatype.TSIG, wire, rstart, rend - rstart)
        self._signed(wire, owner, rd, start, arrived)

    def _unsigned(self, wire: bytes) -> None:
        if self.ctx is None:
            raise dns.exception.FormError("missing TSIG")  # type: ignore[no-untyped-call]  # first one signed
        self.ctx.update(wire)

    def _signed(self, wire: bytes, owner: dns.name.Name, rd: Any, start: int, arrived: float) -> None:
        if owner != self.name:
            raise dns.tsig.BadKey
        self.ctx = dns.tsig.validate(  # type: ignore[no-untyped-call]
            wire, self.key, owner, rd, int(arrived), self.request_mac, start, self.ctx, True)


class _Reader:
    """Drains the transfer's TCP stream in a thread, so that a primary never waits on our parsing
    (Knot and BIND drop a client that does not read within their TCP I/O timeout), while the caps
    still hold: at most ``max_bytes`` are read, and nothing after ``deadline``."""

    def __init__(self, s: socket.socket, deadline: float, max_bytes: int) -> None:
        self.s = s
        self.deadline = deadline
        self.max_bytes = max_bytes
        self.total = 0
        self.q: queue.Queue[tuple[bytes, float] | BaseException] = queue.Queue()
        self._stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True, name="xfr-reader")
        self.t.start()

    def _run(self) -> None:
        """Reads up to CHUNK octets per call and splits the messages itself: the parsing thread holds
        the interpreter lock most of the time, and every return of this thread costs a lock handoff
        (up to 5 ms), so reading two small pieces per message fell behind a primary that sends a
        million rules in a second (Knot drops a client it considers idle after 10 s)."""
        buf = bytearray()
        pos = 0
        try:
            while not self._stop.is_set():
                while len(buf) - pos < 2:
                    buf, pos = self._fill(buf, pos)
                (n,) = struct.unpack_from("!H", buf, pos)
                self.total += n + 2
                if self.total > self.max_bytes:
                    raise TooLarge("max_bytes", f"more than {self.max_bytes} bytes transferred")
                while len(buf) - pos < n + 2:
                    buf, pos = self._fill(buf, pos)
                data = bytes(buf[pos + 2:pos + 2 + n])
                pos += n + 2
                self.q.put((data, time.time()))   # the TSIG time check is against the arrival time
        except BaseException as exc:  # handed to the parsing side, which raises it
            self.q.put(exc)

    CHUNK = 1 << 20

    def _fill(self, buf: bytearray, pos: int) -> tuple[bytearray, int]:
        """More octets from the socket (what is already consumed is dropped first)."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise dns.exception.Timeout
        self.s.settimeout(left)
        chunk = self.s.recv(self.CHUNK)
        if not chunk:
            raise EOFError("connection closed by the primary")
        if pos:
            del buf[:pos]
        buf += chunk
        return buf, 0

    def next(self) -> tuple[bytes, float]:
        """The next message; what arrived before the deadline is handed out however late it is
        parsed (the cap is on receiving, not on our parsing)."""
        left = max(0.0, self.deadline - time.monotonic())
        try:
            item = self.q.get(timeout=left)
        except queue.Empty:
            raise dns.exception.Timeout from None
        if isinstance(item, BaseException):
            raise item
        return item

    def stop(self) -> None:
        self._stop.set()


Received = dns.zone.Zone | xfrwire.ZoneRecords


def transfer(feed: FeedConfig, primary: Primary, base: dns.zone.Zone | None, base_serial: int | None, *,
             max_bytes: int, timeout: float, progress: Callable[[int, int], None] | None = None
             ) -> tuple[Received, int, str, set[dns.name.Name]]:
    """AXFR (no base) or IXFR from ``base_serial`` into ``base``. Returns (what was received, bytes,
    "axfr"|"ixfr", the owner names an IXFR touched). A full transfer (an AXFR, or an IXFR the primary
    answered AXFR-style) is read by xfrwire into a ``ZoneRecords``; an incremental one is applied to
    ``base`` by dnspython's ``dns.xfr.Inbound``.

    The base zone is changed in place by an IXFR only when the whole transfer verified (dnspython
    commits the transaction after the last, signed message).
    """
    origin = dns.name.from_text(feed.zone + ".")
    incremental = base is not None and base_serial is not None
    zone = base if incremental else IxfrZone(origin, relativize=False)
    assert zone is not None
    rdtype = dns.rdatatype.IXFR if incremental else dns.rdatatype.AXFR
    q, serial = dns.xfr.make_query(zone, serial=base_serial if incremental else None)
    _tsig(q, feed)
    deadline = time.monotonic() + timeout
    total = 0
    started = False
    received: Received = zone
    try:
        with socket.create_connection((primary.host, primary.port), timeout=min(timeout, 10)) as s:
            wire = q.to_wire()
            s.sendall(struct.pack("!H", len(wire)) + wire)
            reader = _Reader(s, deadline, max_bytes)
            touched: set[dns.name.Name] = set()
            check = _TsigCheck(keyring(feed), bytes(q.mac or b""))
            parsed = 0
            first: tuple[bytes, float] | None = reader.next()
            started = True
            assert first is not None
            full = not incremental or _axfr_style(first[0], origin, base_serial)
            if full:
                builder = xfrwire.AxfrBuilder(bytes(origin.to_wire() or b""), int(rdtype))
                done = False
                while not done:
                    data, arrived = first if first is not None else reader.next()
                    first = None
                    msg = xfrwire.read_message(data)
                    check.raw(data, msg, arrived)
                    done = builder.feed(msg)
                    if done and msg.tsig is None:
                        raise dns.exception.FormError("missing TSIG")  # type: ignore[no-untyped-call]
                    parsed += len(data) + 2
                    if progress is not None:
                        progress(parsed, reader.total if not done else parsed)
                received = builder.zone
                incremental = False
            else:
                with dns.xfr.Inbound(zone, rdtype, serial) as inbound:
                    done = False
                    while not done:
                        data, arrived = first if first is not None else reader.next()
                        first = None
                        r = dns.message.from_wire(data, keyring=_defer_tsig, request_mac=q.mac,
                                                  xfr=True, origin=zone.from_wire_origin(),
                                                  multi=True, one_rr_per_rrset=True)
                        check(data, r, arrived)
                        touched.update(rrset.name for rrset in r.answer)
                        done = inbound.process_message(r)
                        parsed += len(data) + 2
                        if progress is not None:
                            progress(parsed, reader.total if not done else parsed)
                incremental = inbound.incremental
            total = reader.total
            reader.stop()
    except (dns.exception.Timeout, TimeoutError) as exc:
        if started:
            raise FeedRefused(RefusalCode.TOO_LARGE, feed.name, base_serial, "transfer_timeout",
                              f"primary {primary}: no complete transfer within {timeout:g} s") from exc
        raise FetchFailed(feed.name, f"primary {primary}", "transfer timed out before any data") from exc
    except (OSError, EOFError) as exc:
        raise FetchFailed(feed.name, f"primary {primary}", f"transfer: {exc}") from exc
    except dns.xfr.TransferError as exc:
        refused = refused_from(exc, feed, base_serial, primary)
        if refused is not None:
            raise refused from exc
        raise FetchFailed(feed.name, f"primary {primary}",
                          f"transfer answered {dns.rcode.to_text(exc.rcode)} (is this node allowed to transfer?)"
                          ) from exc
    except Exception as exc:
        refused = refused_from(exc, feed, base_serial, primary)
        if refused is None:
            raise
        raise refused from exc
    if not incremental and not isinstance(received, xfrwire.ZoneRecords):
        received = zone       # dnspython applied an AXFR-style answer: a zone of its own
    return received, total, "ixfr" if incremental else "axfr", touched


def _axfr_style(data: bytes, origin: dns.name.Name, base_serial: int | None) -> bool:
    """RFC 1995 section 4: an IXFR answer whose second record is not the zone's SOA is a full zone.
    Only a first message that shows this plainly (rcode 0, a newer SOA, then another record) takes
    the full-transfer reader; anything else goes to dnspython's Inbound, which decides the rest."""
    try:
        msg = xfrwire.read_message(data)
    except dns.exception.FormError:
        return False
    ans = msg.answer
    o = bytes(origin.to_wire() or b"").lower()
    if msg.rcode != 0 or len(ans) < 2 or ans[0][1] != xfrwire.T_SOA or ans[0][0].lower() != o:
        return False
    if base_serial is None or serials.compare(xfrwire.soa_serial(ans[0][4]), base_serial) is not serials.Order.NEWER:
        return False
    return not (ans[1][1] == xfrwire.T_SOA and ans[1][0].lower() == o)


def zone_serial(zone: dns.zone.Zone) -> int:
    return int(zone.get_soa().serial)


def check_zonemd(zone: dns.zone.Zone, feed: FeedConfig) -> tuple[str, str | None]:
    """('verified', "zonemd-sha384:<hex>") | ('absent', None); FeedRefused FEED_INTEGRITY on a bad or
    (when required) missing ZONEMD. RFC 8976 section 1.3: ZONEMD over a large, often changing zone
    costs a full pass over the zone per version."""
    s = zone_serial(zone)
    try:
        zone.verify_digest()
    except dns.zone.NoDigest as exc:
        if feed.require_zonemd:
            raise FeedRefused(RefusalCode.INTEGRITY, feed.name, s, "zonemd",
                              "the zone carries no ZONEMD record and require_zonemd = true") from exc
        return "absent", None
    except (dns.zone.DigestVerificationFailure, dns.zone.UnsupportedDigestScheme,
            dns.zone.UnsupportedDigestHashAlgorithm) as exc:
        raise FeedRefused(RefusalCode.INTEGRITY, feed.name, s, "zonemd",
                          f"ZONEMD does not match the zone ({type(exc).__name__}); serial {s}") from exc
    rds = zone.get_rdataset(zone.origin, dns.rdatatype.ZONEMD)  # type: ignore[arg-type]
    hexes = sorted(f"zonemd-{'sha384' if rd.hash_algorithm == 1 else 'sha512'}:{rd.digest.hex()}" for rd in rds or ())
    return "verified", hexes[0] if hexes else None


def zone_from_text(text: bytes, feed: FeedConfig) -> dns.zone.Zone:
    return dns.zone.from_text(text.decode("utf-8"), origin=feed.zone + ".", relativize=False, check_origin=True,
                              zone_factory=IxfrZone)


def newer(new: int, old: int | None) -> serials.Order:
    return serials.Order.NEWER if old is None else serials.compare(new, old)
