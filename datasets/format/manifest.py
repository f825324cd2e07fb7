"""``manifest.json``: what a data set is and which files belong to it (see docs/FORMAT.md).

Every reader (loaders, ``inspect-shards --verify``, the builder's resume and ``--overwrite``) gets
the manifest through ``fdsl.datasets.format.read_manifest``, which refuses in one line a manifest
that is unreadable, lacks a key, holds a value of the wrong type, is inconsistent with itself
(counts, shard list, classes) or names a path outside the data set folder (``resolve_member``).
This module knows no storage format: each format declares the keys its ``shards`` entries add.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from fdsl.atomic import write_bytes_atomic
from fdsl.datasets.format.checksum import is_sha256
from fdsl.errors import ShardError
from fdsl.jsonfile import read_json

FORMAT_NAME = "fdsl-shards"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
FAILURES_NAME = "failures.jsonl"
REQUIRED_KEYS = ("generator", "config", "classes", "num_items", "num_images", "num_shards", "complete", "shards")
RECORD_KEYS = ("index", "file", "count", "bytes", "sha256")
# A storage format's own keys in each ``shards`` entry: name -> kind ("count": an integer >= 0,
# "sha256": a hex digest), checked like the common ones.
EntryKeys = Mapping[str, str]


@dataclass(frozen=True)
class ShardRecord:
    """What the manifest records about one listed file."""

    index: int
    file: str
    count: int
    bytes: int
    sha256: str

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> ShardRecord:
        """The record of a manifest ``shards`` entry (extra keys such as ``first_item`` ignored)."""
        return cls(**{k: entry[k] for k in RECORD_KEYS})

    @classmethod
    def for_extra(cls, name: str, info: Mapping[str, Any]) -> ShardRecord:
        """The record of an ``extra_files`` entry (checked like a shard: size and sha256)."""
        return cls(index=-1, file=name, count=0, bytes=info["bytes"], sha256=info["sha256"])

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in RECORD_KEYS}

    def path(self, folder: str | Path) -> Path:
        """The listed file, inside ``folder`` (``resolve_member``)."""
        return resolve_member(folder, self.file)


def manifest_path(folder: str | Path) -> Path:
    return Path(folder) / MANIFEST_NAME


def dump_manifest(manifest: Mapping[str, Any]) -> bytes:
    """Canonical JSON bytes: sorted keys, so equal manifests are equal files."""
    return (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()


def write_manifest(folder: str | Path, manifest: Mapping[str, Any]) -> None:
    """Atomically (re)write ``folder/manifest.json``."""
    write_bytes_atomic(manifest_path(folder), dump_manifest(manifest))


def resolve_member(folder: str | Path, relpath: Any) -> Path:
    """``folder / relpath`` when it stays inside ``folder`` (after following links); ShardError
    otherwise. Every path read from a manifest or a listing goes through here, so a crafted
    ``../x`` or ``/etc/x`` is never read, trusted or deleted."""
    if not isinstance(relpath, str) or not relpath or "\x00" in relpath or "\\" in relpath:
        raise ShardError(f"{folder}: bad member path {relpath!r}")
    rel = PurePosixPath(relpath)
    if rel.is_absolute() or ".." in rel.parts or rel.parts[0] == "~":
        raise ShardError(f"{folder}: path {relpath!r} points outside the data set folder")
    base = Path(folder).resolve()
    path = Path(folder) / rel
    if not path.resolve().is_relative_to(base):
        raise ShardError(f"{folder}: path {relpath!r} leads outside the data set folder (a link?)")
    return path


# --------------------------------------------------------------------------- validation


def _is_int(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _need(cond: bool, path: Path, message: str) -> None:
    if not cond:
        raise ShardError(f"{path}: {message}")


def _check_keys(obj: Mapping[str, Any], keys: tuple[str, ...], path: Path, where: str = "") -> None:
    for key in keys:
        if key not in obj:
            raise ShardError(f"{path}: missing key {key!r}{where}")


_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "count": (_is_int, "an integer >= 0"), "sha256": (is_sha256, "a sha256 hex digest")}
_RECORD_KINDS = {"index": "count", "count": "count", "bytes": "count", "sha256": "sha256"}


def _check_entry(folder: Path, path: Path, k: int, entry: Any, keys: EntryKeys, num_shards: int) -> None:
    where = f" in shards[{k}]"
    _need(isinstance(entry, dict), path, f"shards[{k}] is not an object")
    _check_keys(entry, (*RECORD_KEYS, *keys), path, where)
    for key, kind in {**_RECORD_KINDS, **keys}.items():
        ok, want = _KINDS[kind]
        _need(ok(entry[key]), path, f"key {key!r}{where} is {entry[key]!r}, expected {want}")
    _need(entry["index"] < num_shards, path, f"shards[{k}] has index {entry['index']} >= num_shards {num_shards}")
    resolve_member(folder, entry["file"])
    if "first_item" in entry:
        _need(_is_int(entry["first_item"]), path, f"key 'first_item'{where} is not an integer >= 0")


def _check_layout(manifest: Mapping[str, Any], path: Path) -> None:
    shape = manifest.get("image_shape")
    if shape is not None:
        ok = isinstance(shape, list) and len(shape) in (2, 3) and all(_is_int(s, 1) for s in shape)
        _need(ok and (len(shape) == 2 or shape[2] in (1, 3, 4)), path,
              f"image_shape {shape!r} is not [H, W] or [H, W, C] with C 1, 3 or 4")
    elif manifest["complete"] and manifest["num_images"]:
        raise ShardError(f"{path}: missing key 'image_shape' of a complete data set")
    fields = manifest.get("metadata_fields")
    if fields is not None:
        _need(isinstance(fields, dict), path, "metadata_fields is not an object")
        for name, dtype in fields.items():
            try:
                np.dtype(dtype)
            except TypeError:
                raise ShardError(f"{path}: metadata field {name!r} has unknown dtype {dtype!r}") from None


def validate_manifest(folder: Path, manifest: Any, storages: Mapping[str, EntryKeys],
                      path: Path | None = None) -> dict[str, Any]:
    """Check a manifest's keys, types and self-consistency; return it, or raise ShardError (one
    line naming the file and the key). ``storages`` maps each known storage to the keys its
    ``shards`` entries add (``fdsl.datasets.format`` passes every format's)."""
    path = path or manifest_path(folder)
    _need(isinstance(manifest, dict) and manifest.get("format") == FORMAT_NAME, path,
          "not an fdsl manifest (format field missing)")
    _check_keys(manifest, ("format_version",), path)
    version = manifest["format_version"]
    if not _is_int(version, 1) or version > FORMAT_VERSION:
        raise ShardError(f"{path}: format version {version!r} is newer than this fdsl reads "
                         f"({FORMAT_VERSION}); upgrade fdsl")
    _check_keys(manifest, REQUIRED_KEYS, path)
    storage = manifest.get("storage", "hdf5")
    _need(storage in storages, path, f"unknown storage {storage!r}")
    classes = manifest["classes"]
    _need(isinstance(classes, list) and bool(classes) and all(isinstance(c, str) for c in classes), path,
          "key 'classes' is not a non-empty list of names")
    for key in ("num_items", "num_images", "num_shards"):
        _need(_is_int(manifest[key]), path, f"key {key!r} is {manifest[key]!r}, expected an integer >= 0")
    _need(isinstance(manifest["complete"], bool), path, "key 'complete' is not true or false")
    entries = manifest["shards"]
    _need(isinstance(entries, list), path, "key 'shards' is not a list")
    for k, entry in enumerate(entries):
        _check_entry(folder, path, k, entry, storages[storage], manifest["num_shards"])
    indices = [e["index"] for e in entries]
    _need(len(set(indices)) == len(indices), path, "a shard index is listed twice")
    files = [e["file"] for e in entries]
    _need(len(set(files)) == len(files), path, "a shard file is listed twice")
    _check_layout(manifest, path)
    extras = manifest.get("extra_files", {})
    _need(isinstance(extras, dict), path, "key 'extra_files' is not an object")
    for name, info in extras.items():
        resolve_member(folder, name)
        _need(isinstance(info, dict), path, f"extra_files[{name!r}] is not an object")
        _check_keys(info, ("bytes", "sha256"), path, f" in extra_files[{name!r}]")
        _need(_is_int(info["bytes"]) and is_sha256(info["sha256"]), path,
              f"extra_files[{name!r}] has a bad size or sha256")
    return manifest


def totals_problem(manifest: Mapping[str, Any]) -> str | None:
    """What is inconsistent between a (validated) manifest's totals and its shard list, if
    anything. Readers call it after checking each shard against its file, so a shard whose
    ``count`` was changed is named first."""
    entries = manifest["shards"]
    total = sum(e["count"] for e in entries)
    if total != manifest["num_images"]:
        return f"num_images {manifest['num_images']} differs from the sum of the shard counts ({total})"
    if total > manifest["num_items"]:
        return f"{total} images listed but num_items is {manifest['num_items']}"
    if manifest["complete"] and len(entries) != manifest["num_shards"]:
        return f"marked complete but lists {len(entries)} of {manifest['num_shards']} shards"
    return None


def read_manifest(folder: str | Path, storages: Mapping[str, EntryKeys]) -> dict[str, Any]:
    """Read and check ``folder/manifest.json`` (see ``validate_manifest``); ShardError naming the
    problem otherwise. Callers use ``fdsl.datasets.format.read_manifest``, which knows the
    storages."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ShardError(f"{folder}: no such data set folder")
    path = manifest_path(folder)
    if not path.is_file():
        raise ShardError(f"{path}: missing manifest (not an fdsl data set, or never finished a shard)")
    return validate_manifest(folder, read_json(path, "manifest", ShardError), storages, path)


def shard_records(manifest: Mapping[str, Any]) -> list[ShardRecord]:
    """The manifest's shard list as records, ordered by index."""
    return sorted((ShardRecord.from_entry(s) for s in manifest.get("shards", [])), key=lambda r: r.index)


def require_field(manifest: Mapping[str, Any], name: str, flag: str = "field") -> None:
    """Raise ShardError (one line) unless ``name`` is one of the data set's metadata fields."""
    fields = manifest.get("metadata_fields") or {}
    if name not in fields:
        raise ShardError(f"{flag} {name!r} is not a metadata field here; fields: {', '.join(fields) or 'none'}")


def require_totals(folder: Path, manifest: Mapping[str, Any]) -> None:
    """ShardError unless the manifest's totals agree with its shard list (see ``totals_problem``)."""
    if problem := totals_problem(manifest):
        raise ShardError(f"{manifest_path(folder)}: {problem}")


def require_complete(folder: Path, manifest: Mapping[str, Any]) -> None:
    """ShardError unless the manifest says every shard is written."""
    if not manifest.get("complete", False):
        raise ShardError(f"{manifest_path(folder)}: incomplete data set "
                         f"({len(manifest.get('shards', []))}/{manifest.get('num_shards', '?')} "
                         "shards); re-run the same command to finish it")
