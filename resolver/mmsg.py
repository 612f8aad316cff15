"""Batched UDP I/O on Linux: ``recvmmsg(2)`` and ``sendmmsg(2)`` through ctypes.

A remembered answer costs the data plane a few dictionary operations; what dominated was the two
system calls per query (``recvfrom`` and ``sendto``) and the Python objects each one builds (a
bytes object and an address tuple). Here one ``recvmmsg`` fills up to ``slots`` receive buffers
and one ``sendmmsg`` sends every answer of the batch. The buffers, the message headers and the
address slots are allocated once; the hot loop reads them through memoryviews, so a query that
is answered from the table never becomes an address tuple at all.

Layouts are the x86_64/aarch64 Linux ABI (``struct mmsghdr`` is 64 bytes); ``available()`` says
whether this process can use them, and the listener falls back to ``recvfrom``/``sendto``
otherwise.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import socket
import sys
from typing import Any

MSG_DONTWAIT = 0x40
NAME_SIZE = 28          # sizeof(struct sockaddr_in6), enough for sockaddr_in too
HDR_SIZE = 64           # sizeof(struct mmsghdr)
# u32 offsets inside one struct mmsghdr (byte offset / 4)
_NAMELEN = 2            # msg_hdr.msg_namelen at byte 8
_MSGLEN = 14            # msg_len at byte 56
# u64 offsets inside one struct mmsghdr (byte offset / 8)
_NAME = 0               # msg_hdr.msg_name at byte 0


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.c_void_p),
                ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", _Msghdr), ("len", ctypes.c_uint)]


@functools.cache
def _load() -> Any:
    lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    for fn in (lib.recvmmsg, lib.sendmmsg):
        fn.restype = ctypes.c_int
    lib.recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    lib.sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    return lib


def available() -> bool:
    """True on Linux with a C library that has recvmmsg/sendmmsg and the 64-byte mmsghdr layout,
    unless HOTLINE_EDGE_UDP_MMSG=0 turns batching off (for comparison runs)."""
    if os.environ.get("HOTLINE_EDGE_UDP_MMSG", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    if ctypes.sizeof(_Mmsghdr) != HDR_SIZE or ctypes.sizeof(ctypes.c_void_p) != 8:
        return False
    try:
        _load()
    except (OSError, AttributeError):
        return False
    return True


def buffer_address(data: bytes) -> int:
    """The address of an immutable bytes object's contents (valid while the object lives): a
    remembered answer is sent straight from there, without a copy."""
    return ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0


def _headers(count: int, names: Any, iov_per_msg: int, bufs: Any = None, size: int = 0) -> tuple[Any, Any]:
    iov = (_Iovec * (count * iov_per_msg))()
    hdrs = (_Mmsghdr * count)()
    base_name = ctypes.addressof(names)
    for i in range(count):
        if bufs is not None:
            iov[i].base = ctypes.addressof(bufs) + i * size
            iov[i].len = size
        h = hdrs[i].hdr
        h.name = base_name + i * NAME_SIZE
        h.namelen = NAME_SIZE
        h.iov = ctypes.addressof(iov) + i * iov_per_msg * ctypes.sizeof(_Iovec)
        h.iovlen = iov_per_msg
    return iov, hdrs


class Batch:
    """Receive buffers and send headers for one UDP socket.

    After ``recv()`` returned n, datagram i is ``rbuf[i*rsize : i*rsize + rhdr32[i*16 + 14]]``,
    from the sockaddr at ``names[i*28:]``. An answer to it is queued in send slot j as two pieces
    that are not copied: the query's own ID in the receive buffer (``rbase + i*rsize``, 2 bytes)
    and the rest of the answer at a bytes object's address (``buffer_address``); ``send(count)``
    sends slots 0..count-1. Slot j's fields, as u64 indexes: ``shdr64[j*8]`` the sockaddr
    pointer, ``siov64[j*4]`` the ID pointer, ``siov64[j*4 + 2]`` / ``siov64[j*4 + 3]`` the body
    pointer and length.
    """

    def __init__(self, sock: socket.socket, slots: int = 64, rsize: int = 4096) -> None:
        self.lib = _load()
        self.fd = sock.fileno()
        self.family = sock.family
        self.slots = slots
        self.rsize = rsize
        self._names = (ctypes.c_char * (slots * NAME_SIZE))()
        self._rbufs = (ctypes.c_char * (slots * rsize))()
        self._riov, self._rhdrs = _headers(slots, self._names, 1, self._rbufs, rsize)
        self._siov, self._shdrs = _headers(slots, self._names, 2)
        for j in range(slots):
            self._siov[2 * j].len = 2
        self._rtemplate = bytes(memoryview(self._rhdrs).cast("B"))   # namelen and len reset per batch
        self._rptr = ctypes.addressof(self._rhdrs)
        self._sptr = ctypes.addressof(self._shdrs)
        self.name_base = ctypes.addressof(self._names)
        self.rbase = ctypes.addressof(self._rbufs)
        self.names = memoryview(self._names).cast("B")
        self.names32 = self.names.cast("I")
        self.rbuf = memoryview(self._rbufs).cast("B")
        self.rhdr32 = memoryview(self._rhdrs).cast("B").cast("I")
        self.rhdr_bytes = memoryview(self._rhdrs).cast("B")
        self.shdr64 = memoryview(self._shdrs).cast("B").cast("Q")
        self.siov64 = memoryview(self._siov).cast("B").cast("Q")

    def recv(self) -> int:
        """Datagrams received (0 when none is waiting). OSError for anything but EAGAIN/EINTR."""
        self.rhdr_bytes[:] = self._rtemplate
        n = self.lib.recvmmsg(self.fd, self._rptr, self.slots, MSG_DONTWAIT, None)
        if n < 0:
            err = ctypes.get_errno()
            if err in (11, 4):     # EAGAIN/EWOULDBLOCK, EINTR
                return 0
            raise OSError(err, os.strerror(err))
        return int(n)

    def rlen(self, i: int) -> int:
        return int(self.rhdr32[i * 16 + _MSGLEN])

    def address(self, i: int) -> tuple[Any, ...]:
        """Datagram i's sender as ``recvfrom`` would have returned it."""
        return decode_sockaddr(bytes(self.names[i * NAME_SIZE:(i + 1) * NAME_SIZE]), self.family)

    def queue(self, j: int, i: int, body: bytes) -> None:
        """Send slot j: datagram i's ID followed by ``body``, back to datagram i's sender (the hot
        loop in resolver/server.py does the same with locals; this is the readable version)."""
        self.shdr64[j * 8 + _NAME] = self.name_base + i * NAME_SIZE
        self.siov64[j * 4] = self.rbase + i * self.rsize
        self.siov64[j * 4 + 2] = buffer_address(body)
        self.siov64[j * 4 + 3] = len(body)

    def send(self, count: int) -> int:
        """Send slots 0..count-1; returns how many could not be sent (a full send buffer or an
        unreachable client: UDP, nothing to retry; ``sendto`` would have lost them the same way).
        The send side keeps ``msg_namelen`` = 28, which the kernel accepts for IPv4 as well."""
        done = failed = 0
        while done < count:
            n = self.lib.sendmmsg(self.fd, self._sptr + done * HDR_SIZE, count - done, MSG_DONTWAIT)
            if n > 0:
                done += n
                continue
            err = ctypes.get_errno() if n < 0 else 0
            if err == 4:           # EINTR
                continue
            if err == 11 or n == 0:  # send buffer full: the rest is lost
                return failed + count - done
            done += 1              # this datagram's destination refused it: skip it, send the rest
            failed += 1
        return failed


def decode_sockaddr(raw: bytes, family: int) -> tuple[Any, ...]:
    """(host, port) for AF_INET, (host, port, flowinfo, scope_id) for AF_INET6, as the socket
    module presents them (a scoped address carries ``%interface``)."""
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), int.from_bytes(raw[2:4], "big")
    host = socket.inet_ntop(socket.AF_INET6, raw[8:24])
    scope = int.from_bytes(raw[24:28], sys.byteorder)
    if scope:
        try:
            host = f"{host}%{socket.if_indextoname(scope)}"
        except OSError:
            host = f"{host}%{scope}"
    return host, int.from_bytes(raw[2:4], "big"), int.from_bytes(raw[4:8], "big"), scope
