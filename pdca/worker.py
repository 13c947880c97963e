"""A Prefect process worker that stops on one Ctrl-C.

`prefect worker start` (3.8.8) turns the first SIGINT into a cancellation of its own event
loop, which it does not finish: the worker keeps running until a second interrupt, which
it answers with SIGKILL. Ops expect one Ctrl-C to stop it. So the worker runs as a child in
a session of its own (the terminal's Ctrl-C reaches only this supervisor), and one
interrupt here becomes Prefect's own two-step stop: SIGINT (stop taking new runs), then,
after a short grace, the second SIGINT. Flow runs already started are processes of their
own and finish (or fail) on their own; the server records them either way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

GRACE_SECONDS = 5.0
"""How long the worker gets to stop by itself after the first interrupt."""


def worker_command(pool: str, worker_type: str = "process") -> list[str]:
    """`prefect worker start` for `pool`, from this interpreter's environment."""
    prefect = Path(sys.executable).parent / "prefect"
    return [str(prefect), "worker", "start", "--pool", pool, "--type", worker_type]


def run_worker(pool: str, *, grace: float = GRACE_SECONDS) -> int:
    """Run the worker until it exits or this process is interrupted; its exit code.

    An interrupt (SIGINT, SIGTERM) ends the worker within `grace` seconds and a little.
    """
    child = subprocess.Popen(worker_command(pool), start_new_session=True)
    stopping: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        stopping.append(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while child.poll() is None and not stopping:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=0.5)
        if child.poll() is None:
            print("pdca worker: stopping the Prefect worker ...", file=sys.stderr, flush=True)
            _stop(child, grace)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if stopping else (child.returncode or 0)


def _stop(child: subprocess.Popen, grace: float) -> None:
    """Prefect's two-step stop: SIGINT, then a second SIGINT (it kills itself), then KILL."""
    for _ in range(2):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=grace)
            return
    with contextlib.suppress(ProcessLookupError):
        os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
