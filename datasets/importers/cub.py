"""Import CUB-200-2011 (Wah et al., 2011) into fdsl shards, with per-image metadata (``import_cub``;
the ``import-cub`` command is ``cli.py``).

Reads the official ``CUB_200_2011`` folder: ``images.txt`` (id, path), ``image_class_labels.txt``
(id, 1-based class), ``classes.txt`` (id, name), ``train_test_split.txt`` (id, is_train),
``parts/part_locs.txt`` (image id, part id, x, y, visible) and, when present,
``bounding_boxes.txt`` (id, x, y, width, height). Items are the images of the chosen split in
image-id order; label ``c - 1`` is class ``c``.

Class names are the full folder names of ``classes.txt`` (``001.Black_footed_Albatross``), so the
names, their sorted order and a ``--format png`` tree (``<class>/<image stem>.png``) all match an
ImageFolder view of ``CUB_200_2011/images``.

Each image is decoded to RGB, resized so the short side is ``image_size`` (bilinear) and centre
cropped to ``image_size`` x ``image_size``, exactly as ``fdsl.train.data.ImageFolderDataset`` does.
Per-image metadata: ``image_id`` (int32), ``is_train`` (int8), ``visible_parts`` (int16, how many
of the 15 parts are visible), ``orig_width``, ``orig_height`` (int32) and, with bounding boxes,
``bbox_x``, ``bbox_y``, ``bbox_w``, ``bbox_h`` (float32, original pixels). An image that cannot be
decoded is skipped and recorded in ``failures.jsonl`` as ``{"image_id", "path", "reason"}``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fdsl.datasets.builder.build import BuildResult
from fdsl.datasets.builder.cli import build_from_options
from fdsl.errors import FdslError
from fdsl.imaging import resize_center_crop
from fdsl.sources import RenderedBatch

log = logging.getLogger(__name__)

NAME = "cub-200-2011"
VERSION = "1"
SPLITS = ("train", "test", "all")
DEFAULT_IMAGE_SIZE = 256
DEFAULT_SHARD_SIZE = 2_000  # about 390 MB of 256 px RGB held per worker
MAX_IMAGE_SIZE = 4096
REQUIRED_FILES = ("images.txt", "image_class_labels.txt", "classes.txt", "train_test_split.txt",
                  "parts/part_locs.txt")
BBOX_FILE = "bounding_boxes.txt"
BBOX_FIELDS = ("bbox_x", "bbox_y", "bbox_w", "bbox_h")
_FIELD_DTYPES: dict[str, Any] = {"image_id": np.int32, "is_train": np.int8, "visible_parts": np.int16,
                                 "orig_width": np.int32, "orig_height": np.int32}


# --------------------------------------------------------------------------- metadata files


def find_root(root: str | Path) -> Path:
    """The ``CUB_200_2011`` folder: ``root`` itself, or ``root/CUB_200_2011`` (the archive's top
    folder). FdslError (one line) when ``root`` is missing or lacks a metadata file."""
    root = Path(root)
    if not root.is_dir():
        raise FdslError(f"CUB root {root}: no such folder")
    if not (root / "images.txt").exists() and (root / "CUB_200_2011" / "images.txt").is_file():
        root = root / "CUB_200_2011"
    for name in REQUIRED_FILES:
        if not (root / name).is_file():
            raise FdslError(f"{root / name}: missing; --root must be the CUB_200_2011 folder "
                            f"(with {', '.join(REQUIRED_FILES)})")
    return root


def _rows(path: Path, columns: int) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank line of a whitespace-separated table; the last
    column takes the rest of the line (paths and names never hold spaces, but be lenient)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FdslError(f"{path}: cannot read ({exc})") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split(None, columns - 1)
        if len(fields) != columns:
            raise FdslError(f"{path}:{number}: expected {columns} columns, got {line.strip()!r}")
        rows.append((number, fields))
    return rows


def _number(path: Path, number: int, text: str, kind: type = int) -> Any:
    """``text`` as ``kind`` (int accepts an integral float such as ``1.0``); FdslError naming the line."""
    try:
        if kind is int:
            value = float(text)
            if value != int(value):
                raise ValueError(text)
            return int(value)
        return kind(text)
    except (ValueError, OverflowError):
        raise FdslError(f"{path}:{number}: expected {'an integer' if kind is int else 'a number'}, "
                        f"got {text!r}") from None


def _id_table(path: Path, columns: int, kinds: Sequence[type]) -> dict[int, tuple[Any, ...]]:
    """``{id: values}`` of a table whose first column is a unique integer id."""
    table: dict[int, tuple[Any, ...]] = {}
    for number, fields in _rows(path, columns):
        key = _number(path, number, fields[0])
        if key in table:
            raise FdslError(f"{path}:{number}: id {key} appears twice")
        table[key] = tuple(v if k is str else _number(path, number, v, k)
                           for v, k in zip(fields[1:], kinds, strict=True))
    return table


def _visible_parts(path: Path) -> dict[int, int]:
    """Visible parts per image id, from ``parts/part_locs.txt`` (img, part, x, y, visible)."""
    counts: dict[int, int] = {}
    for number, fields in _rows(path, 5):
        image_id, visible = _number(path, number, fields[0]), _number(path, number, fields[4])
        if visible not in (0, 1):
            raise FdslError(f"{path}:{number}: visible must be 0 or 1, got {fields[4]!r}")
        counts[image_id] = counts.get(image_id, 0) + visible
    return counts


@dataclass(frozen=True)
class CubIndex:
    """The selected images, in image-id order: paths relative to ``images/`` and per-image
    arrays (``labels`` int64 and every metadata field but the original size)."""

    classes: list[str]
    paths: list[str]
    labels: np.ndarray
    fields: dict[str, np.ndarray]


def read_index(root: Path, split: str = "train", classes: int | None = None) -> CubIndex:
    """Read the metadata files of the CUB folder ``root`` (see ``find_root``) and select the
    images of ``split`` (train, test or all) in the first ``classes`` classes (None: all)."""
    if split not in SPLITS:
        raise FdslError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    names = _id_table(root / "classes.txt", 2, (str,))
    ids = sorted(names)
    if ids != list(range(1, len(ids) + 1)):
        raise FdslError(f"{root / 'classes.txt'}: class ids must be 1..{len(ids)}")
    if classes is not None:
        if classes <= 0:
            raise FdslError(f"--classes must be positive, got {classes}")
        if classes > len(ids):
            raise FdslError(f"--classes {classes}: {root / 'classes.txt'} lists only {len(ids)} classes")
        ids = ids[:classes]
    class_names = [names[c][0] for c in ids]
    images = _id_table(root / "images.txt", 2, (str,))
    tables = {name: _id_table(root / name, 2, (int,))
              for name in ("image_class_labels.txt", "train_test_split.txt")}
    boxes = _id_table(root / BBOX_FILE, 5, (float,) * 4) if (root / BBOX_FILE).is_file() else None
    visible = _visible_parts(root / "parts" / "part_locs.txt")

    per_image: dict[str, Mapping[int, Any]] = {**tables, "parts/part_locs.txt": visible}
    if boxes is not None:
        per_image[BBOX_FILE] = boxes
    paths, rows = [], []
    for image_id in sorted(images):
        for name, table in per_image.items():
            if image_id not in table:
                raise FdslError(f"{root / name}: no line for image {image_id} of images.txt")
        (label,), (is_train,) = tables["image_class_labels.txt"][image_id], tables["train_test_split.txt"][image_id]
        if not 1 <= label <= len(names):
            raise FdslError(f"{root / 'image_class_labels.txt'}: image {image_id} has class {label}, "
                            f"not in classes.txt")
        if is_train not in (0, 1):
            raise FdslError(f"{root / 'train_test_split.txt'}: image {image_id} has is_train {is_train}, not 0 or 1")
        if label > len(ids) or (split == "train" and not is_train) or (split == "test" and is_train):
            continue
        paths.append(images[image_id][0])
        rows.append((image_id, label - 1, is_train, visible[image_id], *(boxes[image_id] if boxes is not None else ())))
    table = np.array(rows, dtype=np.float64).reshape(len(rows), 4 + (len(BBOX_FIELDS) if boxes is not None else 0))
    fields = {"image_id": table[:, 0].astype(np.int32), "is_train": table[:, 2].astype(np.int8),
              "visible_parts": table[:, 3].astype(np.int16)}
    if boxes is not None:
        fields.update({name: table[:, 4 + k].astype(np.float32) for k, name in enumerate(BBOX_FIELDS)})
    return CubIndex(class_names, paths, table[:, 1].astype(np.int64), fields)


# --------------------------------------------------------------------------- source


def load_image(path: Path, size: int) -> tuple[np.ndarray, int, int]:
    """(uint8 [size, size, 3], original width, original height): RGB, short side resized to
    ``size`` (bilinear), centre crop. Raises OSError/ValueError for an unreadable image."""
    with Image.open(path) as img:
        width, height = img.size
        return resize_center_crop(img, size), width, height


class CubSource:
    """ShardSource over a CUB-200-2011 folder; item ``i`` is the ``i``-th selected image."""

    name = NAME
    version = VERSION

    def __init__(self, root: str | Path, *, split: str = "train", image_size: int = DEFAULT_IMAGE_SIZE,
                 classes: int | None = None) -> None:
        if not 0 < image_size <= MAX_IMAGE_SIZE:
            raise FdslError(f"--image-size must be between 1 and {MAX_IMAGE_SIZE} pixels, got {image_size}")
        self.root = find_root(root)
        self.split, self.image_size, self.classes = split, image_size, classes
        self.index = read_index(self.root, split, classes)
        if not self.index.paths:
            raise FdslError(f"{self.root}: no {split} images in the selected classes")
        log.info("CUB-200-2011 %s split: %d images in %d classes", split, len(self.index.paths),
                 len(self.index.classes))

    def listing_sha256(self) -> str:
        """Hash of the selected images' paths, labels and metadata (what the files said)."""
        digest = hashlib.sha256()
        digest.update("\n".join(self.index.paths).encode())
        digest.update(self.index.labels.tobytes())
        for name in sorted(self.index.fields):
            digest.update(name.encode() + self.index.fields[name].tobytes())
        return digest.hexdigest()

    def config(self) -> dict[str, Any]:
        return {"dataset": "CUB-200-2011", "split": self.split, "classes": len(self.index.classes),
                "image_size": self.image_size, "images": len(self.index.paths),
                "resize": "short side to image_size (bilinear), centre crop",
                "bounding_boxes": BBOX_FIELDS[0] in self.index.fields,
                "listing_sha256": self.listing_sha256()}

    def class_names(self) -> list[str]:
        return list(self.index.classes)

    def num_items(self) -> int:
        return len(self.index.paths)

    def image_shape(self) -> tuple[int, ...]:
        return (self.image_size, self.image_size, 3)

    def _field_dtypes(self) -> dict[str, Any]:
        dtypes = dict(_FIELD_DTYPES)
        if BBOX_FIELDS[0] in self.index.fields:
            dtypes.update({name: np.float32 for name in BBOX_FIELDS})
        return dtypes

    def render(self, start: int, stop: int) -> RenderedBatch:
        size = self.image_size
        images = np.empty((stop - start, size, size, 3), np.uint8)
        kept: list[int] = []
        sizes: list[tuple[int, int]] = []
        failures: list[dict[str, Any]] = []
        for item in range(start, stop):
            rel = self.index.paths[item]
            try:
                images[len(kept)], width, height = load_image(self.root / "images" / rel, size)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                image_id = int(self.index.fields["image_id"][item])
                reason = f"unreadable image: {type(exc).__name__}: {exc}"
                failures.append({"image_id": image_id, "path": f"images/{rel}", "reason": reason})
                log.warning("skipping image %d (%s): %s", image_id, rel, reason)
                continue
            kept.append(item)
            sizes.append((width, height))
        items = np.asarray(kept, np.int64)
        dims = np.asarray(sizes, np.int32).reshape(-1, 2)
        fields = {name: values[items] for name, values in self.index.fields.items()}
        fields["orig_width"], fields["orig_height"] = dims[:, 0].copy(), dims[:, 1].copy()
        meta = {name: fields[name].astype(dtype) for name, dtype in self._field_dtypes().items()}
        return RenderedBatch(images[:len(kept)], self.index.labels[items], meta, items, failures)

    def png_path(self, label: int, metadata: Mapping[str, Any], item: int) -> str:
        return f"{self.index.classes[label]}/{Path(self.index.paths[item]).stem}.png"

    def extra_files(self) -> dict[str, bytes]:
        lines = ["item\timage_id\tlabel\tclass\tpath\tis_train\tvisible_parts"]
        f = self.index.fields
        lines += [f"{i}\t{f['image_id'][i]}\t{label}\t{self.index.classes[label]}\t{path}\t{f['is_train'][i]}\t"
                  f"{f['visible_parts'][i]}" for i, (path, label) in enumerate(zip(self.index.paths, self.index.labels, strict=True))]
        return {"images.tsv": ("\n".join(lines) + "\n").encode()}


# --------------------------------------------------------------------------- import


def import_cub(
    root: str | Path,
    out: str | Path,
    *,
    split: str = "train",
    image_size: int = DEFAULT_IMAGE_SIZE,
    classes: int | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    **build: Any,
) -> BuildResult:
    """Import the ``split`` (train, test or all) of the CUB-200-2011 folder ``root`` into ``out``.

    ``classes`` keeps the first N classes (None: all 200). Images are ``image_size`` square RGB
    (short side resized, centre crop) with the metadata listed in the module docstring. ``build``
    holds the shared builder settings (``workers``, ``backend``, ``compression``, ``fmt``:
    ``png`` writes an ImageFolder tree with metadata.csv instead of HDF5 shards, ``overwrite``).
    Unreadable images are skipped and listed in ``out/failures.jsonl``. Re-running the same call
    resumes. Raises FdslError (one line) for a missing folder or metadata file, a malformed file
    or a bad setting.
    """
    source = CubSource(root, split=split, image_size=image_size, classes=classes)
    return build_from_options(source, out, strict=True, shard_size=shard_size, **build)
