"""Three things Unbound 1.17's pythonmod does not wrap, reached through its C structures (ctypes).

| need                          | pythonmod 1.17                     | here                                        |
|-------------------------------|------------------------------------|---------------------------------------------|
| TCP-Only: UDP or TCP client?  | the client's address only          | comm_reply.c -> comm_point.fd -> SO_TYPE    |
| DROP: send no response        | no ``is_drop``                     | module_qstate.is_drop = 1                   |
| garden CNAME: resolve target  | no sub-queries                     | module_env.attach_sub (the module API)      |

Each is read from the headers of the version it was checked against (util/module.h and
util/netevent.h of 1.17.1) and verified on the live structures before it is used once:

- the transport: the descriptor must be an open socket (fstat) of type SOCK_DGRAM or SOCK_STREAM;
- ``is_drop``: ``no_cache_store`` and ``no_cache_lookup`` (which pythonmod does wrap) are found by
  writing marker values through pythonmod and reading them back here; ``is_drop`` sits a fixed
  distance after them, and the ``time_t qstarttime`` between must read as a time near now;
- ``attach_sub``: the function pointer of the query's module environment, called as Unbound's own
  modules call it, after ``detect_cycle``.

Any check that fails switches that feature off for the life of the process, with one log line; the
plugin then answers as docs/unbound-plugin.md says (DROP as SERVFAIL with EDE 18, TCP-Only with TC=1
to every client, a garden CNAME without the target's records).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from typing import Any

CHECKED_VERSIONS = ("1.17.",)
BIT_RD, BIT_CD = 0x0100, 0x0010
_SOL_SOCKET, _SO_TYPE = socket.SOL_SOCKET, socket.SO_TYPE
Log = Callable[..., None]

_ATTACH = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint16, ctypes.c_int,
                           ctypes.c_int, ctypes.POINTER(ctypes.c_void_p))
_DETECT = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint16, ctypes.c_int,
                           ctypes.c_int)


def pointer_of(obj: Any) -> int:
    """The C address behind a SWIG proxy (or a bare SWIG pointer object)."""
    this = getattr(obj, "this", obj)
    return int(this)


def unbound_version(exe: str = "/proc/self/exe") -> str:
    """The version of the running Unbound binary (``unbound -V``), or "" when it cannot be told."""
    try:
        r = subprocess.run([os.path.realpath(exe), "-V"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    m = re.search(r"Version\s+(\S+)", r.stdout + r.stderr)
    return m.group(1) if m else ""


class Abi:
    """The verified reach into Unbound's structures; every method degrades to "not available"."""

    def __init__(self, version: str, log: Log) -> None:
        self.version = version
        self.log = log
        checked = any(version.startswith(v) for v in CHECKED_VERSIONS)
        if not checked:
            log("warning", "unbound_version_unchecked", version=version or "unknown",
                checked=list(CHECKED_VERSIONS), effect="DROP, TCP-Only and garden targets fall back "
                "(docs/unbound-plugin.md, 'Differences')")
        self.transport_ok = checked
        self.drop_ok = checked
        self.sub_ok = checked
        self._drop_offset: int | None = None
        libc_name = ctypes.util.find_library("c") or "libc.so.6"
        self._libc = ctypes.CDLL(libc_name, use_errno=True)

    def _off(self, feature: str, why: str) -> None:
        setattr(self, f"{feature}_ok", False)
        self.log("warning", "unbound_abi_disabled", feature=feature, reason=why, version=self.version)

    # -- the client's transport ------------------------------------------------------------
    def transport(self, comm_reply: Any) -> str:
        """"udp" or "tcp" for the client behind ``comm_reply`` (mesh_reply.query_reply), or ""."""
        if not self.transport_ok:
            return ""
        try:
            cp = ctypes.c_void_p.from_address(pointer_of(comm_reply)).value     # comm_reply.c
            if not cp:
                return ""
            fd = ctypes.c_int.from_address(cp + 24).value    # comm_point: ev, event_added, socket, fd
            if fd < 0 or not stat.S_ISSOCK(os.fstat(fd).st_mode):
                self._off("transport", f"comm_point.fd {fd} is not a socket")
                return ""
            val = ctypes.c_int(0)
            ln = ctypes.c_uint32(ctypes.sizeof(val))
            if self._libc.getsockopt(fd, _SOL_SOCKET, _SO_TYPE, ctypes.byref(val), ctypes.byref(ln)) != 0:
                return ""
        except (OSError, ValueError, TypeError) as exc:
            self._off("transport", repr(exc))
            return ""
        if val.value == socket.SOCK_DGRAM:
            return "udp"
        if val.value == socket.SOCK_STREAM:
            return "tcp"
        self._off("transport", f"socket type {val.value}")
        return ""

    # -- dropping the response ---------------------------------------------------------------
    def drop(self, qstate: Any) -> bool:
        """Mark the query state so that Unbound sends no response at all."""
        if not self.drop_ok:
            return False
        base = pointer_of(qstate)
        off = self._drop_offset if self._drop_offset is not None else self._find_drop(qstate, base)
        if off is None:
            return False
        ctypes.c_int.from_address(base + off).value = 1
        return True

    def _find_drop(self, qstate: Any, base: int) -> int | None:
        saved = (qstate.no_cache_store, qstate.no_cache_lookup)
        try:
            qstate.no_cache_store = 0x5E17C0DE
            qstate.no_cache_lookup = 0x5E17C0DF
            found = [o for o in range(0, 512, 4) if ctypes.c_int.from_address(base + o).value == 0x5E17C0DE]
            if len(found) != 1 or ctypes.c_int.from_address(base + found[0] - 4).value != 0x5E17C0DF:
                self._off("drop", f"no_cache_store found at {found}")
                return None
        finally:
            qstate.no_cache_store, qstate.no_cache_lookup = saved
        x = found[0]
        # util/module.h 1.17: no_cache_store, need_refetch, was_ratelimited (int), time_t qstarttime,
        # client_info, respip_action_info (pointers), rpz_passthru, is_drop (int)
        qstart = (x + 12 + 7) & ~7
        started = ctypes.c_int64.from_address(base + qstart).value
        passthru = ctypes.c_int.from_address(base + qstart + 24).value
        is_drop_off = qstart + 28
        current = ctypes.c_int.from_address(base + is_drop_off).value
        if abs(started - time.time()) > 86_400 or passthru not in (0, 1) or current not in (0, 1):
            self._off("drop", f"layout check failed (qstarttime {started}, rpz_passthru {passthru}, is_drop {current})")
            return None
        self._drop_offset = is_drop_off
        return is_drop_off

    # -- sub-queries -------------------------------------------------------------------------
    def attach_sub(self, qstate: Any, qinfo: Any, flags: int) -> bool:
        """Start resolving ``qinfo`` as a sub-query of ``qstate`` (Unbound calls inform_super and
        then operate(MODULE_EVENT_PASS) when it is done). False when it could not be started."""
        if not self.sub_ok:
            return False
        try:
            env = qstate.env
            attach = _ATTACH(pointer_of(env.attach_sub))
            detect = _DETECT(pointer_of(env.detect_cycle))
        except (TypeError, ValueError, AttributeError) as exc:
            self._off("sub", repr(exc))
            return False
        q, qi = pointer_of(qstate), pointer_of(qinfo)
        if detect(q, qi, flags, 0, 0):
            return False
        newq = ctypes.c_void_p()
        return bool(attach(q, qi, flags, 0, 0, ctypes.byref(newq)))
