"""Storage formats, each a writer and a reader side by side (``hdf5/``, ``png/``).

``FORMATS[name]`` gives the writer class (one shard at a time), the reader class (the whole data
set, plus the per-shard verifier) and ``finish`` (what the format adds to the final manifest).
``open_dataset`` and ``verify_dataset`` pick the format from the manifest's ``storage``, so
loaders, ``inspect-shards`` and training read HDF5 shards and PNG trees alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fdsl.datasets.format.base import (
    DatasetReader,
    Problem,
    ShardWriter,
    check_record,
    require_complete,
)
from fdsl.datasets.format.hdf5.reader import Hdf5Reader, read_layout
from fdsl.datasets.format.hdf5.writer import COMPRESSIONS, Hdf5ShardWriter
from fdsl.datasets.format.png import reader as png_reader
from fdsl.datasets.format.png.writer import PngShardWriter
from fdsl.datasets.manifest import (
    STORAGES,
    ShardRecord,
    manifest_path,
    read_manifest,
    totals_problem,
)
from fdsl.errors import ShardError

__all__ = ["COMPRESSIONS", "FORMATS", "STORAGES", "DatasetReader", "Problem", "ShardWriter",
           "StorageFormat", "get_format", "open_dataset", "verify_dataset"]

Finish = Callable[[Path, Mapping[int, Mapping[str, Any]], list[str]],
                  tuple[list[int] | None, dict[str, str] | None, dict[str, Any]]]


def _hdf5_own_files(folder: Path) -> list[Path]:
    return list(folder.glob("shard-[0-9]*.h5"))


def _hdf5_finish(folder: Path, entries: Mapping[int, Mapping[str, Any]], classes: list[str]) -> tuple[
        list[int] | None, dict[str, str] | None, dict[str, Any]]:
    shape, fields = read_layout(folder, entries)
    return shape, fields, {}


@dataclass(frozen=True)
class StorageFormat:
    """One storage format: how to write a shard, read a data set, and finish a build."""

    name: str
    writer: type[ShardWriter]
    reader: type[DatasetReader]
    finish: Finish
    own_files: Callable[[Path], list[Path]]  # what it names its own in a folder, without a manifest
    compression: str | None = None  # fixed (png), or None: the --compression given


FORMATS: dict[str, StorageFormat] = {
    "hdf5": StorageFormat("hdf5", Hdf5ShardWriter, Hdf5Reader, _hdf5_finish, _hdf5_own_files),
    "png": StorageFormat("png", PngShardWriter, png_reader.PngReader, png_reader.finish, png_reader.own_files, "png"),
}


def get_format(storage: str) -> StorageFormat:
    if storage not in FORMATS:
        raise ShardError(f"unknown format {storage!r}; choose one of {', '.join(FORMATS)}")
    return FORMATS[storage]


def open_dataset(folder: str | Path, *, verify: bool = False) -> DatasetReader:
    """A reader of the complete data set in ``folder``, HDF5 or PNG (see ``DatasetReader``).

    The manifest is validated (keys, types, consistency, paths inside ``folder``) and every shard
    checked against it; ``verify`` also checks every sha256. Raises ShardError (one line).
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    require_complete(folder, manifest)
    return get_format(manifest.get("storage", "hdf5")).reader(folder, manifest, verify=verify)


def verify_dataset(folder: str | Path, checksum: bool = True) -> list[Problem]:
    """Check the manifest and every file it lists; return the problems (empty when all is well)."""
    folder = Path(folder)
    try:
        manifest = read_manifest(folder)
    except ShardError as exc:
        return [Problem.from_error(manifest_path(folder), "manifest", exc)]
    reader = get_format(manifest.get("storage", "hdf5")).reader
    problems = [p for entry in sorted(manifest["shards"], key=lambda e: e["index"])
                for p in reader.check_entry(folder, entry, manifest, checksum)]
    for name, info in sorted(manifest.get("extra_files", {}).items()):
        if p := check_record(folder, ShardRecord.for_extra(name, info), checksum):
            problems.append(p)
    if totals := totals_problem(manifest):
        problems.append(Problem(str(manifest_path(folder)), "totals", totals))
    if not manifest["complete"]:
        problems.append(Problem(str(manifest_path(folder)), "complete",
                                f"run not finished ({len(manifest['shards'])}/{manifest['num_shards']} shards); "
                                "re-run the same command to resume"))
    return problems
