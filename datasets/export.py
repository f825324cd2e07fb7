"""Export an fdsl data set to the formats other tools read: WebDataset, ImageFolder, Hugging Face.

``export_shards(src, to, out)`` reads any fdsl data set (HDF5 shards or a PNG tree) in order and
writes, into ``out``:

- ``webdataset``: tar shards ``shard-NNNNNN.tar``; sample ``KKKKKKKK`` (the image's index) has
  ``KKKKKKKK.png``, ``KKKKKKKK.cls`` (the label, as text) and ``KKKKKKKK.json`` (label, class
  name and every metadata field).
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

import csv
import io
import json
import logging
import os
import re
import shutil
import sys
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.atomic import (
    LOCK_NAME,
    TMP_MARK,
    check_output_folder,
    commit_file,
    folder_lock,
    is_disk_full,
    temp_path,
    write_bytes_atomic,
)
from fdsl.errors import FdslError

log = logging.getLogger(__name__)

FORMATS = ("webdataset", "imagefolder", "hf")
RECORD_NAME = "export.json"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ +-]*$")


@dataclass(frozen=True)
class ExportResult:
    """What ``export_shards`` wrote: the folder, the format, images written, files (relative)."""

    out: Path
    to: str
    num_images: int
    files: list[str]


def hf_datasets() -> Any:
    """Hugging Face's ``datasets`` module (FdslError when it is not installed).

    Run from this repository's root, ``import datasets`` would find fdsl's own ``datasets/``
    folder (it is ``fdsl.datasets`` once installed), so the path entries that hold it are hidden
    during the import.
    """
    loaded = sys.modules.get("datasets")
    if loaded is not None and hasattr(loaded, "load_from_disk"):
        return loaded
    ours = Path(__file__).resolve().parent
    saved = list(sys.path)
    sys.path[:] = [p for p in saved if Path(p or os.getcwd()).resolve() / "datasets" != ours]
    for name in [n for n in sys.modules if n == "datasets" or n.startswith("datasets.")]:
        del sys.modules[name]  # fdsl's folder, imported under the bare name
    try:
        import datasets
    except Exception as exc:  # noqa: BLE001  (a broken install fails in many ways)
        raise FdslError(f"--to hf needs the Hugging Face datasets library ({exc}); "
                        "pip install datasets") from None
    finally:
        sys.path[:] = saved
    return datasets


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 [C, H, W] image (C = 1, 3 or 4) as PNG bytes."""
    from PIL import Image

    if image.shape[0] not in (1, 3, 4):
        raise FdslError(f"PNG holds 1, 3 or 4 channels; these images have {image.shape[0]}")
    array = image[0] if image.shape[0] == 1 else np.ascontiguousarray(image.transpose(1, 2, 0))
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def _plain(value: Any) -> Any:
    """A numpy scalar as a JSON / Arrow friendly Python value (bytes fields as text)."""
    value = value.item() if isinstance(value, np.generic) else value
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def class_folders(classes: list[str]) -> list[str]:
    """One folder name per class that sorts in label order and is a safe file name."""
    reserved = {"metadata.csv", RECORD_NAME}
    if all(_SAFE_NAME.match(c) and c not in reserved for c in classes) and \
            sorted(classes) == classes and len(set(classes)) == len(classes):
        return list(classes)
    width = max(5, len(str(len(classes) - 1)))
    return [f"{k:0{width}d}-{re.sub(r'[^A-Za-z0-9._+-]+', '_', c)[:80]}" for k, c in enumerate(classes)]


def _samples(dataset: Any, batch_size: int = 256) -> Iterator[tuple[int, np.ndarray, int, dict]]:
    """(index, uint8 [C, H, W] image, label, metadata) of every image, in order."""
    from fdsl.datasets.loader import ShardLoader

    meta = dataset.metadata
    loader = ShardLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=2,
                         pin_memory=False)
    index = 0
    for images, labels in loader:
        array = images.numpy()
        for k in range(len(array)):
            yield index, array[k], int(labels[k]), {name: _plain(v[index]) for name, v in meta.items()}
            index += 1


def _tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)  # fixed mode, owner and time: the same data gives the same bytes
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def _write_webdataset(dataset: Any, out: Path, samples_per_tar: int, tick: Callable) -> list[str]:
    files: list[str] = []
    tar, tmp = None, None
    try:
        for index, image, label, meta in _samples(dataset):
            if index % samples_per_tar == 0:
                if tar is not None:
                    tar.close()
                    commit_file(tmp, out / files[-1])
                files.append(f"shard-{index // samples_per_tar:06d}.tar")
                tmp = temp_path(out / files[-1])
                tar = tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT)
            key = f"{index:08d}"
            record = {"label": label, "class": dataset.classes[label], **meta}
            _tar_member(tar, f"{key}.png", png_bytes(image))
            _tar_member(tar, f"{key}.cls", str(label).encode())
            _tar_member(tar, f"{key}.json", json.dumps(record, sort_keys=True).encode())
            tick()
        if tar is not None:
            tar.close()
            tar = None
            commit_file(tmp, out / files[-1])
    finally:
        if tar is not None:
            tar.close()
            Path(tmp).unlink(missing_ok=True)
    return files


def _write_imagefolder(dataset: Any, out: Path, tick: Callable) -> list[str]:
    folders = class_folders(list(dataset.classes))
    for name in folders:
        (out / name).mkdir(exist_ok=True)
    fields = sorted(dataset.metadata)
    rows, files = io.StringIO(), []
    table = csv.writer(rows, lineterminator="\n")
    table.writerow(["file_name", "label", "class", *fields])
    for index, image, label, meta in _samples(dataset):
        rel = f"{folders[label]}/{index:08d}.png"
        write_bytes_atomic(out / rel, png_bytes(image), sync=False)
        table.writerow([rel, label, dataset.classes[label], *(meta[f] for f in fields)])
        files.append(rel)
        tick()
    os.sync()  # one flush for the many small files written without fsync
    write_bytes_atomic(out / "metadata.csv", rows.getvalue().encode())
    return [*files, "metadata.csv"]


def _write_hf(dataset: Any, out: Path, tick: Callable, announce: Callable) -> list[str]:
    hf = hf_datasets()
    meta = dataset.metadata
    features = {"image": hf.Image(), "label": hf.ClassLabel(names=list(dataset.classes))}
    for name, values in meta.items():
        features[name] = hf.Value("string" if values.dtype.kind in "SU" else str(values.dtype))

    def rows() -> Iterator[dict]:
        for _index, image, label, fields in _samples(dataset):
            tick()
            yield {"image": {"bytes": png_bytes(image), "path": None}, "label": label, **fields}

    stage = out / f".hf{TMP_MARK}{os.getpid()}"
    try:
        table = hf.Dataset.from_generator(rows, features=hf.Features(features),
                                          cache_dir=str(stage / "cache"))
        table.save_to_disk(str(stage / "data"))
        del table
        files = sorted(p.name for p in (stage / "data").iterdir())
        announce(files)
        for name in files:
            os.replace(stage / "data" / name, out / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return files


def _record(out: Path, to: str, src: Path, dataset: Any, files: list[str], complete: bool) -> None:
    record = {"format": "fdsl-export", "to": to, "complete": complete, "source": str(src.resolve()),
              "num_images": len(dataset), "classes": list(dataset.classes),
              "metadata_fields": sorted(dataset.metadata), "files": files}
    write_bytes_atomic(out / RECORD_NAME, json.dumps(record, indent=1).encode() + b"\n")


def _planned(to: str, dataset: Any, samples_per_tar: int) -> list[str]:
    """The files an export will write, known before it starts (hf: named when they are moved)."""
    if to == "webdataset":
        return [f"shard-{k:06d}.tar" for k in range(-(-len(dataset) // samples_per_tar))]
    if to == "imagefolder":
        folders = class_folders(list(dataset.classes))
        return [f"{folders[label]}/{index:08d}.png" for index, label in enumerate(dataset.labels.tolist())] \
            + ["metadata.csv"]
    return []


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


def export_shards(src: str | Path, to: str, out: str | Path, *, overwrite: bool = False,
                  samples_per_tar: int = 10_000, progress: bool = False) -> ExportResult:
    """Export the fdsl data set in ``src`` to ``out`` in format ``to`` (see the module docstring).

    Raises FdslError (one line) for an unknown format, a broken source, a folder holding other
    files, an existing export without ``overwrite``, a missing library or a full disk.
    """
    from tqdm import tqdm

    from fdsl.datasets.loader import ShardDataset

    if to not in FORMATS:
        raise FdslError(f"unknown export format {to!r}; choose one of {', '.join(FORMATS)}")
    if samples_per_tar < 1:
        raise FdslError(f"samples_per_tar must be >= 1, got {samples_per_tar}")
    if to == "hf":
        hf_datasets()  # fail before any work when the library is missing
    src, out = Path(src), Path(out)
    dataset = ShardDataset(src)
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise FdslError(f"{out}: the export folder must be outside the data set {src}")
    check_output_folder(out)
    _prepare(out, overwrite, check_only=True)  # every refusal before the folder is made and locked
    with folder_lock(out), tqdm(total=len(dataset), unit="img", disable=not progress,
                                desc=f"export {to}") as bar:
        _prepare(out, overwrite)
        try:
            # an unfinished record first: a killed run's files are known, and a re-run clears them
            _record(out, to, src, dataset, _planned(to, dataset, samples_per_tar), False)
            if to == "webdataset":
                files = _write_webdataset(dataset, out, samples_per_tar, bar.update)
            elif to == "imagefolder":
                files = _write_imagefolder(dataset, out, bar.update)
            else:
                files = _write_hf(dataset, out, bar.update,
                                  lambda names: _record(out, to, src, dataset, names, False))
            _record(out, to, src, dataset, files, True)
        except OSError as exc:
            if is_disk_full(exc):
                raise FdslError(f"disk full writing {out} ({exc.strerror}); free some space and "
                                "run the export again") from None
            raise
    log.info("exported %d images of %s to %s (%s)", len(dataset), src, out, to)
    return ExportResult(out, to, len(dataset), files)
