"""Ctrl-C that stops a command at any moment, with one line, and children that stay silent.

Three problems this solves:

- A library's catch-all ``except`` (scipy's docstring processing at import time, for one) can
  swallow the KeyboardInterrupt that Ctrl-C raises, and the run goes on. The commands' handler
  (``install``) remembers every SIGINT, and ``check`` raises it again at the next safe point (each
  finished task, the end of a command).
- A process started with SIGINT ignored (``cmd &`` in a script) would ignore Ctrl-C for good;
  ``install`` takes it back.
- A SIGINT in the middle of creating a process pool or spawning a worker leaves half-made
  state and tracebacks from every child (``multiprocessing/spawn.py``). ``deferred`` holds SIGINT
  back across such a block (the children start with it blocked, and ignore it from their
  initialiser, ``quiet_child``) and raises it when the block is done.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

EXIT_INTERRUPTED = 130  # as for a process that SIGINT ended
_pending = False


def _raise(signum: int, frame: FrameType | None) -> None:
    _raise_later()
    raise KeyboardInterrupt


def _raise_later() -> None:
    global _pending
    _pending = True


def install() -> None:
    """Make SIGINT raise KeyboardInterrupt in this (command's) process and be remembered for
    ``check``, whatever disposition the process started with."""
    signal.signal(signal.SIGINT, _raise)


def pending() -> bool:
    """Whether a SIGINT arrived under ``install`` and was not dealt with (``clear``) yet."""
    return _pending


def clear() -> None:
    """Forget a SIGINT that has been answered (a command printed its line)."""
    global _pending
    _pending = False


def answer(prog: str) -> int:
    """Print the one line of an interrupted command and return its exit status."""
    clear()
    print(f"{prog}: interrupted; re-run the same command to resume", file=sys.stderr)
    return EXIT_INTERRUPTED


def check() -> None:
    """Raise KeyboardInterrupt again when a SIGINT arrived but its exception was swallowed."""
    if _pending:
        raise KeyboardInterrupt


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT back in the body and answer it after the body as the handler in force would.
    Processes the body starts inherit SIGINT blocked. Only the main thread can defer (elsewhere
    the body just runs)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: came.append(signum))
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a held SIGINT is delivered here
        signal.signal(signal.SIGINT, old)
        if came and old is _raise:  # remembered even when the body raised something else
            _raise_later()
    if came and callable(old):
        old(signal.SIGINT, None)
    elif came and old == signal.SIG_DFL:
        raise KeyboardInterrupt


def quiet_child() -> None:
    """For a worker process's initialiser: ignore SIGINT (the main process answers Ctrl-C and
    stops its workers) and drop one that came while it started with SIGINT blocked."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
