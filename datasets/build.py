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
import io
import json
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.datasets import shards
from fdsl.datasets._heap import reuse_freed_memory
from fdsl.datasets.jobs import default_workers, run_tasks
from fdsl.errors import ConfigMismatchError, FdslError
from fdsl.sources import RenderedBatch, ShardSource  # noqa: F401  (re-exported for old imports)

log = logging.getLogger(__name__)

STORAGES = ("hdf5", "png")
PNG_INDEX_PREFIX = ".png-index-"  # + task number + .txt: the files one PNG task wrote
# Images rendered and held in memory at a time per worker (a whole 10,000-image FractalDB shard
# would be 1.3 GB); shards are written part by part.
RENDER_PART = 1000
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
    source: ShardSource
    out: str
    storage: str
    compression: str

    def __call__(self, task: ShardTask) -> dict[str, Any]:
        out = Path(self.out)
        failures: list[dict[str, Any]] = []
        with reuse_freed_memory():  # each render part reuses the last one's pages (no page faults)
            if self.storage == "png":
                entry = _write_png_task(self.source, out, task, self._parts(task, failures))
            else:
                entry = self._write_hdf5(out, task, self._parts(task, failures))
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

    def _write_hdf5(self, out: Path, task: ShardTask, parts: Iterator[RenderedBatch]) -> dict[str, Any]:
        writer = shards.ShardWriter(out / shards.shard_file_name(task.index), self.compression, task.index)
        try:
            for batch in parts:
                meta = dict(batch.metadata)
                meta["item"] = np.asarray(batch.items, dtype=np.int64)
                writer.append(batch.images, batch.labels, meta)
            return writer.close().to_json()
        except BaseException:
            writer.abort()
            raise


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


def _write_png_task(source: ShardSource, out: Path, task: ShardTask,
                    parts: Iterator[RenderedBatch]) -> dict[str, Any]:
    from PIL import Image

    listing = hashlib.sha256()
    total = 0
    lines = []
    for batch in parts:
        for k in range(len(batch.items)):
            meta = {name: values[k] for name, values in batch.metadata.items()}
            rel = source.png_path(int(batch.labels[k]), meta, int(batch.items[k]))
            path = out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            Image.fromarray(batch.images[k]).save(buf, format="PNG", optimize=False)
            data = buf.getvalue()
            shards.write_bytes_atomic(path, data, sync=False)
            line = f"{rel}\t{hashlib.sha256(data).hexdigest()}\n"
            listing.update(line.encode())
            total += len(data)
            lines.append(line)
    # A hidden file, not a folder: ImageFolder-style readers take every folder of the root as a class.
    index_name = f"{PNG_INDEX_PREFIX}{task.index:05d}.txt"
    index_path = out / index_name
    shards.write_bytes_atomic(index_path, "".join(lines).encode())
    return {"index": task.index, "file": index_name, "count": len(lines), "bytes": index_path.stat().st_size,
            "sha256": shards.sha256_file(index_path), "png_bytes": total, "png_sha256": listing.hexdigest()}


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
        "compression": compression if storage == "hdf5" else "png",
        "shard_size": shard_size,
    }


def _describe_difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    diffs = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            if isinstance(old.get(key), dict) and isinstance(new.get(key), dict):
                diffs += [f"{key}.{d}" for d in _describe_difference(old[key], new[key]).split(", ") if d]
            else:
                diffs.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
    return ", ".join(diffs)


def _prepare_folder(out: Path, identity: dict[str, Any], overwrite: bool) -> dict[int, dict[str, Any]]:
    """Check ``out`` against ``identity``; return the shard entries that can be kept."""
    shards.ensure_writable(out)
    for stale in out.glob(f".*{shards.TMP_MARK}*"):
        stale.unlink()  # left by a killed run
    manifest_file = shards.manifest_path(out)
    if not manifest_file.exists():
        others = [p for p in out.iterdir() if p.name != "run.json" and not p.name.startswith(PNG_INDEX_PREFIX)]
        if others and not overwrite:
            raise ConfigMismatchError(f"{out} is not empty and holds no fdsl manifest; "
                                      "choose an empty folder or pass --overwrite")
        return {}
    old = shards.read_manifest(out)
    old_identity = {k: old.get(k) for k in identity}
    if old_identity != identity:
        if not overwrite:
            raise ConfigMismatchError(f"{out} holds a data set made with other settings "
                                      f"({_describe_difference(old_identity, identity)}); "
                                      "use another folder or pass --overwrite")
        _remove_dataset(out, old)
        return {}
    kept = {}
    for entry in old.get("shards", []):
        record = shards.ShardRecord(**{k: entry[k] for k in ("index", "file", "count", "bytes", "sha256")})
        problem = shards.check_record(out, record)
        if problem is None and _png_entry_ok(out, entry):
            kept[entry["index"]] = entry
        else:
            log.warning("will rebuild shard %d: %s", entry["index"], problem or "PNG files changed")
    return kept


def _png_entry_ok(out: Path, entry: Mapping[str, Any]) -> bool:
    return not shards.check_png_entry(out, entry)


def _remove_dataset(out: Path, manifest: Mapping[str, Any]) -> None:
    """Delete the files an earlier manifest lists (never anything else the user keeps there)."""
    for entry in manifest.get("shards", []):
        path = out / entry["file"]
        if "png_sha256" in entry and path.is_file():
            for rel, _ in shards.read_png_listing(path):
                (out / rel).unlink(missing_ok=True)
        path.unlink(missing_ok=True)
    for name in manifest.get("extra_files", {}):
        (out / name).unlink(missing_ok=True)
    (out / shards.FAILURES_NAME).unlink(missing_ok=True)
    (out / "run.json").unlink(missing_ok=True)
    for listing in out.glob(f"{PNG_INDEX_PREFIX}*"):
        listing.unlink()
    shards.manifest_path(out).unlink()


def _manifest(identity: dict[str, Any], source: ShardSource, tasks: list[ShardTask],
              done: dict[int, dict[str, Any]], extras: dict[str, Any], complete: bool,
              sample_shape: list[int] | None, meta_fields: dict[str, str] | None) -> dict[str, Any]:
    config = identity["config"]
    return {
        "format": shards.FORMAT_NAME,
        "format_version": shards.FORMAT_VERSION,
        **identity,
        "seed": config.get("seed"),
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


def _read_layout(out: Path, done: Mapping[int, Mapping[str, Any]], storage: str) -> tuple[list[int] | None, dict[str, str] | None]:
    """Image shape and metadata dtypes, read from the first non-empty shard."""
    if storage != "hdf5":
        return None, None
    for index in sorted(done):
        if done[index]["count"]:
            with shards.open_shard(out / done[index]["file"]) as f:
                return list(f["images"].shape[1:]), {k: f["metadata"][k].dtype.str for k in sorted(f["metadata"])}
    return None, None


def build_dataset(
    source: ShardSource,
    out: str | Path,
    *,
    shard_size: int = 10_000,
    workers: int | None = None,
    backend: str = "local",
    compression: str = "lz4",
    storage: str = "hdf5",
    overwrite: bool = False,
) -> BuildResult:
    """Render every item of ``source`` into ``out`` (resuming what a previous run finished).

    Raises FdslError (one line) for bad settings, an unwritable or mismatched folder, or a shard
    that keeps failing.
    """
    if shard_size <= 0:
        raise FdslError(f"shard size must be positive, got {shard_size}")
    if storage not in STORAGES:
        raise FdslError(f"unknown format {storage!r}; choose one of {', '.join(STORAGES)}")
    if compression not in shards.COMPRESSIONS:
        raise FdslError(f"unknown compression {compression!r}; choose one of {', '.join(shards.COMPRESSIONS)}")
    out = Path(out)
    start = time.perf_counter()
    identity = _identity(source, storage, compression, shard_size)
    done = _prepare_folder(out, identity, overwrite)
    tasks = plan_tasks(source.num_items(), shard_size)
    valid = {t.index for t in tasks}
    done = {i: e for i, e in done.items() if i in valid}
    skipped = len(done)

    extra_files = source.extra_files()
    extras = {name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
              for name, data in sorted(extra_files.items())}

    def on_result(task: ShardTask, entry: dict[str, Any]) -> int:
        done[task.index] = entry
        shards.write_manifest(out, _manifest(identity, source, tasks, done, extras, False, None, None))
        return task.stop - task.start

    # The manifest comes first: a folder holding a manifest is ours, so a run killed right after
    # this line resumes instead of finding a "non-empty folder without a manifest".
    shards.write_manifest(out, _manifest(identity, source, tasks, done, extras, False, None, None))
    for name, data in sorted(extra_files.items()):
        shards.write_bytes_atomic(out / name, data)
    todo = [t for t in tasks if t.index not in done]
    job = _Job(source, str(out), storage, compression)
    workers = workers or default_workers()
    run_tasks(job, todo, on_result, backend=backend, workers=workers,
              total_items=sum(t.stop - t.start for t in todo), desc=source.name)

    shape, meta_fields = _read_layout(out, done, storage)
    manifest = _manifest(identity, source, tasks, done, extras, True, shape, meta_fields)
    failures = [f for i in sorted(done) for f in done[i].get("failures", [])]
    failures_file = out / shards.FAILURES_NAME
    if failures:
        shards.write_bytes_atomic(failures_file, "".join(json.dumps(f, sort_keys=True) + "\n" for f in failures).encode())
    else:
        failures_file.unlink(missing_ok=True)
    shards.write_manifest(out, manifest)
    size = sum(e.get("png_bytes", e["bytes"]) for e in done.values())
    result = BuildResult(out=out, images=manifest["num_images"], shards=len(tasks), shards_skipped=skipped,
                         failures=len(failures), seconds=time.perf_counter() - start, bytes=size,
                         classes=len(manifest["classes"]))
    _write_run_log(out, result, workers, backend)
    log.debug(result.summary())  # the CLIs print it; keep it out of the log stream to avoid a duplicate
    return result


def _write_run_log(out: Path, result: BuildResult, workers: int, backend: str) -> None:
    """How this run went (not part of the data set's identity, so outside the manifest)."""
    record = {"workers": workers, "backend": backend, "seconds": round(result.seconds, 3),
              "images_per_second": round(result.images_per_second, 1),
              "shards_built": result.shards - result.shards_skipped, "finished_at": time.time()}
    shards.write_bytes_atomic(out / "run.json", (json.dumps(record, indent=1) + "\n").encode())
