"""Turn a ``ShardSource`` (a generator or renderer) into a finished, verified data set folder.

The builder owns everything a source should not know about: splitting the items into shards,
running shards on a backend, atomic files, the manifest, resume, refusing to mix configurations,
the failures file and the end summary.

Resume works because every item depends only on (config, item index): a shard that the manifest
lists and whose size and checksum verify is kept, any other is rendered again, and a finished run
writes the same bytes whether or not it was interrupted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.atomic import (
    LOCK_NAME,
    check_free_space,
    check_output_folder,
    disk_full_guard,
    folder_lock,
    remove_stale_temps,
    write_bytes_atomic,
)
from fdsl.datasets import manifest as mf
from fdsl.datasets._heap import reuse_freed_memory
from fdsl.datasets.format import COMPRESSIONS, get_format
from fdsl.datasets.format.hdf5.writer import MARGIN
from fdsl.datasets.jobs import default_workers, run_tasks
from fdsl.datasets.outfolder import check_folder, prepare_folder
from fdsl.errors import FdslError
from fdsl.faults import fault_point
from fdsl.sources import RenderedBatch, ShardSource  # noqa: F401  (re-exported for old imports)

log = logging.getLogger(__name__)

STORAGES = mf.STORAGES
# Images rendered and held in memory at a time per worker (a whole 10,000-image FractalDB shard
# would be 1.3 GB); shards are written part by part.
RENDER_PART = 1000
# Sane limits, checked before any work or file: beyond them a run would hang or exhaust memory.
MAX_ITEMS = 10**10
MAX_SHARDS = 10**6
# A part of more image bytes than this is followed by parts a fifth as long (1000 -> 200 -> 40,
# so part boundaries stay on multiples of 40 or 100 views): big parts miss the CPU caches between
# render and compression (RCDB at 512 px: 1.43 -> 1.21 CPU-ms per image end to end at 200).
PART_BYTES = 64 * 2**20


@dataclass(frozen=True)
class ShardTask:
    """One unit of work: shard ``index`` covering items ``[start, stop)``."""

    index: int
    start: int
    stop: int

    def __str__(self) -> str:
        return f"shard {self.index} (items {self.start}..{self.stop - 1})"


@dataclass
class BuildResult:
    """The end summary of a build."""

    out: Path
    images: int
    shards: int
    shards_skipped: int
    failures: int
    seconds: float
    bytes: int
    classes: int

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("inf")

    def summary(self) -> str:
        built = self.shards - self.shards_skipped
        return (f"{self.out}: {self.images} images in {self.classes} classes, {self.shards} shards "
                f"({built} built, {self.shards_skipped} already done), {self.failures} failures, "
                f"{self.bytes / 2**20:.1f} MiB, {self.seconds:.1f} s "
                f"({self.images_per_second:.0f} img/s this run)")


# --------------------------------------------------------------------------- workers


@dataclass(frozen=True)
class _Job:
    """Renders one task and writes it with the storage format's writer (in a worker process)."""

    source: ShardSource
    out: str
    storage: str
    compression: str
    bytes_per_item: float = 0.0  # from shards already written; 0: no estimate yet

    def __call__(self, task: ShardTask) -> dict[str, Any]:
        out = Path(self.out)
        # The builder writes the manifest before any task starts, so a worker that cannot see it
        # runs on a node without the output folder: Ray tasks on a cluster without a shared file
        # system. Refuse in one line instead of writing shards the driver never sees.
        if not mf.manifest_path(out).is_file():
            raise FdslError(f"{out} is not visible to the worker on {socket.gethostname()}: with "
                            f"--backend ray every node must see --out on a shared file system "
                            f"(NFS, Lustre, ...)")
        expected = task.stop - task.start
        if self.bytes_per_item:
            check_free_space(out, int(self.bytes_per_item * expected * 1.1) + MARGIN)
        writer = get_format(self.storage).writer(out, task.index, compression=self.compression,
                                                 png_path=getattr(self.source, "png_path", None), expected=expected)
        failures: list[dict[str, Any]] = []
        with reuse_freed_memory():  # each render part reuses the last one's pages (no page faults)
            try:
                for batch in self._parts(task, failures):
                    meta = dict(batch.metadata)
                    meta["item"] = np.asarray(batch.items, dtype=np.int64)
                    writer.append(batch.images, batch.labels, meta)
                    fault_point("shard-writing")
                entry = writer.close()
            except BaseException:
                writer.abort()
                raise
        entry["failures"] = failures
        entry["first_item"] = task.start
        return entry

    def _parts(self, task: ShardTask, failures: list[dict[str, Any]]) -> Iterator[RenderedBatch]:
        """The task's items rendered part by part (``render_parts``); their failures are collected
        into ``failures``."""
        for batch in render_parts(self.source, task.start, task.stop):
            # A unit (a model) cut by a part boundary reports its failure in both parts.
            failures.extend(f for f in batch.failures if f not in failures)
            yield batch


def render_parts(source: ShardSource, start: int, stop: int) -> Iterator[RenderedBatch]:
    """Items ``[start, stop)`` rendered RENDER_PART at a time (fewer once a part exceeds
    PART_BYTES), so a worker never holds a whole shard."""
    part = RENDER_PART
    while start < stop:
        batch = source.render(start, min(start + part, stop))
        start += part
        per_item = batch.images.nbytes / max(len(batch.items), 1)
        while part >= 5 and part * per_item > PART_BYTES:
            part //= 5
        yield batch


# --------------------------------------------------------------------------- builder


def plan_tasks(num_items: int, shard_size: int) -> list[ShardTask]:
    """Split ``[0, num_items)`` into consecutive shards of ``shard_size`` items."""
    return [ShardTask(i, start, min(start + shard_size, num_items))
            for i, start in enumerate(range(0, num_items, shard_size))]


def _identity(source: ShardSource, storage: str, compression: str, shard_size: int) -> dict[str, Any]:
    """Everything that fixes the output bytes; a resume must match it exactly."""
    return {
        "generator": {"name": source.name, "version": source.version},
        "config": source.config(),
        "storage": storage,
        "compression": get_format(storage).compression or compression,
        "shard_size": shard_size,
    }


def _manifest(identity: dict[str, Any], source: ShardSource, tasks: list[ShardTask],
              done: dict[int, dict[str, Any]], extras: dict[str, Any], complete: bool,
              sample_shape: list[int] | None, meta_fields: dict[str, str] | None) -> dict[str, Any]:
    return {
        "format": mf.FORMAT_NAME,
        "format_version": mf.FORMAT_VERSION,
        **identity,
        "seed": identity["config"].get("seed"),
        "classes": source.class_names(),
        "num_items": source.num_items(),
        "num_images": sum(e["count"] for e in done.values()),
        "num_shards": len(tasks),
        "image_shape": sample_shape,
        "metadata_fields": meta_fields,
        "extra_files": extras,
        "failures": sum(len(e.get("failures", [])) for e in done.values()),
        "complete": complete,
        "shards": [done[i] for i in sorted(done)],
    }


def available_memory() -> int:
    """Bytes of memory available to new allocations (MemAvailable; total memory elsewhere)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_size(source: ShardSource, shard_size: int, workers: int) -> None:
    """FdslError (one line naming the limit) when the data set is too large to plan, or when one
    rendered part per worker would not fit in memory (sources that know their ``image_shape``)."""
    items = source.num_items()
    if items > MAX_ITEMS:
        raise FdslError(f"{items} images is more than the limit of {MAX_ITEMS}; ask for fewer classes or images")
    if -(-items // shard_size) > MAX_SHARDS:
        raise FdslError(f"{-(-items // shard_size)} shards is more than the limit of {MAX_SHARDS}; "
                        "raise --shard-size")
    shape = getattr(source, "image_shape", None)
    if callable(shape):
        part = min(RENDER_PART, shard_size, max(items, 1)) * math.prod(shape())
        if part * min(workers, -(-items // shard_size) or 1) > available_memory():
            raise FdslError(f"images of shape {list(shape())} need {part / 2**30:.1f} GiB per worker "
                            f"({min(RENDER_PART, shard_size)} at a time) x {workers} workers, more than the "
                            f"{available_memory() / 2**30:.1f} GiB of memory available; use a smaller "
                            "--image-size or fewer --workers")


def _check_settings(shard_size: int, storage: str, compression: str) -> None:
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size <= 0:
        raise FdslError(f"shard size must be a positive integer, got {shard_size!r}")
    if storage not in STORAGES:
        raise FdslError(f"unknown format {storage!r}; choose one of {', '.join(STORAGES)}")
    if compression not in COMPRESSIONS:
        raise FdslError(f"unknown compression {compression!r}; choose one of {', '.join(COMPRESSIONS)}")


def build_dataset(
    source: ShardSource | Callable[[], ShardSource],
    out: str | Path,
    *,
    shard_size: int = 10_000,
    workers: int | None = None,
    backend: str = "local",
    compression: str = "lz4",
    storage: str = "hdf5",
    overwrite: bool = False,
    params_only: bool = False,
) -> BuildResult:
    """Render every item of ``source`` into ``out`` (resuming what a previous run finished).

    ``source`` may be a zero-argument factory of the source instead, for one whose making is long
    work (a category search): it is called holding the lock, so a run refused for its settings or
    its folder, or one finding the folder busy, does none of that work. The run holds an
    exclusive lock on ``out`` (a second run into it is refused in one line), and removes the
    temporary files that killed runs left; a run that stops before it writes a manifest leaves no
    lock file or folder of its own behind. Raises FdslError (one line) for bad settings, an
    unwritable, locked, mismatched or tampered folder, a full disk, or a shard that keeps failing.
    ``params_only`` stops once the manifest and the source's extra files (its class parameters) are
    written, before any shard: a later run with the same settings resumes from there.
    """
    _check_settings(shard_size, storage, compression)
    workers = workers or default_workers()
    if hasattr(source, "render"):
        check_size(source, shard_size, workers)
    out = Path(out)
    # Every refusal before anything is created or locked: a refused run leaves the folder as it was.
    check_output_folder(out)
    # A source factory (a generator's search) offers a cheap preview with the same identity.
    planned = source if hasattr(source, "render") else getattr(source, "preview", lambda: None)()
    if planned is not None:
        prepare_folder(out, _identity(planned, storage, compression, shard_size), overwrite, check_only=True)
    else:
        check_folder(out, overwrite)
    with _undone_if_nothing_written(out), folder_lock(out):
        if not hasattr(source, "render"):
            source = source()
            check_size(source, shard_size, workers)
        with disk_full_guard(out):
            return _build_locked(source, out, shard_size, workers, backend,
                                 compression, storage, overwrite, params_only)


@contextmanager
def _undone_if_nothing_written(out: Path) -> Iterator[None]:
    """On an exception before the run wrote a manifest, remove the lock file and the folders this
    run created, so a refused or failed start leaves the folder as it was."""
    created = [p for p in (out, *out.parents) if not p.exists()]
    lock = out / LOCK_NAME
    had_lock = lock.exists()
    before = _stamp(mf.manifest_path(out))
    try:
        yield
    except BaseException:
        if not had_lock and _stamp(mf.manifest_path(out)) == before:
            for path in (lock, *created):  # the lock file, then the folders deepest first
                try:
                    path.unlink() if path is lock else path.rmdir()
                except OSError:  # not there, or a folder that is not empty: keep the rest
                    if path is not lock:
                        break
        raise


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _build_locked(source: ShardSource, out: Path, shard_size: int, workers: int, backend: str,
                  compression: str, storage: str, overwrite: bool, params_only: bool = False) -> BuildResult:
    start = time.perf_counter()
    remove_stale_temps(out)
    identity = _identity(source, storage, compression, shard_size)
    done = prepare_folder(out, identity, overwrite)
    tasks = plan_tasks(source.num_items(), shard_size)
    valid = {t.index for t in tasks}
    done = {i: e for i, e in done.items() if i in valid}
    skipped = len(done)

    extra_files = source.extra_files()
    extras = {name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
              for name, data in sorted(extra_files.items())}

    def on_result(task: ShardTask, entry: dict[str, Any]) -> int:
        done[task.index] = entry
        mf.write_manifest(out, _manifest(identity, source, tasks, done, extras, False, None, None))
        fault_point("shard-done")
        return task.stop - task.start

    # The manifest comes first: a folder holding a manifest is ours, so a run killed right after
    # this line resumes instead of finding a "non-empty folder without a manifest".
    mf.write_manifest(out, _manifest(identity, source, tasks, done, extras, False, None, None))
    for name, data in sorted(extra_files.items()):
        write_bytes_atomic(out / name, data)
    todo = [t for t in tasks if t.index not in done]
    counted = sum(e["count"] for e in done.values())
    data_bytes = get_format(storage).reader.data_bytes
    if params_only and todo:
        return BuildResult(out=out, images=counted, shards=len(tasks), shards_skipped=skipped, failures=0,
                           seconds=time.perf_counter() - start, bytes=sum(data_bytes(e) for e in done.values()),
                           classes=len(source.class_names()))
    job = _Job(source, str(out), storage, compression,
               sum(data_bytes(e) for e in done.values()) / counted if counted else 0.0)
    try:
        run_tasks(job, todo, on_result, backend=backend, workers=workers,
                  total_items=sum(t.stop - t.start for t in todo), desc=source.name)
    except BaseException:
        remove_stale_temps(out)  # stopped workers cannot clean up after themselves
        raise

    shape, meta_fields, sidecars = get_format(storage).finish(out, done, source.class_names())
    manifest = _manifest(identity, source, tasks, done, {**extras, **sidecars}, True, shape, meta_fields)
    failures = [f for i in sorted(done) for f in done[i].get("failures", [])]
    failures_file = out / mf.FAILURES_NAME
    if failures:
        write_bytes_atomic(failures_file, "".join(json.dumps(f, sort_keys=True) + "\n" for f in failures).encode())
    else:
        failures_file.unlink(missing_ok=True)
    mf.write_manifest(out, manifest)
    result = BuildResult(out=out, images=manifest["num_images"], shards=len(tasks), shards_skipped=skipped,
                         failures=len(failures), seconds=time.perf_counter() - start,
                         bytes=sum(data_bytes(e) for e in done.values()), classes=len(manifest["classes"]))
    _write_run_log(out, result, workers, backend)
    log.debug(result.summary())  # the CLIs print it; keep it out of the log stream to avoid a duplicate
    return result


def _write_run_log(out: Path, result: BuildResult, workers: int, backend: str) -> None:
    """How this run went (not part of the data set's identity, so outside the manifest)."""
    record = {"workers": workers, "backend": backend, "seconds": round(result.seconds, 3),
              "images_per_second": round(result.images_per_second, 1),
              "shards_built": result.shards - result.shards_skipped, "finished_at": time.time()}
    write_bytes_atomic(out / "run.json", (json.dumps(record, indent=1) + "\n").encode())
