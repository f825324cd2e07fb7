"""Turn a ``ShardSource`` (a generator or renderer) into a finished, verified data set folder.

The builder owns everything a source should not know about: splitting the items into shards,
running shards on a backend, atomic files, the manifest, resume, refusing to mix configurations,
the failures file and the end summary.

Resume works because every item depends only on (config, item index): a shard that the manifest
lists and whose size and checksum verify is kept, any other is rendered again, and a finished run
writes the same bytes whether or not it was interrupted.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.atomic import (
    check_free_space,
    check_output_folder,
    disk_full_guard,
    folder_lock,
    remove_stale_temps,
    write_bytes_atomic,
)
from fdsl.datasets.builder._heap import reuse_freed_memory
from fdsl.datasets.builder.jobs import default_workers, run_tasks
from fdsl.datasets.builder.outfolder import check_folder, prepare_folder, undone_if_nothing_written
from fdsl.datasets.format import COMPRESSIONS, STORAGES, get_format
from fdsl.datasets.format import manifest as mf
from fdsl.datasets.format.checksum import bytes_record
from fdsl.errors import FdslError
from fdsl.faults import fault_point
from fdsl.limits import DISK_MARGIN, PART_BYTES, RENDER_PART, check_plan
from fdsl.sources import RenderedBatch, ShardSource

log = logging.getLogger(__name__)


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
    render_part: int = RENDER_PART
    part_bytes: int = PART_BYTES

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
            check_free_space(out, int(self.bytes_per_item * expected * 1.1) + DISK_MARGIN)
        writer = get_format(self.storage).writer(out, task.index, self.source, compression=self.compression,
                                                 expected=expected)
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
        for batch in render_parts(self.source, task.start, task.stop, self.render_part, self.part_bytes):
            # A unit (a model) cut by a part boundary reports its failure in both parts.
            failures.extend(f for f in batch.failures if f not in failures)
            yield batch


def render_parts(source: ShardSource, start: int, stop: int, part: int = RENDER_PART,
                 part_bytes: int = PART_BYTES) -> Iterator[RenderedBatch]:
    """Items ``[start, stop)`` rendered ``part`` at a time, a fifth as many once a part's images
    exceed ``part_bytes`` (see ``fdsl.limits``), so a worker never holds a whole shard."""
    while start < stop:
        batch = source.render(start, min(start + part, stop))
        start += part
        per_item = batch.images.nbytes / max(len(batch.items), 1)
        while part >= 5 and part * per_item > part_bytes:
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


def check_size(source: ShardSource, shard_size: int, workers: int) -> None:
    """FdslError (one line naming the limit) when the data set is too large to plan, or when the
    workers' render parts would not fit in memory (``fdsl.limits.check_plan``; sources that know
    their ``image_shape``, an optional method of a ShardSource)."""
    shape = source.image_shape() if callable(getattr(source, "image_shape", None)) else None
    check_plan(items=source.num_items(), shard_size=shard_size, workers=workers, image_shape=shape)


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
    progress: bool = True,
    render_part: int = RENDER_PART,
    part_bytes: int = PART_BYTES,
    params_only: bool = False,
) -> BuildResult:
    """Render every item of ``source`` into ``out`` (resuming what a previous run finished).

    ``source`` may be a zero-argument factory of the source instead, for one whose making is long
    work (a category search): it is called holding the lock, so a run refused for its settings or
    its folder, or one finding the folder busy, does none of that work. The run holds an
    exclusive lock on ``out`` (a second run into it is refused in one line), and removes the
    temporary files that killed runs left; a run that stops before it writes a manifest leaves no
    lock file or folder of its own behind. ``progress`` shows a bar on a terminal and progress
    lines in a log (``fdsl.progress``). ``render_part`` and ``part_bytes`` size the parts a
    worker renders at a time (``fdsl.limits``; they never change a byte of the output).
    ``params_only`` stops once the manifest and the source's extra files (its class parameters)
    are written, before any shard: a later run with the same settings resumes from there. Raises
    FdslError (one line) for bad settings, an unwritable, locked, mismatched or tampered folder,
    a full disk, or a shard that keeps failing.
    """
    _check_settings(shard_size, storage, compression)
    settings = _Settings(shard_size, workers or default_workers(), backend, compression, storage,
                         overwrite, progress, render_part, part_bytes, params_only)
    if hasattr(source, "render"):
        check_size(source, shard_size, settings.workers)
    out = Path(out)
    # Every refusal before anything is created or locked: a refused run leaves the folder as it was.
    check_output_folder(out)
    # A source factory (a generator's search) offers a cheap preview with the same identity.
    planned = source if hasattr(source, "render") else getattr(source, "preview", lambda: None)()
    if planned is not None:
        prepare_folder(out, _identity(planned, storage, compression, shard_size), overwrite, check_only=True)
    else:
        check_folder(out, overwrite)
    with undone_if_nothing_written(out), folder_lock(out):
        if not hasattr(source, "render"):
            source = source()
            check_size(source, shard_size, settings.workers)
        with disk_full_guard(out):
            return _build_locked(source, out, settings)


@dataclass(frozen=True)
class _Settings:
    """``build_dataset``'s settings, checked."""

    shard_size: int
    workers: int
    backend: str
    compression: str
    storage: str
    overwrite: bool
    progress: bool
    render_part: int
    part_bytes: int
    params_only: bool


def _build_locked(source: ShardSource, out: Path, settings: _Settings) -> BuildResult:
    start = time.perf_counter()
    remove_stale_temps(out)
    storage, fmt = settings.storage, get_format(settings.storage)
    identity = _identity(source, storage, settings.compression, settings.shard_size)
    done = prepare_folder(out, identity, settings.overwrite)
    tasks = plan_tasks(source.num_items(), settings.shard_size)
    valid = {t.index for t in tasks}
    done = {i: e for i, e in done.items() if i in valid}
    skipped = len(done)

    extra_files = source.extra_files()
    extras = {name: bytes_record(data) for name, data in sorted(extra_files.items())}

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
    data_bytes = fmt.reader.data_bytes
    if settings.params_only and todo:
        return BuildResult(out=out, images=counted, shards=len(tasks), shards_skipped=skipped, failures=0,
                           seconds=time.perf_counter() - start, bytes=sum(data_bytes(e) for e in done.values()),
                           classes=len(source.class_names()))
    job = _Job(source, str(out), storage, settings.compression,
               sum(data_bytes(e) for e in done.values()) / counted if counted else 0.0,
               settings.render_part, settings.part_bytes)
    try:
        run_tasks(job, todo, on_result, backend=settings.backend, workers=settings.workers,
                  total_items=sum(t.stop - t.start for t in todo), desc=source.name,
                  progress=settings.progress)
    except BaseException:
        remove_stale_temps(out)  # stopped workers cannot clean up after themselves
        raise

    shape, meta_fields, sidecars = fmt.finish(out, done, source.class_names())
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
    _write_run_log(out, result, settings.workers, settings.backend)
    log.debug(result.summary())  # the CLIs print it; keep it out of the log stream to avoid a duplicate
    return result


def _write_run_log(out: Path, result: BuildResult, workers: int, backend: str) -> None:
    """How this run went (not part of the data set's identity, so outside the manifest)."""
    record = {"workers": workers, "backend": backend, "seconds": round(result.seconds, 3),
              "images_per_second": round(result.images_per_second, 1),
              "shards_built": result.shards - result.shards_skipped, "finished_at": time.time()}
    write_bytes_atomic(out / "run.json", (json.dumps(record, indent=1) + "\n").encode())
