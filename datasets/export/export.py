"""Export an fdsl data set to the formats other tools read: WebDataset, ImageFolder, Hugging Face.

``export_shards(src, to, out)`` reads any fdsl data set (HDF5 shards or a PNG tree) in order and
writes, into ``out``:

- ``webdataset``: tar shards ``shard-NNNNNN.tar``; sample ``KKKKKKKK`` (the image's index) has
  ``KKKKKKKK.png``, ``KKKKKKKK.cls`` (the label, as text) and ``KKKKKKKK.json`` (label, class
  name and every metadata field). Samples are written in a seeded shuffled order across the
  tars (``shuffle_seed``; None keeps the data set's class-by-class order), as img2dataset
  users expect: shard shuffling with a small buffer then gives mixed batches. ``order.json``
  records the order (``{"seed", "indices"}``: the image index of each sample as written).
- ``imagefolder``: ``CLASS/KKKKKKKK.png`` per image plus ``metadata.csv`` (``file_name``, label,
  class, every metadata field; the column names Hugging Face's ``imagefolder`` loader reads).
  Class folders sort in label order, so torchvision's ImageFolder gives the same labels: they
  are the class names when those already sort so, else ``NNNNN-name``.
- ``hf``: a Hugging Face ``datasets`` folder (``save_to_disk``; ``load_from_disk(out)``) with
  columns ``image`` (PNG), ``label`` (ClassLabel with the class names) and every metadata field.

Every file is written under a temporary name and renamed. ``export.json`` (format, source,
counts, the files) is written first with ``"complete": false`` and the files planned, and again
with ``"complete": true`` at the end: a killed run's leftovers are known, and the next run clears
them. The run holds ``fdsl.atomic.folder_lock(out)``; ``overwrite`` replaces a finished export;
files no export wrote are never deleted (such a folder is refused).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fdsl.atomic import (
    LOCK_NAME,
    TMP_MARK,
    check_output_folder,
    folder_lock,
    is_disk_full,
    write_bytes_atomic,
)
from fdsl.datasets.export import targets
from fdsl.datasets.export.targets import RECORD_NAME, TARGETS
from fdsl.errors import FdslError
from fdsl.progress import Progress, is_terminal

log = logging.getLogger(__name__)


def _record(out: Path, to: str, src: Path, dataset: Any, files: list[str], complete: bool,
            shuffle_seed: int | None = None) -> None:
    record = {"format": "fdsl-export", "to": to, "complete": complete, "source": str(src.resolve()),
              "num_images": len(dataset), "classes": list(dataset.classes),
              "metadata_fields": sorted(dataset.metadata), "files": files}
    if to == "webdataset":
        record["shuffle_seed"] = shuffle_seed
    write_bytes_atomic(out / RECORD_NAME, json.dumps(record, indent=1).encode() + b"\n")


def _prepare(out: Path, overwrite: bool, *, check_only: bool = False) -> None:
    """Clear what an earlier export (with ``overwrite``) or an unfinished run left; refuse to
    touch files no export wrote. ``check_only``: only refuse, changing nothing (before the
    folder is created and locked)."""
    if check_only and not out.is_dir():
        return
    for path in sorted(out.rglob(f".*{TMP_MARK}*"), reverse=True):  # we hold the lock: a dead run's
        if not check_only:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    record: dict[str, Any] = {"files": [], "complete": False}
    if (out / RECORD_NAME).is_file():
        try:
            record = json.loads((out / RECORD_NAME).read_text())
            previous = [str(f) for f in record["files"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise FdslError(f"{out / RECORD_NAME}: unreadable export record ({exc}); choose "
                            "another output folder") from None
    else:
        previous = []
    ours = {(out / f).resolve() for f in previous}
    ours = {p for p in ours if out.resolve() in p.parents}  # never outside the folder
    skip = {(out / RECORD_NAME).resolve(), (out / LOCK_NAME).resolve()}
    foreign = [p for p in out.rglob("*") if p.is_file() and p.resolve() not in ours | skip
               and not any(TMP_MARK in part for part in p.relative_to(out).parts)]
    if foreign:
        raise FdslError(f"{out} holds files no fdsl export wrote (e.g. {foreign[0].name}); "
                        "choose an empty or new output folder")
    if record.get("complete") and not overwrite:
        raise FdslError(f"{out} already holds an export; pass --overwrite to replace it")
    if check_only:
        return
    (out / RECORD_NAME).unlink(missing_ok=True)  # first: a half-removed export is unfinished
    for path in sorted(ours):
        path.unlink(missing_ok=True)
    for folder in sorted((p for p in out.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()


@dataclass(frozen=True)
class ExportResult:
    """What ``export_shards`` wrote: the folder, the format, images written, files (relative)."""

    out: Path
    to: str
    num_images: int
    files: list[str]


def export_shards(src: str | Path, to: str, out: str | Path, *, overwrite: bool = False,
                  samples_per_tar: int = 10_000, shuffle_seed: int | None = 0,
                  progress: bool = True) -> ExportResult:
    """Export the fdsl data set in ``src`` to ``out`` in format ``to`` (see the module docstring).

    ``shuffle_seed`` orders a WebDataset export (None: the data set's order). ``progress``
    reports the images written (``fdsl.progress``), and leaves the ``datasets`` library's own
    bars on; False silences both.

    Raises FdslError (one line) for an unknown format, a broken source, a folder holding other
    files, an existing export without ``overwrite``, a missing library or a full disk.
    """
    from fdsl.datasets.read.dataset import ShardDataset

    if to not in TARGETS:
        raise FdslError(f"unknown export format {to!r}; choose one of {', '.join(TARGETS)}")
    if samples_per_tar < 1:
        raise FdslError(f"samples_per_tar must be >= 1, got {samples_per_tar}")
    if shuffle_seed is not None and (isinstance(shuffle_seed, bool) or not isinstance(shuffle_seed, int)
                                     or shuffle_seed < 0):
        raise FdslError(f"shuffle_seed must be an integer >= 0 or None, got {shuffle_seed!r}")
    if to == "hf":
        targets.hf_datasets()  # fail before any work when the library is missing
    src, out = Path(src), Path(out)
    dataset = ShardDataset(src, mode=None)  # the images as stored: grey stays grey
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise FdslError(f"{out}: the export folder must be outside the data set {src}")
    check_output_folder(out)
    _prepare(out, overwrite, check_only=True)  # every refusal before the folder is made and locked
    with folder_lock(out), Progress(total=len(dataset), unit="img", disable=not progress,
                                    desc=f"export {to}") as bar:
        _prepare(out, overwrite)
        try:
            # an unfinished record first: a killed run's files are known, and a re-run clears them
            _record(out, to, src, dataset, targets.planned_files(to, dataset, samples_per_tar), False,
                    shuffle_seed)
            if to == "webdataset":
                files = targets.write_webdataset(dataset, out, samples_per_tar, bar.update, shuffle_seed)
            elif to == "imagefolder":
                files = targets.write_imagefolder(dataset, out, bar.update)
            else:  # the library's own bars only beside ours on a terminal: in a log they are noise
                files = targets.write_hf(dataset, out, bar.update,
                                         lambda names: _record(out, to, src, dataset, names, False),
                                         progress and is_terminal())
            _record(out, to, src, dataset, files, True, shuffle_seed)
        except OSError as exc:
            if is_disk_full(exc):
                raise FdslError(f"disk full writing {out} ({exc.strerror}); free some space and "
                                "run the export again") from None
            raise
    log.debug("exported %d images of %s to %s (%s)", len(dataset), src, out, to)  # the CLI prints it
    return ExportResult(out, to, len(dataset), files)
