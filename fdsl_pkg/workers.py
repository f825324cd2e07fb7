"""Set-up of a worker process that the main process of a command starts (a process pool's
initialiser calls ``init_worker``): quiet on Ctrl-C, and dead when its parent dies.

A main process that is SIGKILLed (or crashes) cannot stop its workers. Left alone they would go on
writing shards into a folder that a re-run then shares with them. On Linux the kernel sends them
SIGKILL when the parent goes (PR_SET_PDEATHSIG; the "parent" is the thread that started the
worker, so pools must start workers from a thread that lives as long as the pool: the main
thread); elsewhere a watchdog thread ends the worker within a second of its parent.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
import time

from fdsl import interrupts

PR_SET_PDEATHSIG = 1  # linux/prctl.h
WATCHDOG_SECONDS = 1.0


def _parent_death_signal() -> bool:
    """Ask the kernel for SIGKILL when the parent dies; whether it agreed."""
    with contextlib.suppress(OSError, AttributeError):
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL) == 0
    return False


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCHDOG_SECONDS)
    os._exit(1)


def die_with_parent(parent: int) -> None:
    """End this process when process ``parent`` (its parent now) ends; at once if it has already."""
    if not _parent_death_signal():
        threading.Thread(target=_watch, args=(parent,), name="fdsl-parent-watchdog", daemon=True).start()
    if os.getppid() != parent:  # the parent died before the kernel was asked
        os._exit(1)


def init_worker(parent: int) -> None:
    """A worker's set-up: Ctrl-C is the main process's to answer (it stops the workers), so the
    worker ignores it and prints nothing; it dies with ``parent``."""
    interrupts.quiet_child()
    die_with_parent(parent)
