"""The on-disk format of an fdsl data set; the only package that knows HDF5 or PNG.

A data set is ``manifest.json`` (``manifest.py``: storage-agnostic) plus the files of one storage
format (``hdf5/``, ``png/``), each a writer and a reader behind the interfaces of ``base.py``,
checksummed by ``checksum.py``. ``FORMATS[name]`` is the format's ``StorageFormat``;
``read_manifest``, ``open_dataset`` and ``verify_dataset`` pick the format from the manifest's
``storage``, so loaders, ``inspect-shards``, exports, studies and training read HDF5 shards and
PNG trees alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fdsl.datasets.format import hdf5, png
from fdsl.datasets.format import manifest as mf
from fdsl.datasets.format.base import DatasetReader, StorageFormat
from fdsl.datasets.format.checks import Problem
from fdsl.datasets.format.checksum import check_file
from fdsl.datasets.format.hdf5.writer import COMPRESSIONS
from fdsl.errors import ShardError
from fdsl.progress import Progress

__all__ = ["COMPRESSIONS", "FORMATS", "STORAGES", "DatasetReader", "Problem", "StorageFormat",
           "get_format", "open_dataset", "read_manifest", "verify_dataset"]

FORMATS: dict[str, StorageFormat] = {fmt.name: fmt for fmt in (hdf5.FORMAT, png.FORMAT)}
STORAGES = tuple(FORMATS)
_ENTRY_KEYS = {name: fmt.entry_keys for name, fmt in FORMATS.items()}


def get_format(storage: str) -> StorageFormat:
    if storage not in FORMATS:
        raise ShardError(f"unknown format {storage!r}; choose one of {', '.join(FORMATS)}")
    return FORMATS[storage]


def storage_of(manifest: dict[str, Any]) -> StorageFormat:
    """The format of a (validated) manifest's data set."""
    return FORMATS[manifest.get("storage", "hdf5")]


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """Read and validate ``folder/manifest.json`` (keys, types, consistency, paths inside
    ``folder``, each format's own entry keys); ShardError naming the problem otherwise."""
    return mf.read_manifest(folder, _ENTRY_KEYS)


def open_dataset(folder: str | Path, *, verify: bool = False) -> DatasetReader:
    """A reader of the complete data set in ``folder``, HDF5 or PNG (see ``DatasetReader``).

    The manifest is validated (keys, types, consistency, paths inside ``folder``) and every shard
    checked against it; ``verify`` also checks every sha256. Raises ShardError (one line).
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    mf.require_complete(folder, manifest)
    return storage_of(manifest).reader(folder, manifest, verify=verify)


def verify_dataset(folder: str | Path, checksum: bool = True, progress: bool = False) -> list[Problem]:
    """Check the manifest and every file it lists; return the problems (empty when all is well).
    ``progress`` reports the shards checked (``fdsl.progress``)."""
    folder = Path(folder)
    try:
        manifest = read_manifest(folder)
    except ShardError as exc:
        return [Problem.from_error(mf.manifest_path(folder), "manifest", exc)]
    reader = storage_of(manifest).reader
    problems = []
    entries = sorted(manifest["shards"], key=lambda e: e["index"])
    for entry in Progress(entries, unit="shard", desc="verify", disable=not progress):
        problems += reader.check_entry(folder, entry, manifest, checksum)
    for name, info in sorted(manifest.get("extra_files", {}).items()):
        if p := check_file(folder, mf.ShardRecord.for_extra(name, info), checksum):
            problems.append(p)
    if totals := mf.totals_problem(manifest):
        problems.append(Problem(str(mf.manifest_path(folder)), "totals", totals))
    if not manifest["complete"]:
        problems.append(Problem(str(mf.manifest_path(folder)), "complete",
                                f"run not finished ({len(manifest['shards'])}/{manifest['num_shards']} shards); "
                                "re-run the same command to resume"))
    return problems
