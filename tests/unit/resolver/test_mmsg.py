"""resolver/mmsg.py on real loopback sockets: a batch in, answers out to each sender."""

from __future__ import annotations

import socket

import pytest

from resolver import mmsg

pytestmark = pytest.mark.skipif(not mmsg.available(), reason="recvmmsg/sendmmsg not available from this C library")


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_a_batch_is_received_and_answered_to_each_sender(family: int, host: str) -> None:
    with socket.socket(family, socket.SOCK_DGRAM) as server:
        server.bind((host, 0))
        server.setblocking(False)
        clients = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(5)]
        try:
            for k, c in enumerate(clients):
                c.bind((host, 0))
                c.settimeout(2)
                c.sendto(bytes([k, k]) + b"question-%d" % k, server.getsockname()[:2])
            b = mmsg.Batch(server, slots=8, rsize=512)
            n = b.recv()
            assert n == 5
            bodies = []
            for i in range(n):
                size = b.rhdr32[i * 16 + 14]
                data = b.rbuf[i * 512:i * 512 + size].tobytes()
                k = data[0]
                assert data == bytes([k, k]) + b"question-%d" % k
                assert b.address(i)[:2] == clients[k].getsockname()[:2]
                body = b"answer-%d" % k
                bodies.append(body)            # kept alive until sent
                b.queue(i, i, body)
            assert b.send(n) == 0
            for k, c in enumerate(clients):
                assert c.recv(100) == bytes([k, k]) + b"answer-%d" % k   # the ID comes from the query
            assert b.recv() == 0                                           # nothing more waiting: no error
        finally:
            for c in clients:
                c.close()


def test_sockaddr_decoding_matches_the_socket_module() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.2", 0))
        b.sendto(b"x", a.getsockname())
        _data, addr = a.recvfrom(10)
        raw = socket.AF_INET.to_bytes(2, "little") + addr[1].to_bytes(2, "big") + socket.inet_aton(addr[0]) + bytes(20)
        assert mmsg.decode_sockaddr(raw, socket.AF_INET) == addr
    raw6 = (socket.AF_INET6.to_bytes(2, "little") + (5353).to_bytes(2, "big") + bytes(4)
            + socket.inet_pton(socket.AF_INET6, "2001:db8::53") + bytes(4))
    assert mmsg.decode_sockaddr(raw6, socket.AF_INET6) == ("2001:db8::53", 5353, 0, 0)
