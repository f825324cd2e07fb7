"""A generated data set read as a torch Dataset whose images are made when read: no shards needed.

``OnTheFlyDataset(folder)`` takes everything from a ``gen-fractal`` folder (a full data set, or one
written with ``--params-only``: its manifest and ``classes.npz``): the generator, its classes, the
images per class, the image size, the seed. ``ds[i]`` is image ``i`` exactly as the shards hold it
(``fdsl.generators.device``), made on the CPU, or on a GPU with ``device="cuda"``.

Epochs and instances: by default every epoch shows the same images, the data set's. With
``fresh_instances`` epoch ``e`` (``set_epoch(e)``, counting from 0) draws its images with the seed
``epoch_seed(seed, e)``: epoch 0 is the data set itself, every later epoch new instances of the
same classes (new chaos-game points and patches, new views, new contours and lines; the class
parameters stay), each image still fixed by (seed, epoch, index) whatever the workers or devices.

Training reads it through ``train-classifier --data gen:FOLDER`` (``fdsl.train.data``): on a CUDA
device whole batches are made on the device (``device_batches``), elsewhere DataLoader workers make
them with the CPU kernels (``__getitems__``, a batch per call).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fdsl.errors import FdslError

log = logging.getLogger(__name__)
PIL_MODES = ("RGB", "L")


def epoch_seed(seed: int, epoch: int) -> int:
    """The generator seed of ``epoch``: ``seed`` itself for epoch 0, a derived one after."""
    if epoch == 0:
        return seed
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint32)[0])


def data_folder(path: str | Path) -> Path:
    """The data set folder ``path`` names: the folder itself, or the folder of its classes.npz."""
    path = Path(path)
    return path.parent if path.is_file() and path.suffix == ".npz" else path


class OnTheFlyDataset(torch.utils.data.Dataset):
    """The images of a generated data set, made when they are read (ImageFolder-like).

    ``ds[i]`` is ``(image, label)``: without ``transform`` the image is a uint8 tensor [C, H, W]
    (C = 1 for grey sets, on ``device``), with one the transform gets a PIL image in ``mode``
    (``"RGB"`` by default, like ImageFolder's loader; ``"L"`` keeps grey sets one channel, None the
    set's own) and its result is returned. ``target_transform`` maps the int label. Attributes:
    ``classes``, ``class_to_idx``, ``targets`` (list), ``labels`` (int64 [N]), ``root``,
    ``image_shape`` (C, H, W), ``seed``.

    Args:
        folder: a gen-fractal folder (or its classes.npz).
        transform, target_transform: as torchvision's data sets.
        mode: PIL mode handed to ``transform``.
        device: "cpu", or "cuda[:N]" for the GPU kernels.
        fresh_instances: new instances every epoch (see the module docstring); ``set_epoch``.

    Raises FdslError (one line) for a folder without a generated data set, a bad mode or device.
    """

    def __init__(self, folder: str | Path, transform: Callable | None = None,
                 target_transform: Callable | None = None, *, mode: str | None = "RGB",
                 device: str | torch.device = "cpu", fresh_instances: bool = False) -> None:
        from fdsl.generators.device import ImageMaker
        from fdsl.generators.rebuild import source_from_folder

        if mode is not None and mode not in PIL_MODES:
            raise FdslError(f"mode must be one of {', '.join(PIL_MODES)} or None, got {mode!r}")
        self.root = data_folder(folder)
        self.maker = ImageMaker(source_from_folder(self.root), device)
        self.transform, self.target_transform, self.mode = transform, target_transform, mode
        self.fresh_instances, self.epoch = bool(fresh_instances), 0
        source = self.maker.source
        self.classes: list[str] = source.class_names()
        self.labels: np.ndarray = np.arange(source.num_items(), dtype=np.int64) // source.per_class
        shape = self.maker.image_shape()
        self.image_shape: tuple[int, int, int] = (1, *shape) if len(shape) == 2 else (shape[2], shape[0], shape[1])

    @property
    def class_to_idx(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.classes)}

    @property
    def targets(self) -> list[int]:
        return self.labels.tolist()

    @property
    def seed(self) -> int:
        """The data set's seed (epoch 0's)."""
        return self.maker.seed

    @property
    def device(self) -> torch.device:
        return self.maker.device

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch ``epoch``'s instances from now on (no effect without ``fresh_instances``)."""
        self.epoch = int(epoch)

    def epoch_seed(self, epoch: int | None = None) -> int:
        """The seed images of ``epoch`` (default: the current one) are drawn with."""
        epoch = self.epoch if epoch is None else epoch
        return epoch_seed(self.seed, epoch) if self.fresh_instances else self.seed

    def view(self, *, device: str | torch.device | None = None, fresh_instances: bool | None = None) -> OnTheFlyDataset:
        """The same data set on another device or with other instances (shares the source)."""
        from fdsl.generators.device import ImageMaker

        other = copy.copy(self)
        if device is not None and torch.device(device) != self.device:
            other.maker = ImageMaker(self.maker.source, device)
        if fresh_instances is not None:
            other.fresh_instances = bool(fresh_instances)
        return other

    def __len__(self) -> int:
        return len(self.labels)

    def images(self, indices: Sequence[int] | np.ndarray, epoch: int | None = None) -> torch.Tensor:
        """uint8 [B, C, H, W] images of ``indices`` (of ``epoch``'s instances) on ``device``."""
        made = self.maker.images(indices, seed=self.epoch_seed(epoch))
        return made.unsqueeze(1) if made.dim() == 3 else made.permute(0, 3, 1, 2)

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, Any]]:
        """The samples of ``indices``, made in one call (DataLoader fetches batches with it)."""
        images = self.images(indices)
        labels = self.labels[np.asarray(indices, np.int64)].tolist() if len(indices) else []
        out = []
        for image, label in zip(images, labels, strict=True):
            if self.transform is not None:
                image = self.transform(self._pil(image))
            if self.target_transform is not None:
                label = self.target_transform(label)
            out.append((image, label))
        return out

    def make_batch(self, indices: Sequence[int]) -> tuple[Any, Any]:
        """One collated batch of ``indices``: (uint8 [B, C, H, W], int64 [B]) made in one call, or
        the transforms' outputs stacked (DataLoader workers of train-classifier call it)."""
        if self.transform is not None or self.target_transform is not None:
            return torch.utils.data.default_collate(self.__getitems__(indices))
        return self.images(indices), torch.from_numpy(self.labels[np.asarray(indices, np.int64)])

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a data set of {len(self)} images")
        return self.__getitems__([i % len(self)])[0]

    def _pil(self, image: torch.Tensor) -> Any:
        from fdsl.datasets.read.dataset import pil_image

        return pil_image(image.cpu(), self.mode)

    def device_batches(self, batches: Sequence[Sequence[int]], epoch: int
                       ) -> Iterator[tuple[torch.Tensor, torch.Tensor]] | None:
        """(uint8 [B, C, H, W], int64 [B]) batches of ``epoch`` made on the CUDA device, or None
        on the CPU (then DataLoader workers make them through ``__getitems__``)."""
        if self.device.type != "cuda":
            return None
        return self._device_batches(batches, epoch)

    def _device_batches(self, batches: Sequence[Sequence[int]], epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in batches:
            images = self.images(batch, epoch)
            labels = torch.from_numpy(self.labels[np.asarray(batch, np.int64)])
            yield images, labels.to(images.device)  # a CPU tensor in the CUDA simulator


OnTheFlyFractalDataset = OnTheFlyDataset  # its former name (FractalDB only, settings given by hand)


def training_view(dataset: OnTheFlyDataset, device: torch.device | None, fresh_instances: bool) -> OnTheFlyDataset:
    """``dataset`` as a training loader reads it: made on ``device`` when it is a CUDA device the
    kernels can use (else on the CPU, in the loader's workers), with fresh instances or not."""
    from fdsl.generators.device import cuda_problem

    target: str | torch.device = "cpu"
    if device is not None and device.type == "cuda":
        problem = cuda_problem()
        if problem is None:
            target = device
        else:
            log.warning("generating %s on the CPU in the loader workers: %s", dataset.root, problem)
    return dataset.view(device=target, fresh_instances=fresh_instances)
