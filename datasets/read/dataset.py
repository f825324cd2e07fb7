"""``ShardDataset``: a map-style torch Dataset over an fdsl data set, a drop-in for torchvision's
``ImageFolder``.

Like ImageFolder's default loader, images come in ``mode`` ``"RGB"`` by default, also from grey
sets (FractalDB, RCDB, LineDB), so stock pipelines (``Normalize`` with three means, timm's
``create_transform``) work unchanged; ``mode="L"`` keeps one channel, ``mode=None`` the stored
channels. The attributes code written for ImageFolder reads are there: ``classes``,
``class_to_idx``, ``targets``, ``samples`` / ``imgs`` and ``root``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fdsl.datasets.read._index import open_index
from fdsl.errors import FdslError

MODES = ("RGB", "L", "RGBA", None)
_PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
_CHANNELS = {"L": 1, "RGB": 3, "RGBA": 4}


class IndexTypeError(FdslError, TypeError):
    """A float, boolean or other non-integer index (a TypeError, and one line from a command)."""


def _position(i: Any) -> int:
    """``i`` as an int, never a truncated float."""
    if isinstance(i, bool | np.bool_):
        raise IndexTypeError(f"indices must be integers, not {type(i).__name__}")
    try:
        return operator.index(i)
    except TypeError:
        raise IndexTypeError(f"indices must be integers, not {type(i).__name__}") from None


def _positions(indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Integer positions as int64 [k], never truncated floats."""
    array = np.asarray(indices)
    if array.size and array.dtype.kind not in "iu":
        raise IndexTypeError(f"indices must be integers, got {array.dtype} values")
    return array.astype(np.int64).reshape(-1)


def pil_image(image: torch.Tensor, mode: str | None = None):
    """A uint8 [C, H, W] tensor as a PIL image, converted to ``mode`` (None: as stored) as
    PIL's ``convert`` does (grey to RGB repeats the channel, RGB to L takes the ITU-R 601 luma)."""
    from PIL import Image

    stored = _PIL_MODES.get(image.shape[0])
    if stored is None:
        raise FdslError(f"no PIL mode for {image.shape[0]}-channel images; read them without "
                        "a transform and with mode=None")
    array = image.numpy()
    pil = Image.fromarray(array[0] if stored == "L" else np.ascontiguousarray(array.transpose(1, 2, 0)),
                          stored)
    return pil if mode is None or mode == stored else pil.convert(mode)


def to_mode(image: torch.Tensor, mode: str | None) -> torch.Tensor:
    """A uint8 [C, H, W] tensor in ``mode``'s channels (the pixels ``pil_image`` would give)."""
    if mode is None or image.shape[0] == _CHANNELS[mode]:
        return image
    if image.shape[0] == 1 and mode == "RGB":
        return image.expand(3, -1, -1).contiguous()  # what PIL's L -> RGB gives, without PIL
    array = np.array(pil_image(image, mode))  # a writable copy, as torch wants
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array))


class ShardDataset(torch.utils.data.Dataset):
    """A map-style torch Dataset over an fdsl data set folder (HDF5 shards or a PNG tree; see
    docs/FORMAT.md), ImageFolder-style.

    ``ds[i]`` is ``(image, label)``. Without ``transform`` the image is a uint8 tensor
    [C, H, W] in ``mode`` (C = 3 for ``RGB``, 1 for ``L``, as stored for None); with one, like
    torchvision's ImageFolder, the transform gets a PIL image in ``mode`` and its result is
    returned. ``target_transform`` maps the int label. ``ds.labels`` (int64 [N]), ``ds.targets``
    (the same as a list), ``ds.classes`` (names, index = label), ``ds.class_to_idx`` and
    ``ds.metadata`` (name -> [N] array, every per-image field) are read at open; images are read
    on demand. ``ds.samples`` (= ``ds.imgs``) lists ``(locator, label)`` per image: the PNG file
    of a PNG tree, ``SHARD.h5:ROW`` in an HDF5 set (a row of a file, not a path to open);
    ``ds.root`` is the folder. Files are opened lazily in each process, so the data set is safe
    to send to fork- or spawn-started DataLoader workers. ``ShardLoader(ds)`` reads whole
    batches and applies the transforms when there are any (see ShardLoader).

    Args:
        path: the data set folder (with manifest.json).
        transform: called on each PIL image by ``ds[i]``.
        target_transform: called on each label by ``ds[i]``.
        verify: also check every shard's sha256 at open (sizes are always checked).
        mode: ``RGB`` (default, as ImageFolder), ``L``, ``RGBA`` or None (the stored channels).

    Raises ShardError (one line naming the file) for a missing manifest or shard, an incomplete
    data set, a truncated file or, with ``verify``, a checksum mismatch; FdslError for an unknown
    mode.
    """

    def __init__(self, path: str | Path, transform: Callable | None = None,
                 target_transform: Callable | None = None, verify: bool = False,
                 mode: str | None = "RGB") -> None:
        if mode not in MODES:
            raise FdslError(f"unknown mode {mode!r}; choose one of RGB, L, RGBA or None (as stored)")
        self._index = open_index(path, verify)
        self._rows: np.ndarray | None = None
        self.transform, self.target_transform, self.mode = transform, target_transform, mode

    def _view(self, rows: np.ndarray | None) -> ShardDataset:
        """A view of global ``rows`` (None: all) with this data set's transforms and mode."""
        view = ShardDataset.__new__(type(self))
        view._index, view._rows = self._index, rows
        view.transform, view.target_transform, view.mode = self.transform, self.target_transform, self.mode
        return view

    @property
    def folder(self) -> Path:
        return self._index.folder

    @property
    def root(self) -> str:
        """The data set folder, as ImageFolder's ``root``."""
        return str(self._index.folder)

    @property
    def classes(self) -> list[str]:
        return self._index.classes

    @property
    def class_to_idx(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self._index.classes)}

    @property
    def stored_shape(self) -> tuple[int, ...]:
        """Shape of one image as stored, and as ShardLoader batches it: (C, H, W)."""
        shape = self._index.image_shape
        return (1, *shape) if len(shape) == 2 else (shape[2], shape[0], shape[1])

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one image ``ds[i]`` returns without a transform: (C, H, W) in ``mode``."""
        channels, height, width = self.stored_shape
        return (_CHANNELS[self.mode] if self.mode else channels, height, width)

    @property
    def stored_bytes(self) -> int:
        """Bytes on disk of this view's images (estimated from the whole data set's)."""
        total = len(self._index.labels)
        return self._index.stored_bytes * len(self) // total if total else 0

    @property
    def rows(self) -> np.ndarray:
        """The global row (position in the full data set) of each of this view's items."""
        return np.arange(len(self._index.labels)) if self._rows is None else self._rows

    @property
    def labels(self) -> np.ndarray:
        return self._index.labels if self._rows is None else self._index.labels[self._rows]

    @property
    def targets(self) -> list[int]:
        """The labels as a list of ints, as torchvision's ImageFolder has them."""
        return self.labels.tolist()

    @property
    def samples(self) -> list[tuple[str, int]]:
        """``(locator, label)`` of every item, as ImageFolder's ``samples`` (see the class doc)."""
        names, root = self._index.sample_names(), self._index.folder
        return [(str(root / names[row]), int(label))
                for row, label in zip(self.rows.tolist(), self.labels.tolist(), strict=True)]

    @property
    def imgs(self) -> list[tuple[str, int]]:
        """The same as ``samples`` (ImageFolder keeps both names)."""
        return self.samples

    @property
    def metadata(self) -> dict[str, np.ndarray]:
        if self._rows is None:
            return dict(self._index.metadata)
        return {k: v[self._rows] for k, v in self._index.metadata.items()}

    def __len__(self) -> int:
        return len(self._index.labels) if self._rows is None else len(self._rows)

    def subset(self, indices: Sequence[int] | np.ndarray) -> ShardDataset:
        """A view of items ``indices`` (integer positions in this data set), same interface,
        transforms and mode; IndexTypeError for non-integer indices, IndexError out of range."""
        positions = _positions(indices)
        if positions.size and (positions.min() < -len(self) or positions.max() >= len(self)):
            raise IndexError(f"subset index out of range for a data set of {len(self)} items")
        positions = positions % max(len(self), 1)
        return self._view(self.rows[positions])

    def _row(self, i: Any) -> int:
        i, n = _position(i), len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for a data set of {n} items")
        i %= n
        return i if self._rows is None else int(self._rows[i])

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        row = self._row(i)
        out = torch.empty(self.stored_shape, dtype=torch.uint8)
        self._read_into([row], out.numpy()[None])
        return self.item(out, int(self._index.labels[row]))

    def item(self, image: torch.Tensor, label: int) -> tuple[Any, Any]:
        """``(image, label)`` as ``ds[i]`` returns them, from a stored uint8 [C, H, W] image and
        its label: in ``mode``, through ``transform`` and ``target_transform``."""
        out: Any = to_mode(image, self.mode) if self.transform is None else \
            self.transform(pil_image(image, self.mode))
        return out, (label if self.target_transform is None else self.target_transform(label))

    @property
    def has_transforms(self) -> bool:
        return self.transform is not None or self.target_transform is not None

    def _read_into(self, rows: Sequence[int] | np.ndarray, out: np.ndarray) -> None:
        """Read global ``rows`` into ``out``: uint8 [len(rows), C, H, W] as stored."""
        self._index.images.read_rows(np.asarray(rows, np.int64), out)
