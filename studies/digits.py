"""scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes) as fdsl shards.

The digits ship inside scikit-learn, so this downstream set works offline. Each 8x8 image (grey
levels 0..16) is scaled to 0..255 and upscaled to ``image_size`` with bicubic interpolation; the
metadata field ``index`` is the row in ``sklearn.datasets.load_digits``. It stands in for the
MNIST-like sets on which FractalDB pre-training was found to match ImageNet pre-training. Its
manifest config declares ``"mirror_symmetric": false``, so training never flips it horizontally.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.errors import FdslError
from fdsl.sources import RenderedBatch

NAME = "sklearn-digits"
VERSION = "2"  # 2: the config declares the digits not mirror-symmetric
NUM_IMAGES = 1797


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise FdslError("the digits data set needs scikit-learn: pip install scikit-learn") from None
    bunch = load_digits()
    return np.asarray(bunch.images), np.asarray(bunch.target, np.int64)


def digit_labels() -> np.ndarray:
    """The class of every digit, in item order: int64 [1797]."""
    return _digits()[1].copy()


def digit_images(rows: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 [n, image_size, image_size] of the given rows of ``load_digits``."""
    from PIL import Image

    images, _ = _digits()
    out = np.empty((len(rows), image_size, image_size), np.uint8)
    for k, row in enumerate(rows):
        grey = Image.fromarray(np.round(images[row] * (255.0 / 16.0)).astype(np.uint8))
        out[k] = np.asarray(grey.resize((image_size, image_size), Image.Resampling.BICUBIC))
    return out


class DigitsSource:
    """ShardSource over ``load_digits``; item ``i`` is its row ``i``."""

    name = NAME
    version = VERSION

    def __init__(self, image_size: int = 32) -> None:
        if image_size < 8:
            raise FdslError(f"digits image size must be >= 8 (they are 8x8), got {image_size}")
        self.image_size = image_size

    def config(self) -> dict[str, Any]:
        # A mirrored digit is another digit or none: training must not flip them.
        return {"dataset": "sklearn.datasets.load_digits", "image_size": self.image_size,
                "resize": "0..16 scaled to 0..255, bicubic upscale", "mirror_symmetric": False}

    def class_names(self) -> list[str]:
        return [str(d) for d in range(10)]

    def num_items(self) -> int:
        return len(_digits()[1])

    def render(self, start: int, stop: int) -> RenderedBatch:
        rows = np.arange(start, stop)
        meta = {"index": rows.astype(np.int32)}
        return RenderedBatch(digit_images(rows, self.image_size), _digits()[1][rows], meta, rows.astype(np.int64))

    def png_path(self, label: int, metadata: Mapping[str, Any], item: int) -> str:
        return f"{label}/{item:04d}.png"

    def extra_files(self) -> dict[str, bytes]:
        return {}


def import_digits(out: str | Path, *, image_size: int = 32, overwrite: bool = False,
                  progress: bool = True) -> Path:
    """Write the digits into the shard folder ``out`` (resumes; other settings refused unless
    ``overwrite``; ``progress`` False: no progress bar or lines) and return it."""
    from fdsl.datasets.builder.build import build_dataset

    build_dataset(DigitsSource(image_size), out, shard_size=NUM_IMAGES, workers=1, backend="local",
                  overwrite=overwrite, progress=progress)
    return Path(out)
