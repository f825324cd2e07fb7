"""Training data: shard folders or ImageFolder trees, held-out splits, rank-aware batch loaders.

A data folder is either an fdsl shard data set (``manifest.json``; read with ShardLoader) or an
ImageFolder tree (one sub-folder per class holding images, as users keep Oxford-IIIT Pet or
CUB-200-2011); ``gen:FOLDER`` names a generated data set whose images are made as training reads
them (``fdsl.generators.onthefly``; FOLDER may hold only its manifest and ``classes.npz``). Both give uint8 batches [B, C, H, W] of one fixed size; everything else happens on
the training device (see ``fdsl.train.augment``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from fdsl.errors import FdslError
from fdsl.imaging import resize_center_crop
from fdsl.train.dataarg import generated_folder

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
IMAGEFOLDER_RESIZE_RATIO = 256 / 224  # short side of decoded images relative to the crop size


class ImageFolderDataset(torch.utils.data.Dataset):
    """Images in ``root/<class>/<file>``, decoded to RGB, short side resized to ``side`` and centre
    cropped square: ``ds[i] -> (uint8 tensor [3, side, side], label)``. Classes are the sorted
    sub-folder names; files are sorted, so indices are stable across machines."""

    def __init__(self, root: str | Path, side: int) -> None:
        self.root, self.side = Path(root), side
        self.classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        files, labels = [], []
        for label, name in enumerate(self.classes):
            found = sorted(p for p in (self.root / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            files += found
            labels += [label] * len(found)
        if not files:
            raise FdslError(f"{self.root}: no images in class sub-folders (expected ImageFolder layout "
                            "root/<class>/<image>, or a shard folder with manifest.json)")
        self.files = files
        self.labels = np.asarray(labels, np.int64)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, self.side, self.side)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path = self.files[i]
        try:
            with Image.open(path) as img:
                array = resize_center_crop(img, self.side)
        except (OSError, UnidentifiedImageError) as exc:
            raise FdslError(f"cannot read image {path}: {exc}") from None
        return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous(), int(self.labels[i])


def _stack(batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([b[0] for b in batch]), torch.tensor([b[1] for b in batch], dtype=torch.int64)


class _WholeBatches(torch.utils.data.Dataset):
    """Batch k of a data set that makes whole batches (``make_batch(indices)``), for the workers."""

    def __init__(self, dataset: Any, batches: list[list[int]]) -> None:
        self.dataset, self.batches = dataset, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dataset.make_batch(self.batches[k])


class MapLoader:
    """ShardLoader's contract for any map-style data set (used for ImageFolder trees).

    Same per-epoch order (``fdsl.datasets.read.sampler``: seeded by (seed, epoch), padded to equal
    length per rank) and the same batches whatever ``num_workers``.
    """

    def __init__(self, dataset: torch.utils.data.Dataset, batch_size: int, shuffle: bool,
                 num_workers: int, seed: int, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False, indices: Sequence[int] | np.ndarray | None = None) -> None:
        self.dataset = dataset
        self.indices = np.arange(len(dataset)) if indices is None else np.asarray(indices, np.int64)
        self.batch_size, self.shuffle, self.num_workers = batch_size, shuffle, num_workers
        self.seed, self.rank, self.world_size, self.drop_last = seed, rank, world_size, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _batches(self) -> list[list[int]]:
        from fdsl.datasets.read import sampler

        positions = sampler.rank_positions(len(self.indices), shuffle=self.shuffle, seed=self.seed,
                                           epoch=self.epoch, rank=self.rank, world_size=self.world_size)
        return [self.indices[b].tolist() for b in
                sampler.split_batches(positions, self.batch_size, self.drop_last)]

    def __len__(self) -> int:
        from fdsl.datasets.read import sampler

        return sampler.num_batches(len(self.indices), self.batch_size, self.drop_last, self.world_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # A data set that makes whole batches on the training device (gen:FOLDER on CUDA) does so;
        # anything else is read by DataLoader workers (which pick up the data set's epoch).
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)
        batches = self._batches()
        made = getattr(self.dataset, "device_batches", lambda *_: None)(batches, self.epoch)
        if made is not None:
            return made
        # A private generator keeps the DataLoader from drawing on torch's global RNG, whose
        # state belongs to augmentation and is saved in checkpoints.
        settings = dict(num_workers=self.num_workers, generator=torch.Generator().manual_seed(self.seed),
                        pin_memory=torch.cuda.is_available())
        if hasattr(self.dataset, "make_batch"):  # whole batches in the workers: no per-image collation
            return iter(torch.utils.data.DataLoader(_WholeBatches(self.dataset, batches), batch_size=None,
                                                    **settings))
        return iter(torch.utils.data.DataLoader(self.dataset, batch_sampler=batches, collate_fn=_stack,
                                                **settings))


@dataclass
class DataSource:
    """An opened data folder: the data set, its class names and labels, and how to batch it."""

    path: Path
    kind: str  # "shards", "imagefolder" or "generated"
    dataset: Any
    classes: list[str]
    labels: np.ndarray  # int64 [N]
    native_side: int  # short side of the stored images

    def loader(self, indices: np.ndarray, *, batch_size: int, shuffle: bool, workers: int,
               seed: int, rank: int = 0, world_size: int = 1, drop_last: bool = False,
               device: torch.device | None = None, fresh_instances: bool = False) -> Any:
        """A ShardLoader/MapLoader over ``indices`` for this rank (a generated set: made on
        ``device`` when it is CUDA, with new instances every epoch if ``fresh_instances``)."""
        dataset = self.training_dataset(device, fresh_instances)
        if self.kind == "shards":
            from fdsl.datasets import ShardLoader

            return ShardLoader(self.dataset, batch_size=batch_size, shuffle=shuffle,
                               num_workers=workers, seed=seed, rank=rank, world_size=world_size,
                               drop_last=drop_last, indices=indices)
        return MapLoader(dataset, batch_size, shuffle, workers, seed, rank, world_size, drop_last, indices)


    def training_dataset(self, device: torch.device | None, fresh_instances: bool) -> Any:
        """The data set a training loader reads (a generated set's view for ``device``)."""
        if self.kind != "generated":
            if fresh_instances:
                raise FdslError(f"--fresh-instances needs generated data (--data gen:FOLDER), not {self.path}")
            return self.dataset
        from fdsl.generators.onthefly import training_view

        return training_view(self.dataset, device, fresh_instances)


def open_data(path: str | Path, image_size: int, resize_ratio: float | None) -> DataSource:
    """Open a shard folder, an ImageFolder tree or ``gen:FOLDER``; FdslError (one line) otherwise."""
    folder = generated_folder(path)
    if folder is not None:
        if not folder.is_dir():
            raise FdslError(f"data folder {folder} does not exist")
        from fdsl.generators.onthefly import OnTheFlyDataset

        made = OnTheFlyDataset(folder, mode=None)
        return DataSource(folder, "generated", made, made.classes, made.labels, min(made.image_shape[1:]))
    path = Path(path)
    if not path.is_dir():
        raise FdslError(f"data folder {path} does not exist")
    if (path / "manifest.json").is_file():
        from fdsl.datasets import ShardDataset

        dataset = ShardDataset(path)
        if len(dataset) == 0:
            raise FdslError(f"{path}: the data set holds no images")
        side = min(dataset.image_shape[1:])
        return DataSource(path, "shards", dataset, list(dataset.classes), np.asarray(dataset.labels),
                          side)
    side = round(image_size * (resize_ratio or IMAGEFOLDER_RESIZE_RATIO))
    dataset = ImageFolderDataset(path, side)
    return DataSource(path, "imagefolder", dataset, dataset.classes, dataset.labels, side)


def split_indices(labels: np.ndarray, fraction: float, seed: int,
                  groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A stratified held-out split: (train positions, val positions), both sorted int64.

    Each class gives round(fraction * n_c) of its units (at least 1 when it has 2+ units and
    fraction > 0), chosen by a permutation seeded with (seed, class): the same split on every
    machine. Units are images, or with ``groups`` ([N], e.g. the model id of each rendered view)
    whole groups, so no group has images on both sides.
    """
    train, val = [], []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        units, unit_of = (np.arange(len(members)), np.arange(len(members))) if groups is None else \
            np.unique(groups[members], return_inverse=True)
        count = round(fraction * len(units))
        if fraction > 0 and len(units) > 1:
            count = min(max(count, 1), len(units) - 1)
        order = np.random.default_rng([seed, 0x5EED, int(label)]).permutation(len(units))
        held = np.isin(unit_of, order[:count])
        val.append(members[held])
        train.append(members[~held])
    return np.sort(np.concatenate(train)).astype(np.int64), np.sort(np.concatenate(val)).astype(np.int64)
