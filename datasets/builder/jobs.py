"""Run one task per shard on an execution backend, with retries and progress (``fdsl.progress``).

Backends share one signature, ``backend(fn, tasks, workers) -> iterator of (task, result | error)``,
and are picked by name (``local`` processes by default, ``ray`` for a cluster), so generators and
renderers never know where they run. Results arrive in completion order; callers sort them.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from fdsl import interrupts
from fdsl.errors import FdslError
from fdsl.faults import fault_point
from fdsl.progress import Progress
from fdsl.workers import init_worker

log = logging.getLogger(__name__)

Outcome = tuple[Any, Any, BaseException | None]  # (task, result, error)
Backend = Callable[[Callable[[Any], Any], Sequence[Any], int], Iterator[Outcome]]


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _inline_backend(fn: Callable[[Any], Any], tasks: Sequence[Any], workers: int) -> Iterator[Outcome]:
    for task in tasks:
        try:
            yield task, fn(task), None
        except Exception as exc:  # noqa: BLE001 - reported per task, retried by the caller
            yield task, None, exc


def _init_worker(parent: int) -> None:
    fault_point("worker-starting")
    init_worker(parent)  # silent on Ctrl-C (the main process answers it), dies with its parent
    fault_point("worker-started")


def _stop_now(pool: ProcessPoolExecutor) -> None:
    """Stop the workers without finishing their shards (a re-run redoes them; the builder
    removes their temporary files). ProcessPoolExecutor has no public terminate before 3.14."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def _local_backend(fn: Callable[[Any], Any], tasks: Sequence[Any], workers: int) -> Iterator[Outcome]:
    """Local worker processes (spawned, so EGL/OpenGL and numba state never cross a fork)."""
    if workers <= 1:
        yield from _inline_backend(fn, tasks, workers)
        return
    pending = list(tasks)
    # Ctrl-C is held back while the pool is made and while submit spawns workers: cut short there,
    # the pool is left half-made and the new workers die in multiprocessing's start-up code
    # with tracebacks. Workers start with SIGINT blocked and ignore it from _init_worker on.
    with interrupts.deferred():
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                   initializer=_init_worker, initargs=(os.getpid(),))
    try:
        fault_point("pool-created")
        running: dict[Future, Any] = {}
        while pending or running:
            # Keep at most 2 tasks per worker queued so a crash loses little and order stays near
            # the submission order (the progress bar's ETA stays honest).
            with interrupts.deferred():
                while pending and len(running) < 2 * workers:
                    task = pending.pop(0)
                    running[pool.submit(fn, task)] = task
                    fault_point("task-submitted")
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                task = running.pop(fut)
                try:
                    yield task, fut.result(), None
                except BrokenProcessPool as exc:
                    raise FdslError(f"a worker process died (out of memory or killed?): {exc}") from None
                except Exception as exc:  # noqa: BLE001
                    yield task, None, exc
    except BaseException:  # Ctrl-C, or the caller gave up (GeneratorExit): don't wait for queued shards
        _stop_now(pool)
        raise
    pool.shutdown(wait=True)


def _call(fn: Callable[[Any], Any], task: Any) -> Any:
    return fn(task)


def _ray_backend(fn: Callable[[Any], Any], tasks: Sequence[Any], workers: int) -> Iterator[Outcome]:
    """Ray tasks: on a running cluster (RAY_ADDRESS) or a local one started here."""
    try:
        import ray
    except ImportError:
        raise FdslError("the ray backend needs Ray: pip install 'fdsl[ray]' (or pip install ray)") from None
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), num_cpus=None if os.environ.get("RAY_ADDRESS") else workers,
                 include_dashboard=False, log_to_driver=False,
                 # Ray's start-up notices would mix with our progress and one-line messages.
                 logging_level=logging.DEBUG if log.isEnabledFor(logging.DEBUG) else logging.ERROR)
    remote_call = ray.remote(num_cpus=1, max_retries=0)(_call)
    fn_ref = ray.put(fn)  # ship the (possibly large) callable once, not once per task
    refs = {remote_call.remote(fn_ref, task): task for task in tasks}
    try:
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            task = refs.pop(done[0])
            try:
                yield task, ray.get(done[0]), None
            except Exception as exc:  # noqa: BLE001
                cause = getattr(exc, "cause", None)
                yield task, None, cause if isinstance(cause, BaseException) else exc
    except BaseException:  # Ctrl-C or a fatal error: stop the tasks without Ray's own messages
        _quiet_ray_stop(ray, list(refs))
        raise


def _quiet_ray_stop(ray: Any, refs: list[Any]) -> None:
    """Cancel ``refs`` and shut Ray down with its stderr silenced, so its warnings never mix into
    the one-line message the CLI prints next."""
    logging.getLogger("ray").setLevel(logging.CRITICAL)
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            for ref in refs:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            with contextlib.suppress(Exception):
                ray.shutdown()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


BACKENDS: dict[str, Backend] = {"local": _local_backend, "inline": _inline_backend, "ray": _ray_backend}


@dataclass
class JobStats:
    """What a run did, for the end summary."""

    tasks_done: int = 0
    tasks_retried: int = 0
    items: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


def run_tasks(
    fn: Callable[[Any], Any],
    tasks: Sequence[Any],
    on_result: Callable[[Any, Any], int],
    *,
    backend: str = "local",
    workers: int | None = None,
    retries: int = 2,
    total_items: int | None = None,
    unit: str = "img",
    desc: str = "",
    progress: bool = True,
) -> JobStats:
    """Run ``fn(task)`` for every task and hand each result to ``on_result`` in the main process.

    ``on_result(task, result)`` returns how many items the task produced (for the progress bar).
    A task that raises is run again up to ``retries`` times; if it still fails the job stops with
    an FdslError naming the task and the error. ``progress``: a bar on a terminal, progress lines
    in a log (``fdsl.progress.Progress``); False shows neither.
    """
    if backend not in BACKENDS:
        raise FdslError(f"unknown backend {backend!r}; choose one of {', '.join(sorted(BACKENDS))}")
    workers = workers or default_workers()
    stats = JobStats()
    attempts: dict[int, int] = {}
    todo = list(tasks)
    start = time.perf_counter()
    with Progress(total=total_items, unit=unit, desc=desc, disable=not progress, mininterval=0.5,
                  smoothing=0.1) as bar:
        while todo:
            failed = []
            for task, result, error in BACKENDS[backend](fn, todo, min(workers, len(todo))):
                interrupts.check()  # a Ctrl-C that a library swallowed still stops the run
                if error is None:
                    n = on_result(task, result)
                    stats.tasks_done += 1
                    stats.items += n
                    bar.update(n)
                    fault_point("task-done")
                    continue
                key = id(task)
                attempts[key] = attempts.get(key, 0) + 1
                if isinstance(error, FdslError):  # bad input or a full disk: a retry cannot help
                    raise type(error)(f"task {task} failed: {error}") from None
                log.warning("task %s failed (attempt %d): %s", task, attempts[key], error)
                if attempts[key] > retries:
                    raise FdslError(f"task {task} failed: {error}") from None
                failed.append(task)
                stats.tasks_retried += 1
            todo = failed
    stats.seconds = time.perf_counter() - start
    return stats
