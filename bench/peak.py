"""A process's own peak RSS, as the benchmarks report it.

Not `getrusage`: on Linux a process's `ru_maxrss` (its own, or a waited child's) keeps the
largest RSS of every memory image it had, and a child starts as a copy of its parent, whose
RSS the kernel records when the child execs. A benchmark that built its data in process
and then started the command it measures reported its own size as the command's: measured
here, a parent holding 1 GiB started a child of 11 MiB whose `ru_maxrss` said 1,035 MiB.
`VmHWM` in /proc/PID/status is the high-water mark of the current image only, the one the
command allocated.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

POLL_SECONDS = 0.05
"""How often `run_measured` reads the child's high-water mark (it only rises; what the
child adds in its last 50 ms before exiting is missed)."""


def own_peak_kib(pid: int | str = "self") -> int:
    """The high-water mark of the process's current image, in KiB (0 once it has exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0  # a zombie: its memory is gone


def run_measured(command: list[str], **popen) -> tuple[float, int, int]:
    """Run `command` (`popen`: subprocess.Popen's keywords) to its end: its wall time in
    seconds, its own peak RSS in KiB (its children's not included) and its exit code."""
    started = time.perf_counter()
    process = subprocess.Popen(command, **popen)
    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, own_peak_kib(process.pid))
            done.wait(POLL_SECONDS)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    code = process.wait()
    elapsed = time.perf_counter() - started
    done.set()
    watcher.join()
    return elapsed, peak, code
