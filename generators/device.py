"""Images of a generated data set made when they are needed, on the CPU or on a GPU.

``generate(folder, indices, device)`` returns the images with those indices of the data set a
``gen-fractal`` folder describes (a full one, or one written with ``--params-only``: manifest and
``classes.npz``), equal byte for byte to what ``gen-fractal`` writes into that folder's shards:

- ``device="cpu"``: the generator's own CPU source renders them (the code that writes the shards);
- ``device="cuda"`` (or ``"cuda:N"``): the numba-cuda kernels of ``fdsl.generators.cuda``, one
  thread per image, into a torch CUDA tensor on torch's current stream. Under numba's CUDA
  simulator (``NUMBA_ENABLE_CUDASIM=1``) the same call runs them there and returns a CPU tensor.

``ImageMaker`` is the same with the source and the device plan kept between calls, and a seed per
call: ``--fresh-instances`` draws the classes' new instances of every epoch with another seed.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fdsl.errors import FdslError
from fdsl.generators.rebuild import source_from_folder, with_seed
from fdsl.sources import ShardSource


def generate(folder: str | Path, indices: Sequence[int] | np.ndarray | torch.Tensor,
             device: str | torch.device = "cpu") -> torch.Tensor:
    """The images with ``indices`` (item indices, any order, repeats allowed) of the generated data
    set in ``folder``: uint8 [N, H, W] (grey) or [N, H, W, C], on ``device`` ("cpu", "cuda",
    "cuda:N"; a CPU tensor in the CUDA simulator). FdslError (one line) for a folder that holds
    no generated set (or one of another generator version), an index outside the set, or a
    device that is not there."""
    return ImageMaker(source_from_folder(folder), device).images(indices)


def cuda_problem() -> str | None:
    """Why the CUDA kernels cannot run here, or None when they can (a GPU, or the simulator)."""
    if importlib.util.find_spec("numba_cuda") is None:
        return "the CUDA kernels need numba-cuda: pip install 'fdsl[gpu]'"
    from numba import config

    if config.ENABLE_CUDASIM:
        return None
    if not torch.cuda.is_available():
        return "no CUDA device is visible to torch"
    from numba import cuda

    if not cuda.is_available():
        return "numba-cuda sees no CUDA device (driver or toolkit missing)"
    return None


def parse_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device, "cpu" or "cuda[:N]"; FdslError for anything else, and for
    CUDA where it cannot run."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise FdslError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}") from None
    if parsed.type not in ("cpu", "cuda"):
        raise FdslError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
    if parsed.type == "cuda":
        problem = cuda_problem()
        if problem:
            raise FdslError(f"device {device!r}: {problem}")
    return parsed


class ImageMaker:
    """Makes images of one generated data set on one device, for any seed.

    ``images(indices, seed=None)``: the images of those items drawn with ``seed`` (None: the data
    set's own seed, i.e. its shards' images). The CPU path renders with the generator's source
    (rebuilt with the seed asked for); the CUDA path copies the class tables to the device once.
    Picklable (DataLoader workers rebuild their caches).
    """

    def __init__(self, source: ShardSource, device: str | torch.device = "cpu") -> None:
        self.source = source
        self.device = parse_device(device)
        self.num_items = source.num_items()
        self._seeded: dict[int, ShardSource] = {}
        self._plan: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_seeded": {}, "_plan": None}

    @property
    def seed(self) -> int:
        return int(self.source.config()["seed"])

    def _items(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
        if isinstance(indices, torch.Tensor):
            indices = indices.cpu().numpy()
        items = np.asarray(indices).reshape(-1)
        if items.size and items.dtype.kind not in "iu":
            raise FdslError(f"indices must be integers, got {items.dtype}")
        items = items.astype(np.int64)
        bad = items[(items < 0) | (items >= self.num_items)]
        if bad.size:
            raise FdslError(f"index {int(bad[0])} is outside the data set's {self.num_items} images")
        return items

    def images(self, indices: Sequence[int] | np.ndarray | torch.Tensor, seed: int | None = None) -> torch.Tensor:
        items = self._items(indices)
        seed = self.seed if seed is None else int(seed)
        if self.device.type == "cuda":
            return self._cuda(items, seed)
        return torch.from_numpy(self._cpu(items, seed))

    def source_for(self, seed: int) -> ShardSource:
        """The CPU source drawing with ``seed`` (the data set's own source for its seed)."""
        if seed == self.seed:
            return self.source
        found = self._seeded.get(seed)
        if found is None:
            found = with_seed(self.source, seed)
            self._seeded = {seed: found}  # one epoch's source at a time
        return found

    def _cpu(self, items: np.ndarray, seed: int) -> np.ndarray:
        return self.source_for(seed).images_of(items)

    def image_shape(self) -> tuple[int, ...]:
        """The shape of one image: (H, W) or (H, W, C)."""
        size = int(self.source.config()["image_size"])
        return (size, size, 3) if self.source.config().get("color") == "color" else (size, size)

    def _cuda(self, items: np.ndarray, seed: int) -> torch.Tensor:
        from numba import config

        on_index = self.device.index is not None and not config.ENABLE_CUDASIM
        with torch.cuda.device(self.device) if on_index else contextlib.nullcontext():
            if self._plan is None:
                from fdsl.generators.cuda.plans import make_plan

                self._plan = make_plan(self.source)
            return self._plan.render(items, seed)
