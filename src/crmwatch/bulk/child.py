"""What every export process runs first: step back for the API, and exit with its server.

The export is CPU-bound; at a lower scheduling priority (`nice` +10) the server's API and
delivery work get the CPU first. (It cannot lower PostgreSQL's own backend, which does half
of a COPY export's work: see docs/benchmarks.md, Bulk Read.)

A `ProcessPoolExecutor` worker whose parent is killed (kill -9, out of memory) waits on its
call queue forever; with the watchdog it exits within a second instead of lingering. The
job it was running is taken over by another runner once its lease lapses.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

NICE = 10


def init(parent_pid: int) -> None:
    """The export process's initializer: lower priority, then the parent watchdog."""
    with contextlib.suppress(OSError, AttributeError):  # not allowed, or not POSIX
        os.nice(NICE)
    exit_with_parent(parent_pid)


def exit_with_parent(parent_pid: int, every_s: float = 1.0) -> None:
    """Start a daemon thread that ends this process once `parent_pid` is no longer its
    parent (the parent died and the process was re-parented)."""

    def watch() -> None:
        while True:
            time.sleep(every_s)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="crmwatch-exit-with-parent", daemon=True).start()
