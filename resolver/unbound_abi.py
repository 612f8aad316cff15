"""Three things Unbound 1.17's pythonmod does not wrap, reached through its C structures (ctypes).

| need                          | pythonmod 1.17                     | here                                        |
|-------------------------------|------------------------------------|---------------------------------------------|
| TCP-Only: UDP or TCP client?  | the client's address only          | comm_reply.c -> comm_point.fd -> SO_TYPE    |
| DROP: send no response        | no ``is_drop``                     | module_qstate.is_drop = 1                   |
| garden CNAME: resolve target  | no sub-queries                     | module_env.attach_sub (the module API)      |
| expire any cached answer      | a query_info of the current query  | a query_info filled in for any name         |

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
import ipaddress
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
_KINDS: dict[int, str] = {int(socket.SOCK_DGRAM): "udp", int(socket.SOCK_STREAM): "tcp"}

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


def unbound_config_file(cmdline: str = "/proc/self/cmdline") -> str:
    """The configuration file the running Unbound was started with (``-c FILE``)."""
    try:
        with open(cmdline, "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        argv = []
    for i, a in enumerate(argv):
        if a == b"-c" and i + 1 < len(argv):
            return os.path.abspath(argv[i + 1].decode())
        if a.startswith(b"-c") and len(a) > 2:
            return os.path.abspath(a[2:].decode())
    return "/etc/unbound/unbound.conf"


def checkconf_file(exe: str = "/proc/self/exe", cmdline: str = "/proc/self/cmdline") -> str | None:
    """When this process is ``unbound-checkconf [-f] [-o OPTION] [FILE]`` (it initialises the python
    module to check it): the file it checks. None in a running Unbound."""
    try:
        if os.path.basename(os.readlink(exe)) != "unbound-checkconf":
            return None
        with open(cmdline, "rb") as f:
            argv = [a.decode() for a in f.read().split(b"\0") if a]
    except OSError:
        return None
    files = [a for i, a in enumerate(argv[1:], 1) if not a.startswith("-") and argv[i - 1] != "-o"]
    return os.path.abspath(files[-1]) if files else "/etc/unbound/unbound.conf"


def unbound_option(conf: str, name: str) -> list[str] | None:
    """The value(s) of one option as Unbound reads ``conf`` (unbound-checkconf -o); None if unknown."""
    try:
        r = subprocess.run(["unbound-checkconf", "-o", name, conf], capture_output=True, text=True, timeout=30,
                           check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0:
        return None
    return [line.strip() for line in r.stdout.splitlines() if line.strip()]


def loopback_target(interfaces: list[str], port: int) -> tuple[str, int] | None:
    """Where the plugin can reach its own Unbound: a loopback (or wildcard) listening address."""
    if not interfaces:
        return ("127.0.0.1", port)      # Unbound listens on localhost when no interface is given
    for itf in interfaces:
        addr, _, p = itf.partition("@")
        pt = int(p) if p.isdigit() else port
        if addr in ("0.0.0.0", "127.0.0.1"):  # noqa: S104 - reading Unbound's interface list, not binding
            return ("127.0.0.1", pt)
        if addr in ("::0", "::", "::1"):
            return ("::1", pt)
        try:
            if ipaddress.ip_address(addr).is_loopback:     # any of 127.0.0.0/8
                return (addr, pt)
        except ValueError:
            continue                                       # an interface name (eth0): not a loopback address
    return None


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
        self.qinfo_ok = checked
        self._qinfo_checked = False
        self._drop_offset: int | None = None
        self._kinds: dict[int, str] = {}
        libc_name = ctypes.util.find_library("c") or "libc.so.6"
        self._libc = ctypes.CDLL(libc_name, use_errno=True)

    def _off(self, feature: str, why: str) -> None:
        setattr(self, f"{feature}_ok", False)
        self.log("warning", "unbound_abi_disabled", feature=feature, reason=why, version=self.version)

    # -- the client's transport ------------------------------------------------------------
    def transport(self, comm_reply: Any) -> str:
        """"udp" or "tcp" for the client behind ``comm_reply`` (mesh_reply.query_reply), or "".
        Remembered per comm_point: a listening UDP point or a TCP handler never changes kind."""
        if not self.transport_ok:
            return ""
        try:
            cp = ctypes.c_void_p.from_address(pointer_of(comm_reply)).value     # comm_reply.c
            if not cp:
                return ""
            known = self._kinds.get(cp)
            if known is not None:
                return known
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
        kind = _KINDS.get(int(val.value))
        if kind is None:
            self._off("transport", f"socket type {val.value}")
            return ""
        if len(self._kinds) < 100_000:
            self._kinds[cp] = kind
        return kind

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

    # -- a query_info for any name -----------------------------------------------------------
    def qinfo(self, make: Callable[[], Any], qname: bytes, qtype: int, qclass: int) -> Any | None:
        """A query_info (pythonmod's own struct, ``make`` = unboundmodule.query_info) naming
        ``qname``/``qtype``/``qclass``; its name buffer lives as long as the returned object.
        util/data/msgreply.h: qname pointer, qname_len, qtype, qclass, local_alias. Checked by
        reading the fields back through pythonmod; None when that fails (the caller falls back)."""
        if not self.qinfo_ok:
            return None
        qi = make()
        buf = ctypes.create_string_buffer(qname, len(qname))
        base = pointer_of(qi)
        ctypes.c_void_p.from_address(base).value = ctypes.addressof(buf)
        ctypes.c_size_t.from_address(base + 8).value = len(qname)
        ctypes.c_uint16.from_address(base + 16).value = qtype
        ctypes.c_uint16.from_address(base + 18).value = qclass
        ctypes.c_void_p.from_address(base + 24).value = None
        qi._hotline_edge_name = buf          # keep the buffer alive with the struct
        if not self._qinfo_checked:
            if qi.qname != qname or qi.qtype != qtype or qi.qclass != qclass:
                self._off("qinfo", "query_info fields did not read back")
                return None
            self._qinfo_checked = True
        return qi

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
