"""FractalDB images rendered in the DataLoader workers from saved class parameters.

Instead of storing the data set, each worker renders item ``i`` when asked. The image depends
only on (seed, epoch, i): epoch 0 renders exactly what ``gen-fractal --db fractaldb --seed SEED
--params-from classes.npz`` stores, and every later epoch uses a seed derived from (seed, epoch),
so epochs show new random points and patches of the same classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from fdsl.errors import FdslError
from fdsl.generators.registry import get_generator


def epoch_seed(seed: int, epoch: int) -> int:
    """The generator seed of ``epoch``: ``seed`` itself for epoch 0, a derived one after."""
    if epoch == 0:
        return seed
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint32)[0])


class OnTheFlyFractalDataset(torch.utils.data.Dataset):
    """A map-style Dataset rendering FractalDB images on demand (no shards on disk).

    ``ds[i]`` is ``(uint8 tensor [C, H, W], label)`` (C = 1 for grey, 3 for colour), fixed by
    (seed, epoch, i) whatever the worker or the order of requests. Call ``set_epoch(e)`` before
    each epoch (DataLoader workers that are not persistent pick it up when the epoch starts).

    Args:
        params_file: a ``classes.npz`` written by ``gen-fractal --db fractaldb``.
        instances, image_size, points: as ``gen-fractal`` (None = the official defaults).
        seed: the generator seed of epoch 0.
        classes: use the first ``classes`` classes of the file (None = all of them).
        options: further FractalDB options (e.g. ``color="color"``).
    """

    def __init__(self, params_file: str | Path, instances: int | None = None,
                 image_size: int | None = None, points: int | None = None, seed: int = 0,
                 classes: int | None = None, **options: Any) -> None:
        from fdsl.generators.fractaldb import load_class_params

        self.params_file = Path(params_file)
        if not self.params_file.is_file():
            raise FdslError(f"{self.params_file}: no such class parameters file")
        if classes is None:
            classes = len(load_class_params(self.params_file))
        self.settings = dict(classes=classes, instances=instances, image_size=image_size,
                             points=points, params_from=self.params_file, workers=1,
                             backend="inline", **options)
        if seed < 0:
            raise FdslError(f"seed must be >= 0, got {seed}")
        self.seed, self.epoch = seed, 0
        self._sources: dict[int, Any] = {}
        probe = self._source()  # checks the settings now, in the caller, with one clear error
        self.classes: list[str] = probe.class_names()
        self._len = probe.num_items()
        self.labels: np.ndarray = probe.item_labels(np.arange(self._len, dtype=np.int64))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_sources"] = {}  # rebuilt per process: sources hold caches
        return state

    def set_epoch(self, epoch: int) -> None:
        """Render epoch ``epoch``'s images from now on."""
        self.epoch = int(epoch)

    def _source(self) -> Any:
        source = self._sources.get(self.epoch)
        if source is None:
            make_source = get_generator("fractaldb").make_source
            source = make_source(seed=epoch_seed(self.seed, self.epoch), **self.settings)
            self._sources = {self.epoch: source}  # keep one: an epoch is used then left
        return source

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        i = int(i)
        if not -self._len <= i < self._len:
            raise IndexError(f"index {i} out of range for a data set of {self._len} items")
        i %= self._len
        batch = self._source().render(i, i + 1)
        image = np.asarray(batch.images[0])
        image = image[None] if image.ndim == 2 else image.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(image)), int(batch.labels[0])
