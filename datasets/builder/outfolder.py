"""The builder's output folder before a run: resume what verifies, refuse what does not match,
and (with ``--overwrite``) remove an old data set without ever touching a file outside the folder.

Every path taken from an old manifest or listing goes through ``manifest.resolve_member``; a
manifest that cannot be trusted (unreadable, a missing key, inconsistent, a path escaping the
folder) is refused in one line, and ``--overwrite`` then removes only files named as fdsl names
its own files, directly in the folder.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fdsl.atomic import LOCK_NAME, ensure_writable, file_stamp, remove_quietly
from fdsl.datasets.format import FORMATS, read_manifest, storage_of
from fdsl.datasets.format import manifest as mf
from fdsl.errors import ConfigMismatchError, ShardError

log = logging.getLogger(__name__)

RUN_LOG = "run.json"
OWN_FILES = (RUN_LOG, LOCK_NAME)  # present in a folder that holds no data set yet


def describe_difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """``key: old -> new`` for every differing (nested) setting."""
    diffs = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            if isinstance(old.get(key), dict) and isinstance(new.get(key), dict):
                diffs += [f"{key}.{d}" for d in describe_difference(old[key], new[key]).split(", ") if d]
            else:
                diffs.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
    return ", ".join(diffs)


def check_folder(out: Path, overwrite: bool) -> None:
    """Refuse, reading only, a folder no run may build into: one that is not empty and holds no
    fdsl manifest (unless ``overwrite``). Called before the lock, so such a refusal creates
    nothing; ``prepare_folder`` checks again holding the lock."""
    if out.is_dir() and not overwrite and not mf.manifest_path(out).exists():
        others = [p for p in out.iterdir() if p.name not in OWN_FILES and not p.name.startswith(".")]
        if others:
            raise ConfigMismatchError(f"{out} is not empty and holds no fdsl manifest; "
                                      "choose an empty folder or pass --overwrite")


def prepare_folder(out: Path, identity: dict[str, Any], overwrite: bool, *,
                   check_only: bool = False) -> dict[int, dict[str, Any]]:
    """Check ``out`` against ``identity`` (call it holding the folder lock); return the shard
    entries that verify and can be kept. ``check_only``: only raise the refusals, creating and
    changing nothing (a build asks so before it creates or locks anything)."""
    if check_only and (overwrite or not out.is_dir()):
        return {}
    if not check_only:
        ensure_writable(out)
    if not mf.manifest_path(out).exists():
        check_folder(out, overwrite)
        return {}
    try:
        old = read_manifest(out)
    except ShardError as exc:
        if not overwrite:
            raise ConfigMismatchError(f"{exc}; pass --overwrite to rebuild the data set in {out}") from None
        log.warning("rebuilding %s: %s", out, exc)
        remove_own_files(out)
        return {}
    old_identity = {k: old.get(k) for k in identity}
    if old_identity != identity:
        if not overwrite:
            raise ConfigMismatchError(f"{out} holds a data set made with other settings "
                                      f"({describe_difference(old_identity, identity)}); "
                                      "use another folder or pass --overwrite")
        remove_dataset(out, old)
        return {}
    if check_only:
        return {}
    reader = storage_of(old).reader
    kept = {}
    for entry in old["shards"]:
        problems = reader.check_entry(out, entry, old, checksum=True)
        if problems:
            log.warning("will rebuild shard %d: %s", entry["index"], problems[0])
            for path in reader.entry_files(out, entry):  # no stale files of an older layout stay
                remove_quietly(path)
        else:
            kept[entry["index"]] = entry
    return kept


def remove_dataset(out: Path, manifest: Mapping[str, Any]) -> None:
    """Delete the files a (validated) manifest lists, and nothing else the user keeps there."""
    reader = storage_of(manifest).reader
    for entry in manifest["shards"]:
        for path in reader.entry_files(out, entry):
            remove_quietly(path)
    for name in manifest.get("extra_files", {}):
        remove_quietly(mf.resolve_member(out, name))
    remove_own_files(out)


def remove_own_files(out: Path) -> None:
    """Delete what fdsl names its own directly in ``out`` (the manifest, each format's files, the
    failures and run logs), for a folder whose manifest cannot be trusted."""
    for fmt in FORMATS.values():
        for path in fmt.own_files(out):
            remove_quietly(path)
    for name in (mf.FAILURES_NAME, RUN_LOG, mf.MANIFEST_NAME):
        if (out / name).is_file() or (out / name).is_symlink():
            remove_quietly(out / name)


@contextmanager
def undone_if_nothing_written(out: Path) -> Iterator[None]:
    """On an exception before the run wrote a manifest, remove the lock file and the folders this
    run created, so a refused or failed start leaves the folder as it was."""
    created = [p for p in (out, *out.parents) if not p.exists()]
    lock = out / LOCK_NAME
    had_lock = lock.exists()
    before = file_stamp(mf.manifest_path(out))
    try:
        yield
    except BaseException:
        if not had_lock and file_stamp(mf.manifest_path(out)) == before:
            for path in (lock, *created):  # the lock file, then the folders deepest first
                try:
                    path.unlink() if path is lock else path.rmdir()
                except OSError:  # not there, or a folder that is not empty: keep the rest
                    if path is not lock:
                        break
        raise
