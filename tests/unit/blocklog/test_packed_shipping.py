"""A receive batch's hits shipped as they are (``submit_packed``): the sender-address slots the
kernel wrote, one byte per answer with hits, the remembered templates. The writer turns the slots
into the same (ip, port) that ``recvfrom`` would have given; a full queue counts what it refuses;
a message that is not well formed is refused field by field. Real loopback sockets, a real writer
and a real SQLite file."""

from __future__ import annotations

import array
import collections
import marshal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.public import PrivateKey

from resolver import mmsg
from resolver.blocklog import BlocklogStore, Columns, HitRow, columns_from_raws
from resolver.blocklog_config import BlocklogConfig
from resolver.blocklog_seal import open_client
from resolver.blocklog_ship import BlocklogWriter, ShippingSink, TemplateTable, decode, decode_columns
from resolver.hits import TemplateNumbers, flatten, untag

T1 = ("csam-site.test.", 1, "hotline.rpz.test.", 7, "QNAME", "csam-site.test.hotline.rpz.test.", "nxdomain",
      "TW-2026-0042")
T2 = ("fraud.test.", 28, "hotline.rpz.test.", 7, "QNAME", "fraud.test.hotline.rpz.test.", "nxdomain", "TW-2026-0043")
NS = mmsg.NAME_SIZE

needs_mmsg = pytest.mark.skipif(not mmsg.available(), reason="recvmmsg/sendmmsg not available from this C library")


@contextmanager
def kernel_slots(family: int, host: str, senders: int) -> Iterator[tuple[bytes, list[tuple[str, int]]]]:
    """The address slots of one real receive batch (datagram k from sender k) and the senders'
    addresses as the socket module names them."""
    with socket.socket(family, socket.SOCK_DGRAM) as server:
        server.bind((host, 0))
        server.setblocking(False)
        clients = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(senders)]
        try:
            for c in clients:
                c.bind((host, 0))
                c.sendto(b"q", server.getsockname()[:2])
            b = mmsg.Batch(server, slots=8, rsize=64)
            n = b.recv()
            assert n == senders
            order = [b.address(i)[:2] for i in range(n)]
            yield bytes(b.names[:n * NS]), order
        finally:
            for c in clients:
                c.close()


class Listener:
    """The writer's end of the socket, read by the test itself: every connection, in order."""

    def __init__(self, path: Path) -> None:
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.server.bind(str(path))
        self.server.listen(4)
        self.server.setblocking(False)
        self.conns: list[socket.socket] = []

    def messages(self) -> list[bytes]:
        """What arrived so far (the sink sends before this is called: nothing is waited for)."""
        while True:
            try:
                c, _ = self.server.accept()
            except BlockingIOError:
                break
            c.setblocking(False)
            self.conns.append(c)
        out = []
        for c in self.conns:
            while True:
                try:
                    data = c.recv(1 << 20)
                except BlockingIOError:
                    break
                if not data:
                    break
                out.append(data)
        return out

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.server.close()


@needs_mmsg
@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_the_writer_reads_the_senders_from_the_kernels_slots(tmp_path: Path, family: int, host: str) -> None:
    listener = Listener(tmp_path / "w.sock")
    sink = ShippingSink(str(tmp_path / "w.sock"), interval_s=3600)
    try:
        with kernel_slots(family, host, 3) as (names, senders):
            # answers 0 and 2 of the batch had hits (answer 1 did not)
            sink.submit_packed(1_790_000_000_000, int(family), names, bytes([0, 2]), [(T1,), (T1, T2)], "udp")
        assert sink.queued() == 2
        assert sink.flush() == 2
        assert sink.queued() == 0 and sink.shipped == 2
        records = [r for m in listener.messages() for r in decode(m)[2]]
    finally:
        sink.close()
        listener.close()
    assert records == [(1_790_000_000_000, *senders[0], (T1,), "udp"),
                       (1_790_000_000_000, *senders[2], (T1, T2), "udp")]


def test_batched_hits_beyond_the_bound_are_counted_never_lost_silently(tmp_path: Path) -> None:
    names = bytes(8 * NS)
    sink = ShippingSink(str(tmp_path / "absent.sock"), queue_size=4, interval_s=3600)
    try:
        sink.submit_packed(1, int(socket.AF_INET), names, bytes([0, 1]), [(T1,), (T2,)], "udp")
        sink.submit_packed(2, int(socket.AF_INET), names, bytes([0, 3, 5]), [(T2,), (T1,), (T1, T2)], "udp")
        sink.submit_packed(3, int(socket.AF_INET), names, bytes([7]), [(T1, T2)], "udp")
        sink.submit_hits(1, "192.0.2.1", 1, (T1,), "udp")                # the per-query queue has its own bound
        assert sink.queued() == 7 and sink.dropped == 0
        # the writer is away: the flusher keeps whole batches up to four answers and counts the
        # rest by their hits (the second batch does not fit after the first: 1 + 1 + 2, then 2)
        assert sink.flush() == 0
        assert sink.queued() == 3 and sink.dropped == 6
        (held,) = sink._held
        batches, _names, tags = flatten(held[0], NS)
        assert batches == [(1, "udp", 2, 8, 2)] and untag(tags, held[1]) == (bytes([0, 1]), [(T1,), (T2,)])
        # while it waits, the reader's queue refuses batches once four wait (nobody takes them)
        for t in range(5):
            sink.submit_packed(10 + t, int(socket.AF_INET), names, bytes([t]), [(T1,)], "udp")
        assert sink.dropped == 6 + 1 and len(sink.packed_hits.batches) == 4
        assert sink.flush() == 0                                          # room for two more answers
        assert sink.queued() == 1 + 2 + 2 and sink.dropped == 7 + 2
    finally:
        sink.close(timeout=0.2)


def test_unsent_batches_wait_and_reach_the_log_once_the_writer_is_there(tmp_path: Path) -> None:
    key = PrivateKey.generate()
    cfg = BlocklogConfig(enabled=True, path=str(tmp_path / "blocklog.sqlite"), socket_path=str(tmp_path / "bl.sock"),
                         node="edge-1", flush_interval_ms=20, compliance_public_key=bytes(key.public_key))
    logged: list[tuple[str, str]] = []
    sink = ShippingSink(cfg.socket_path, interval_s=3600, log=lambda level, event, **kw: logged.append((level, event)))
    slots = bytearray(2 * NS)
    for i, (ip, port) in enumerate((("198.51.100.7", 40000), ("203.0.113.9", 53))):
        o = i * NS
        slots[o:o + 2] = int(socket.AF_INET).to_bytes(2, "little")
        slots[o + 2:o + 4] = port.to_bytes(2, "big")
        slots[o + 4:o + 8] = socket.inet_aton(ip)
    sink.submit_packed(1_790_000_000_000, int(socket.AF_INET), bytes(slots), bytes([1, 0]), [(T1,), (T2,)], "udp")
    assert sink.flush() == 0                                   # nobody listens yet: kept, not lost
    assert sink.queued() == 2 and sink.dropped == 0
    assert ("warning", "blocklog_writer_unreachable") in logged
    writer = BlocklogWriter(cfg).start()
    try:
        assert sink.flush() == 2
    finally:
        sink.close()
        writer.close()
    store = BlocklogStore(cfg.path, node="edge-1")
    try:
        rows = list(store.records())
        assert [(r.qname, open_client(key, r.sealed_client)) for r in rows] == [
            ("csam-site.test.", ("203.0.113.9", 53)), ("fraud.test.", ("198.51.100.7", 40000))]
        assert store.verify().ok
    finally:
        store.close()


def message(batches: list[object], names: bytes, at: bytes, numbers: bytes, defs: object = None) -> bytes:
    return marshal.dumps((2, 4242, 0, [], batches, names, at, numbers, defs))


def refs(*numbers: int) -> bytes:
    return array.array("I", numbers).tobytes()


GOOD = ((7, "udp", int(socket.AF_INET), 2, 1), bytes(2 * NS), bytes([1]), refs(0))
S2 = bytes(2 * NS)


@pytest.mark.parametrize("bad,defs,words", [
    (((7, "udp", 99, 2, 1), S2, bytes([1]), refs(0)), None, "packed batch"),              # no such family
    (((7, "udp", 2, 2, 1), S2, bytes([2]), refs(0)), None, "packed batch"),               # slot past its slots
    (((7, "udp", 2, 3, 1), S2, bytes([0]), refs(0)), None, "packed batch"),               # more slots than sent
    (((7, "udp", 2, 1, 1), S2, bytes([0]), refs(0)), None, "cover"),                      # fewer slots than sent
    (((7, "quic", 2, 2, 1), S2, bytes([0]), refs(0)), None, "packed batch"),              # no such transport
    (((7, "udp", 2, 2, 2), S2, bytes([0]), refs(0)), None, "packed batch"),               # an answer missing
    (((1 << 70, "udp", 2, 2, 1), S2, bytes([0]), refs(0)), None, "packed batch"),         # a time past int64
    (((7.0, "udp", 2, 2, 1), S2, bytes([0]), refs(0)), None, "packed batch"),             # a time not an int
    (((7, "udp", 2, 1 << 70, 1), S2, bytes([0]), refs(0)), None, "packed batch"),         # slots past int64
    (((7, "udp", 2, 2, True), S2, bytes([0]), refs(0)), None, "packed batch"),            # a bool, not an int
    (((7, ["udp"], 2, 2, 1), S2, bytes([0]), refs(0)), None, "packed batch"),             # unhashable transport
    (((7, "udp", [2], 2, 1), S2, bytes([0]), refs(0)), None, "packed batch"),             # unhashable family
    (([7, "udp", 2, 2, 1], S2, bytes([0]), refs(0)), None, "packed batch"),               # a list, not a tuple
    (((7, "udp", 2, 2), S2, bytes([0]), refs(0)), None, "packed batch"),                  # a field missing
    (((7, "udp", 2, 0, 1), b"", bytes([0]), refs(0)), None, "packed batch"),              # a batch of no slots
    (((7, "udp", 2, 2, 1), S2, bytes([0]), refs(0, 0)), None, "template numbers for"),    # one number too many
    (((7, "udp", 2, 2, 1), S2, bytes([0]), refs(5)), None, "refer to template 5"),        # past the table
    (((7, "udp", 2, 2, 1), S2, bytes([0]), refs(1)), (1, [(T1[:7],)]), "hit template"),  # a short template
    (((7, "udp", 2, 2, 1), S2, bytes([0]), refs(1)), (1, [T1]), "hit template"),         # not a tuple of them
    (((7, "udp", 2, 2, 1), S2, bytes([0]), refs(1)), (4, [(T2,)]), "start at 4"),        # out of step
])
def test_malformed_packed_batches_are_refused(bad: tuple[object, ...], defs: object, words: str) -> None:
    table: list[tuple[tuple[object, ...], ...]] = []
    got = decode(message([GOOD[0]], GOOD[1], GOOD[2], GOOD[3], (0, [(T1,)])), table)[2]  # type: ignore[arg-type]
    assert got == [(7, "0.0.0.0", 0, (T1,), "udp")] and table == [(T1,)]
    batch, names, at, numbers = bad
    bad_message = message([GOOD[0], batch], GOOD[1] + names, GOOD[2] + at, GOOD[3] + numbers, defs)  # type: ignore
    with pytest.raises(ValueError, match=words):
        decode(bad_message, table)                                                            # type: ignore[arg-type]
    columns = TemplateTable()                  # the writer's reading refuses it the same way
    assert len(decode_columns(message([GOOD[0]], GOOD[1], GOOD[2], GOOD[3], (0, [(T1,)])), columns)[2]) == 1
    with pytest.raises(ValueError, match=words):
        decode_columns(bad_message, columns)


def test_templates_travel_once_per_connection(tmp_path: Path) -> None:
    """The second message refers to the templates the first defined; when the data plane numbers
    from 0 again (a policy swap) the table starts again (base 0) on both ends."""
    listener = Listener(tmp_path / "w.sock")
    sink = ShippingSink(str(tmp_path / "w.sock"), interval_s=3600)
    names, table = bytes(4 * NS), []
    first, second, third = (T1,), (T2,), (T1, T2)
    try:
        sink.submit_packed(1, int(socket.AF_INET), names, bytes([0, 1]), [first, second], "udp")
        sink.flush()
        sink.submit_packed(2, int(socket.AF_INET), names, bytes([2, 3]), [second, first], "udp")
        sink.flush()
        one, two = listener.messages()
        assert len(two) < len(one)                      # no template travels twice
        with pytest.raises(ValueError, match="refer to template"):
            decode(two)                                 # a message of the connection, read without its table
        got = [r[3] for m in (one, two) for r in decode(m, table)[2]]   # type: ignore[arg-type]
        assert got == [first, second, second, first] and table == [first, second]
        sink.packed_hits.numbers.restart()              # what Pipeline.swap does
        sink.submit_packed(3, int(socket.AF_INET), names, bytes([0, 1]), [third, first], "udp")
        sink.flush()
        (three,) = listener.messages()
        assert [r[3] for r in decode(three, table)[2]] == [third, first]  # type: ignore[arg-type]
        assert table == [third, first]                  # started again from 0
    finally:
        sink.close()
        listener.close()


def test_batches_of_two_numberings_are_shipped_each_with_its_own_table(tmp_path: Path) -> None:
    """Batches numbered before a restart still wait when it happens: they are taken and shipped
    on their own, then the table starts again for the batches numbered after it."""
    listener = Listener(tmp_path / "w.sock")
    sink = ShippingSink(str(tmp_path / "w.sock"), interval_s=3600)
    names, table = bytes(4 * NS), []
    try:
        sink.submit_packed(1, int(socket.AF_INET), names, bytes([0, 1]), [(T1,), (T2,)], "udp")
        old = sink.packed_hits.numbers.tuples
        sink.packed_hits.numbers.restart()
        b = (T2,)                                       # numbered by identity: one number for both answers
        sink.submit_packed(2, int(socket.AF_INET), names, bytes([0, 1, 2]), [b, b, (T1, T2)], "udp")
        assert sink.packed_hits.numbers.tuples is not old
        assert sink.queued() == 5 and sink.flush() == 5 and sink.queued() == 0
        got = [[(r[0], r[3]) for r in decode(m, table)[2]] for m in listener.messages()]  # type: ignore[arg-type]
        assert got == [[(1, (T1,)), (1, (T2,))], [(2, (T2,)), (2, (T2,)), (2, (T1, T2))]]
        assert table == [(T2,), (T1, T2)]
    finally:
        sink.close()
        listener.close()


def test_a_new_connection_is_sent_the_whole_numbering_in_bounded_messages(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the writer comes back, the numbers a message uses may refer to tuples numbered long
    before: every tuple up to the highest is defined again, a long run in messages of its own."""
    from resolver import blocklog_ship
    listener = Listener(tmp_path / "w.sock")
    sink = ShippingSink(str(tmp_path / "w.sock"), interval_s=3600)
    names = bytes(8 * NS)
    many = [((f"q{i}.csam-site.test.", *T1[1:]),) for i in range(7)]
    try:
        sink.submit_packed(1, int(socket.AF_INET), names, bytes(range(7)), many, "udp")
        assert sink.flush() == 7
        sink._close_socket()                            # the writer went away and came back
        monkeypatch.setattr(blocklog_ship, "MESSAGE_DEFINITIONS", 2)
        sink.submit_packed(2, int(socket.AF_INET), names, bytes([0]), [many[6]], "udp")
        assert sink.flush() == 1
        messages = listener.messages()
        table: list[tuple[tuple[object, ...], ...]] = []
        first = [r[3] for r in decode(messages[0], table)[2]]        # type: ignore[arg-type]
        assert first == many and table == many
        table = []                                      # the second connection's table
        again = [decode(m, table)[2] for m in messages[1:]]           # type: ignore[arg-type]
        # 7 tuples to define, 2 a message: three messages of definitions only, then the batch with one
        assert [len(r) for r in again] == [0, 0, 0, 1] and again[-1][0][3] == many[6] and table == many
        assert all(len(m) < 1 << 16 for m in messages)
    finally:
        sink.close()
        listener.close()


def test_numbers_are_bounded_and_a_full_numbering_falls_back_to_records(tmp_path: Path) -> None:
    """Past its limit TemplateNumbers refuses (and says it is full); a sink given templates it can
    no longer number queues them per query instead: nothing is lost while the pipeline restarts."""
    numbers = TemplateNumbers(limit=2)
    a, b, c = (T1,), (T2,), (T1, T2)
    assert (numbers.tag(a), numbers.tag(b), numbers.tag(a)) == (0, 1 << 8, 0)
    assert numbers.tag(c) is None and numbers.full and numbers.tuples == [a, b]
    with pytest.raises(ValueError, match="limit"):
        TemplateNumbers(limit=1 << 24)
    sink = ShippingSink(str(tmp_path / "absent.sock"), interval_s=3600)
    sink.packed_hits.numbers = numbers
    try:
        sink.submit_packed(5, int(socket.AF_INET), bytes(2 * NS), bytes([0, 1]), [a, c], "udp")
        assert not sink.packed_hits.batches and [r[3] for r in sink.q] == [a, c] and sink.dropped == 0
    finally:
        sink.close(timeout=0.2)


def test_protocol_1_messages_are_still_read() -> None:
    old = marshal.dumps((1, 4242, 3, [(7, "192.0.2.1", 53, (T1,), "tcp")]))
    assert decode(old) == (4242, 3, [(7, "192.0.2.1", 53, (T1,), "tcp")])
    with pytest.raises(ValueError, match="protocol"):
        decode(marshal.dumps((1, 4242, 3, [], [], b"", b"", b"", None)))  # version 1 has no packed batches
    with pytest.raises(ValueError, match="protocol"):
        decode(marshal.dumps((2, 4242, 3, [], [])))                       # version 2 has them
    with pytest.raises(ValueError, match="protocol"):
        decode(marshal.dumps((3, 4242, 3, [], [], b"", b"", b"", None)))


def test_hits_that_cannot_be_encoded_are_counted_and_shipping_goes_on(tmp_path: Path) -> None:
    listener = Listener(tmp_path / "w.sock")
    logged: list[str] = []
    sink = ShippingSink(str(tmp_path / "w.sock"), interval_s=3600, log=lambda level, event, **kw: logged.append(event))
    try:
        sink.submit_hits(1, "192.0.2.1", 1, ((object(),),), "udp")       # type: ignore[arg-type]  # a producer's bug
        sink.flush()
        assert sink.dropped == 1 and sink.queued() == 0 and "blocklog_unshippable" in logged
        sink.submit_hits(2, "192.0.2.2", 2, (T1,), "udp")
        assert sink.flush() == 1
        msgs = listener.messages()
        assert collections.Counter(r[1] for m in msgs for r in decode(m)[2]) == {"192.0.2.2": 1}
        assert decode(msgs[-1])[1] == 1                    # the drop travels to the writer's metrics
    finally:
        sink.close()
        listener.close()


def test_a_new_connection_defines_its_templates_again(tmp_path: Path) -> None:
    """The writer's end goes away (a restart): what was not sent stays queued, and the next
    connection's first message defines every template it refers to from number 0."""
    listener = Listener(tmp_path / "w.sock")
    sink = ShippingSink(str(tmp_path / "w.sock"), interval_s=3600)
    names = bytes(2 * NS)
    try:
        sink.submit_packed(1, int(socket.AF_INET), names, bytes([0]), [(T1,)], "udp")
        assert sink.flush() == 1
        assert len(listener.messages()) == 1
        listener.conns.pop().close()                     # the writer's end closes
        sink.submit_packed(2, int(socket.AF_INET), names, bytes([1]), [(T1,)], "udp")
        assert sink.flush() == 0 and sink.queued() == 1  # refused: kept
        assert sink.flush() == 1                         # a new connection
        (msg,) = listener.messages()
        assert decode(msg)[2] == [(2, "0.0.0.0", 0, (T1,), "udp")]   # complete on its own
    finally:
        sink.close()
        listener.close()


SLOT_FAMILIES = (int(socket.AF_INET), int(socket.AF_INET6))


def tcp_flags(cols: Columns) -> list[int]:
    return [0] * len(cols) if cols.tcp is None else cols.tcp.tolist()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_decode_columns_reads_what_decode_reads(data: st.DataObject) -> None:
    """The writer's reading by column gives the same records, in the same order, as ``decode``:
    IPv4 and IPv6 slots, udp and tcp, answers with 0, 1 or 2 hits, per-query records first, tables
    that grow and start again over a connection's messages."""
    pool = [(T1,), (T2,), (T1, T2), ()]
    rows_table: list[tuple[tuple[object, ...], ...]] = []
    cols_table = TemplateTable()
    size = 0
    for m in range(data.draw(st.integers(1, 3))):
        base = 0 if m == 0 or data.draw(st.booleans()) else size
        new = data.draw(st.lists(st.sampled_from(pool), min_size=1 if base == 0 else 0, max_size=3))
        size = base + len(new)
        batches, names, at, numbers = [], b"", b"", []
        for _ in range(data.draw(st.integers(0, 3))):
            fam = data.draw(st.sampled_from(SLOT_FAMILIES))
            slots = data.draw(st.integers(1, 4))
            picked = data.draw(st.lists(st.integers(0, slots - 1), min_size=1, max_size=slots))
            batches.append((data.draw(st.integers(0, 2**40)), data.draw(st.sampled_from(["udp", "tcp"])), fam, slots,
                            len(picked)))
            names += b"".join(data.draw(st.binary(min_size=NS, max_size=NS))[:24] + bytes(4) for _ in range(slots))
            at += bytes(picked)
            numbers += [data.draw(st.integers(0, size - 1)) for _ in picked]
        records = data.draw(st.lists(st.tuples(st.integers(0, 2**40), st.sampled_from(["192.0.2.1", "2001:db8::5"]),
                                               st.integers(0, 65535), st.sampled_from(pool[:3]),
                                               st.sampled_from(["udp", "tcp"])), max_size=2))
        msg = marshal.dumps((2, 4242, 5, records, batches, names, at, refs(*numbers),
                             (base, new) if new or base == 0 else None))
        want = columns_from_raws(decode(msg, rows_table)[2])       # type: ignore[arg-type]
        pid, dropped, got = decode_columns(msg, cols_table)
        assert (pid, dropped, len(got)) == (4242, 5, len(want))
        assert got.times.tolist() == want.times.tolist()
        assert [got.templates[i] for i in got.tpl.tolist()] == [want.templates[i] for i in want.tpl.tolist()]
        assert tcp_flags(got) == tcp_flags(want)
        assert got.addrs.tobytes() == want.addrs.tobytes()


def test_on_the_event_loop_hits_are_shipped_by_a_timer_without_a_thread(tmp_path: Path) -> None:
    """The worker's way (resolver.workers): the flusher is a timer on the data plane's loop."""
    import asyncio
    import threading
    listener = Listener(tmp_path / "w.sock")
    loop = asyncio.new_event_loop()
    sink = ShippingSink(str(tmp_path / "w.sock"), interval_s=0.01, loop=loop)
    got: list[bytes] = []

    async def until_shipped() -> None:
        for _ in range(500):
            got.extend(listener.messages())
            if got:
                return
            await asyncio.sleep(0.01)
    try:
        assert not [t for t in threading.enumerate() if t.name == "blocklog-shipper"]
        sink.submit_hits(7, "192.0.2.1", 5300, (T1,), "udp")
        sink.submit_packed(8, int(socket.AF_INET), bytes(2 * NS), bytes([1]), [(T2,)], "udp")
        loop.run_until_complete(until_shipped())
        table: list[tuple[tuple[object, ...], ...]] = []
        records = [r for m in got for r in decode(m, table)[2]]           # type: ignore[arg-type]
        assert [(r[0], r[3]) for r in records] == [(7, (T1,)), (8, (T2,))] and sink.queued() == 0
    finally:
        sink.close()
        loop.close()
        listener.close()


def test_on_the_loop_a_full_writer_socket_defers_and_loses_nothing(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop never waits on the writer: when its socket is full, what was not sent stays
    queued (the connection and its template table kept) and goes out on a later turn, in order."""
    import asyncio

    from resolver import blocklog_ship
    monkeypatch.setattr(blocklog_ship, "SEND_BUFFER", 64 << 10)      # a few messages fill it
    listener = Listener(tmp_path / "w.sock")
    loop = asyncio.new_event_loop()                 # not run: flush is called by hand
    sink = ShippingSink(str(tmp_path / "w.sock"), interval_s=3600, loop=loop)
    tpls = [((f"q{i}.csam-site.test.", *T1[1:]),) for i in range(64)]
    try:
        for b in range(400):                        # 25,600 answers: 25 messages of 1,024
            sink.submit_packed(b, int(socket.AF_INET), bytes(64 * NS), bytes(range(64)), tpls, "udp")
        for r in range(50):
            sink.submit_hits(10_000 + r, "192.0.2.1", 53, (T1,), "udp")
        first = sink.flush()                        # nobody reads: the socket fills
        assert sink.deferred == 1 and first < 400 * 64 + 50
        conn = sink._sock
        assert conn is not None and conn.gettimeout() == 0.0 and sink.queued() == 400 * 64 + 50 - first
        assert sink.shipping_stats() == {"deferred": 1, "held": 400 * 64 + 50 - first}    # the worker's metrics
        messages = listener.messages()
        while sink.queued():                        # the writer reads; later turns send the rest
            sink.flush()
            messages += listener.messages()
        assert sink._sock is conn and sink.dropped == 0
        assert sink.shipping_stats()["held"] == 0 and sink.shipping_stats()["deferred"] >= 1
        table: list[tuple[tuple[object, ...], ...]] = []
        records = [r for m in messages for r in decode(m, table)[2]]     # type: ignore[arg-type]
        assert len(records) == 400 * 64 + 50
        packed = [r[0] for r in records if r[0] < 10_000]
        assert packed == sorted(packed) and len(set(packed)) == 400 and {r[3] for r in records} >= set(tpls)
        assert sorted(r[0] for r in records if r[0] >= 10_000) == list(range(10_000, 10_050))
    finally:
        sink.close(timeout=0.5)
        loop.close()
        listener.close()


def test_on_the_loop_close_from_another_thread_stops_the_timer_and_ships_the_rest(tmp_path: Path) -> None:
    """The resolver closes its sink from an executor thread: the loop's timer is left to find the
    sink stopped (a timer handle belongs to its loop's thread), and what was queued is shipped."""
    import asyncio
    import threading
    listener = Listener(tmp_path / "w.sock")
    loop = asyncio.new_event_loop()
    sink = ShippingSink(str(tmp_path / "w.sock"), interval_s=0.01, loop=loop)
    try:
        sink.submit_hits(7, "192.0.2.1", 5300, (T1,), "udp")
        closer = threading.Thread(target=sink.close)
        closer.start()
        closer.join(10)
        assert not closer.is_alive() and sink.queued() == 0
        sink.submit_hits(8, "192.0.2.1", 5300, (T2,), "udp")      # after close: stays queued
        loop.run_until_complete(asyncio.sleep(0.05))                 # the timer fires, sees the stop
        assert sink.queued() == 1 and not loop._scheduled           # type: ignore[attr-defined]
        records = [r for m in listener.messages() for r in decode(m, [])[2]]
        assert [(r[0], r[3]) for r in records] == [(7, (T1,))]
    finally:
        loop.close()
        listener.close()


def v4_slots(addresses: list[tuple[str, int]]) -> bytes:
    """Address slots as the kernel writes them (struct sockaddr_in in NAME_SIZE bytes each)."""
    out = bytearray(len(addresses) * NS)
    for i, (ip, port) in enumerate(addresses):
        o = i * NS
        out[o:o + 2] = int(socket.AF_INET).to_bytes(2, "little")
        out[o + 2:o + 4] = port.to_bytes(2, "big")
        out[o + 4:o + 8] = socket.inet_aton(ip)
    return bytes(out)


@pytest.fixture
def small_send_buffer(monkeypatch: pytest.MonkeyPatch) -> int:
    """A send buffer as small as a host with a low net.core.wmem_max gives (the kernel doubles
    what it is asked for): a message above it is refused with EMSGSIZE."""
    from resolver import blocklog_ship
    monkeypatch.setattr(blocklog_ship, "SEND_BUFFER", 32 << 10)
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 << 10)
        return int(s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))


@contextmanager
def writer_and_sink(tmp_path: Path) -> Iterator[tuple[ShippingSink, list[HitRow]]]:
    """A real writer and a sink shipping to it; once both are closed, the list holds what the log
    holds."""
    cfg = BlocklogConfig(enabled=True, path=str(tmp_path / "blocklog.sqlite"), socket_path=str(tmp_path / "bl.sock"),
                         node="edge-1", flush_interval_ms=20, compliance_public_key=None)
    writer = BlocklogWriter(cfg).start()
    sink = ShippingSink(cfg.socket_path, interval_s=3600)
    logged: list[HitRow] = []
    try:
        yield sink, logged
    finally:
        sink.close()
        writer.close()
    store = BlocklogStore(cfg.path, node="edge-1")
    try:
        logged.extend(store.records())
    finally:
        store.close()


def test_sparse_hits_are_shipped_in_messages_the_socket_takes(tmp_path: Path, small_send_buffer: int) -> None:
    """Where one answer in 64 has hits, a batch carries 64 address slots for one answer: 300 such
    batches are 537 KB of slots, far above the send buffer. They go in several messages, each of
    which fits, and every hit reaches the log."""
    sent_from = [(f"198.51.100.{b % 250 + 1}", 1024 + b) for b in range(300)]
    with writer_and_sink(tmp_path) as (sink, rows):
        for b, sender in enumerate(sent_from):
            others = [("192.0.2.1", 53)] * 63               # allowed answers before it in the receive batch
            sink.submit_packed(1_790_000_000_000 + b, int(socket.AF_INET), v4_slots([*others, sender]),
                               bytes([63]), [(T1,)], "udp")
        assert 4 * small_send_buffer < 300 * 64 * NS
        assert sink.flush() == 300 and sink.queued() == 0 and sink.dropped == 0
    assert [(r.time_ms, r.qname) for r in rows] == [(1_790_000_000_000 + b, T1[0]) for b in range(300)]


def test_long_template_definitions_are_split_to_fit_the_socket(tmp_path: Path, small_send_buffer: int) -> None:
    """600 new templates with 200-character names are ~150 KB of definitions: more than one
    message may hold. They travel first, in messages that fit, and every record names its own."""
    labels = ".".join(["a" * 60] * 3)
    names = [f"n{i:03d}.{labels}.test." for i in range(600)]
    with writer_and_sink(tmp_path) as (sink, rows):
        for k in range(0, 600, 60):
            tuples = [((q, *T1[1:]),) for q in names[k:k + 60]]
            sink.submit_packed(1_790_000_000_000 + k, int(socket.AF_INET),
                               v4_slots([("203.0.113.5", 5300 + i) for i in range(60)]), bytes(range(60)), tuples,
                               "udp")
        assert sum(len(q) for q in names) > small_send_buffer
        assert sink.flush() == 600 and sink.dropped == 0
    assert [r.qname for r in rows] == names


def test_per_query_records_with_long_names_are_split_to_fit_the_socket(tmp_path: Path,
                                                                        small_send_buffer: int) -> None:
    labels = ".".join(["b" * 60] * 3)
    names = [f"t{i:03d}.{labels}.test." for i in range(400)]
    with writer_and_sink(tmp_path) as (sink, rows):
        for i, q in enumerate(names):                       # as TCP queries hand them over, one at a time
            sink.submit_hits(1_790_000_000_000 + i, "2001:db8::53", 40000 + i, ((q, *T1[1:]),), "tcp")
        assert sum(len(q) for q in names) > small_send_buffer
        assert sink.flush() == 400 and sink.dropped == 0
    assert [(r.qname, r.transport) for r in rows] == [(q, "tcp") for q in names]


def test_answer_counts_whose_sum_wraps_are_refused() -> None:
    """Counts of 2**63 - 1 add up past int64: the sum must not wrap round to the answers sent."""
    huge = (1 << 63) - 1
    batches = [(7, "udp", 2, 1, huge), (7, "udp", 2, 1, huge), (7, "udp", 2, 1, 4)]
    bad = message(batches, bytes(3 * NS), bytes(2), refs(0, 0), (0, [(T1,)]))      # type: ignore[arg-type]
    with pytest.raises(ValueError, match="packed batch"):
        decode_columns(bad, TemplateTable())
    with pytest.raises(ValueError, match="packed batch"):
        decode(bad, [])
