"""Start the one real deployment (tests/ops/deploy.py) as soon as collection ends, beside the
rest of the suite, instead of when the first ops test asks for it.

The deployment is two or three minutes of waiting on other processes (debootstrap the first time,
systemd-nspawn booting, three ansible-playbook runs), while the suite before it leaves one of the
two cores mostly idle (it is dominated by load tests at a fixed rate). Started early, it overlaps
them; the ``dep`` fixture in test_apply.py then only waits for what is left.

It runs in a thread of the pytest process: deploy() waits on subprocesses and never needs the
interpreter for long. Its progress lines ([ops-rootfs], [ops-container], [ops-ansible]) land in
whichever test's captured output is current; the fixture prints the summary again when it takes
the deployment. An exception in the thread is raised by ``take()`` in the fixture, so an ops test
errors exactly as it would have with the deployment done in the fixture.

HOTLINE_EDGE_OPS_SERIAL=1 keeps the old order (the deployment made by the fixture itself).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable

from .deploy import Deployment, deploy

APPLY_MODULE = "tests/ops/test_apply.py"


class _Early:
    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.result: Deployment | None = None
        self.error: BaseException | None = None
        self.taken = False
        self.started = self.ended = 0.0

    def run(self) -> None:
        self.started = time.monotonic()
        try:
            self.result = deploy()
        except BaseException as exc:   # handed to the fixture, which raises it
            self.error = exc
        finally:
            self.ended = time.monotonic()


_early = _Early()


def start_if_needed(nodeids: Iterable[str]) -> bool:
    """Start deploying in the background when a test of test_apply.py was selected."""
    if os.environ.get("HOTLINE_EDGE_OPS_SERIAL") or _early.thread is not None:
        return False
    if not any(n.startswith(APPLY_MODULE) for n in nodeids):
        return False
    _early.thread = threading.Thread(target=_early.run, name="ops-deploy", daemon=True)
    _early.thread.start()
    return True


def take() -> tuple[Deployment, str]:
    """The deployment (made now when nothing was started early) and a line saying how it was made.
    Raises what the early deployment raised."""
    if _early.thread is None or _early.taken:
        return deploy(), "deployed by the fixture"
    waited = time.monotonic()
    _early.thread.join()
    waited = time.monotonic() - waited
    _early.taken = True
    if _early.error is not None:
        raise _early.error
    assert _early.result is not None
    return _early.result, (f"deployed beside the suite in {_early.ended - _early.started:.0f} s; "
                           f"the fixture waited {waited:.0f} s for it")


def finish() -> None:
    """At the end of the session: a deployment no test took (an interrupted or -x run) is still
    torn down, its container stopped."""
    if _early.thread is None or _early.taken:
        return
    _early.thread.join(timeout=900)
    _early.taken = True
    if _early.result is not None:
        _early.result.close()
