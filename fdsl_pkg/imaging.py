"""Image preprocessing shared by the importers and the training data readers."""

from __future__ import annotations

import numpy as np
from PIL import Image

RESAMPLE = Image.Resampling.BILINEAR


def resize_center_crop(img: Image.Image, size: int) -> np.ndarray:
    """uint8 [size, size, 3]: ``img`` as RGB, short side resized to ``size`` (bilinear), centre crop.

    The one definition used by ``import-cub`` and by ImageFolder training data, so an imported
    set and the same images read as a folder give identical pixels.
    """
    img = img.convert("RGB")
    scale = size / min(img.size)
    w, h = max(size, round(img.width * scale)), max(size, round(img.height * scale))
    img = img.resize((w, h), RESAMPLE)
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)
