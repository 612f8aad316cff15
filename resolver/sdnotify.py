"""systemd's notification protocol, written to NOTIFY_SOCKET directly (sd_notify(3); no library).

    notify("READY=1\nSTATUS=serving policy serial 2026112201")
    interval = watchdog_interval()      # seconds, or None when the unit has no WatchdogSec=
    notify("WATCHDOG=1")                # every interval / 2 while healthy

Outside systemd (no NOTIFY_SOCKET) every call is a no-op that returns False.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


def notify(state: str, env: Mapping[str, str] | None = None) -> bool:
    addr = (os.environ if env is None else env).get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr[0] == "@":
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall(state.encode())
    except OSError:
        return False
    return True


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """WatchdogSec= in seconds when it is meant for this process, else None."""
    e = os.environ if env is None else env
    usec, pid = e.get("WATCHDOG_USEC"), e.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    return int(usec) / 1_000_000
