"""Deterministic fault points, so the fault tests kill or interrupt a run at an exact moment
instead of sleeping and hoping it is still going.

Inert unless the environment variable ``FDSL_FAULT`` is set (it costs one dictionary look-up per
point). Its value is one or more comma-separated ``ACTION@POINT[:N]``: the N-th time (default the
first) a process reaches ``fault_point(POINT)``, it does ACTION. Spawned workers inherit the
variable and count their own arrivals.

Actions:

- ``kill``: SIGKILL this process (a crash or ``kill -9``; its workers are left to die with it);
- ``kill-group``: SIGKILL this process's whole process group (a killed terminal job);
- ``kill-parent``: SIGKILL the parent process, then wait to be killed with it (a worker whose main
  process dies under it);
- ``int``: SIGINT to this process (``kill -INT``);
- ``int-group``: SIGINT to the whole process group, as a terminal's Ctrl-C sends it.

Points (``POINTS``) are named after what has just happened when they are reached.
"""

from __future__ import annotations

import contextlib
import os
import signal

from fdsl.errors import FdslError

ENV = "FDSL_FAULT"

POINTS = {
    "startup": "a command's entry point, before it imports anything of fdsl's",
    "imported": "a command's module is imported, before its arguments are parsed",
    "pool-created": "the local backend made its process pool, before the first task is submitted",
    "task-submitted": "the local backend handed a task to its pool (counted per task)",
    "worker-starting": "a pool worker is about to run its initialiser (in the worker)",
    "worker-started": "a pool worker finished its initialiser (in the worker)",
    "shard-writing": "a shard task wrote a part to its temporary file, not yet renamed (counted per part)",
    "shard-done": "the builder recorded a finished shard in manifest.json (counted per shard)",
    "task-done": "run_tasks handed a finished task's result to its caller (counted per task)",
}
ACTIONS = ("kill", "kill-group", "kill-parent", "int", "int-group")

_seen: dict[str, int] = {}


def parse(text: str) -> list[tuple[str, str, int]]:
    """``FDSL_FAULT``'s value as (action, point, n) triples; FdslError for a malformed one."""
    faults = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        action, _, where = item.partition("@")
        point, _, count = where.partition(":")
        if action not in ACTIONS or point not in POINTS or not (count or "1").isdigit() or count == "0":
            raise FdslError(f"{ENV}={text!r}: expected ACTION@POINT[:N] with ACTION one of "
                            f"{', '.join(ACTIONS)} and POINT one of {', '.join(POINTS)}")
        faults.append((action, point, int(count or 1)))
    return faults


def fault_point(point: str) -> None:
    """Do what ``FDSL_FAULT`` asks for at ``point`` (nothing when it is unset)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    assert point in POINTS, point
    _seen[point] = _seen.get(point, 0) + 1
    for action, name, count in parse(spec):
        if name == point and count == _seen[point]:
            _act(action)


def _act(action: str) -> None:
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "kill-group":
        os.killpg(os.getpgrp(), signal.SIGKILL)
    elif action == "kill-parent":
        with contextlib.suppress(ProcessLookupError):  # another worker was first
            os.kill(os.getppid(), signal.SIGKILL)
        while True:  # mid-write until the parent's death takes this process too
            signal.pause()
    elif action == "int":
        os.kill(os.getpid(), signal.SIGINT)
    else:
        os.killpg(os.getpgrp(), signal.SIGINT)
