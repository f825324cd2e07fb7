"""The three export targets, each a writer of samples read from a ShardDataset:
WebDataset tars, an ImageFolder tree with metadata.csv, a Hugging Face ``datasets`` folder (see
``export.py`` for what each holds). ``planned_files`` names what a target will write, before it
starts."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.atomic import TMP_MARK, commit_file, temp_path, write_bytes_atomic
from fdsl.errors import FdslError

TARGETS = ("webdataset", "imagefolder", "hf")
RECORD_NAME = "export.json"
ORDER_NAME = "order.json"  # WebDataset: the image index of every sample, in the order written
_TAG_ORDER = 0x5744  # stream tag of the WebDataset order's generator
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ +-]*$")


def hf_datasets() -> Any:
    """Hugging Face's ``datasets`` module (FdslError when it is not installed).

    Run from this repository's root, ``import datasets`` would find fdsl's own ``datasets/``
    folder (it is ``fdsl.datasets`` once installed), so the path entries that hold it are hidden
    during the import.
    """
    loaded = sys.modules.get("datasets")
    if loaded is not None and hasattr(loaded, "load_from_disk"):
        return loaded
    ours = Path(__file__).resolve().parents[1]  # fdsl's datasets/ folder
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


def sample_order(count: int, seed: int | None) -> np.ndarray:
    """The image indices in the order a WebDataset export writes them: a permutation seeded by
    ``seed`` (the same on every machine), or the data set's order for None. int64 [count]."""
    if seed is None:
        return np.arange(count, dtype=np.int64)
    return np.random.default_rng([seed, _TAG_ORDER]).permutation(count).astype(np.int64)


def _samples(dataset: Any, order: np.ndarray | None = None,
             batch_size: int = 256) -> Iterator[tuple[int, np.ndarray, int, dict]]:
    """(index, uint8 [C, H, W] image, label, metadata) of every image, in ``order`` (image
    indices; None: the data set's order)."""
    from fdsl.datasets.read.loader import ShardLoader

    meta = dataset.metadata
    order = np.arange(len(dataset), dtype=np.int64) if order is None else order
    loader = ShardLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=2,
                         pin_memory=False, indices=order)
    position = 0
    for images, labels in loader:
        array = images.numpy()
        for k in range(len(array)):
            index = int(order[position])
            yield index, array[k], int(labels[k]), {name: _plain(v[index]) for name, v in meta.items()}
            position += 1


def _tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)  # fixed mode, owner and time: the same data gives the same bytes
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def write_webdataset(dataset: Any, out: Path, samples_per_tar: int, tick: Callable,
                     seed: int | None = 0) -> list[str]:
    """Tars of ``samples_per_tar`` samples in ``sample_order(seed)``, so that shard shuffling
    with a small buffer still mixes the classes; ``order.json`` records that order."""
    order = sample_order(len(dataset), seed)
    write_bytes_atomic(out / ORDER_NAME, json.dumps({"seed": seed, "indices": order.tolist()}).encode() + b"\n")
    files: list[str] = []
    tar, tmp = None, None
    try:
        for position, (index, image, label, meta) in enumerate(_samples(dataset, order)):
            if position % samples_per_tar == 0:
                if tar is not None:
                    tar.close()
                    commit_file(tmp, out / files[-1])
                files.append(f"shard-{position // samples_per_tar:06d}.tar")
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
    return [*files, ORDER_NAME]


def write_imagefolder(dataset: Any, out: Path, tick: Callable) -> list[str]:
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


def write_hf(dataset: Any, out: Path, tick: Callable, announce: Callable, progress: bool = True) -> list[str]:
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
    bars = hf.is_progress_bar_enabled()
    if not progress:
        hf.disable_progress_bars()  # the library's own "Generating" and "Saving" bars
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
        if bars and not progress:
            hf.enable_progress_bars()
    return files


def planned_files(to: str, dataset: Any, samples_per_tar: int) -> list[str]:
    """The files an export will write, known before it starts (hf: named when they are moved)."""
    if to == "webdataset":
        return [f"shard-{k:06d}.tar" for k in range(-(-len(dataset) // samples_per_tar))] + [ORDER_NAME]
    if to == "imagefolder":
        folders = class_folders(list(dataset.classes))
        return [f"{folders[label]}/{index:08d}.png" for index, label in enumerate(dataset.labels.tolist())] \
            + ["metadata.csv"]
    return []
