"""RCDB parameters: per class (``sample_classes``, stored in ``classes.npz``) and per image
(``sample_image``); see ``fdsl.generators.rcdb`` for the distributions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fdsl.errors import FdslError
from fdsl.generators.classfile import npz_bytes, read_arrays
from fdsl.generators.kernels import rcdb_image

OFFICIAL_SIZE = rcdb_image.OFFICIAL_SIZE
MAX_VERTICES = rcdb_image.MAX_VERTICES
MAX_CONTOURS = 200
MAX_PERLIN = 4.0
MAX_OFFSET = 0.1
TAG_CLASS = 1  # per image: rcdb_image.TAG_IMAGE (2) and TAG_BREAK (3)
_ARRAYS = ("vertices", "contours", "perlin", "offset")


@dataclass(frozen=True)
class ClassParams:
    """Per class: vertices int64 [C], contours int64 [C], perlin float64 [C], offset float64 [C]."""

    vertices: np.ndarray
    contours: np.ndarray
    perlin: np.ndarray
    offset: np.ndarray

    def __len__(self) -> int:
        return len(self.vertices)

    def head(self, classes: int) -> ClassParams:
        return ClassParams(*(getattr(self, k)[:classes] for k in _ARRAYS))

    def to_npz(self) -> bytes:
        return npz_bytes({k: getattr(self, k) for k in _ARRAYS})


def sample_class(seed: int, label: int) -> tuple[int, int, float, float]:
    """(vertices, contours, perlin coefficient, radial offset) of class ``label``."""
    rng = np.random.default_rng([seed, TAG_CLASS, label])
    while True:
        vertices = int(rng.exponential(100.0))
        if 3 <= vertices <= MAX_VERTICES:
            break
    contours = int(rng.integers(1, MAX_CONTOURS + 1))
    return vertices, contours, float(rng.uniform(0.0, 4.0)), float(rng.uniform(0.0, 0.1))


def sample_classes(classes: int, seed: int) -> ClassParams:
    """The parameters of classes 0..classes-1 (each from its own stream)."""
    rows = [sample_class(seed, c) for c in range(classes)]
    vertices, contours, perlin, offset = (np.array(col) for col in zip(*rows, strict=True))
    return ClassParams(vertices.astype(np.int64), contours.astype(np.int64),
                       perlin.astype(np.float64), offset.astype(np.float64))


def load_class_params(path: str | Path) -> ClassParams:
    """The classes of an RCDB classes.npz written by an earlier run; FdslError (one line)."""
    arrays = read_arrays(path, _ARRAYS, "an RCDB classes.npz")
    if any(a.ndim != 1 for a in arrays.values()) or len({len(a) for a in arrays.values()}) != 1:
        raise FdslError(f"--params-from {path}: arrays must be 1-D and of equal length")
    for name, lo, hi in (("vertices", 3, MAX_VERTICES), ("contours", 1, MAX_CONTOURS),
                         ("perlin", 0.0, MAX_PERLIN), ("offset", 0.0, MAX_OFFSET)):
        values = arrays[name]
        integral = name in ("vertices", "contours")
        if (values.dtype.kind not in ("iu" if integral else "iuf") or not np.all(np.isfinite(values))
                or np.any(values < lo) or np.any(values > hi)):
            raise FdslError(f"--params-from {path}: {name} must be {'integers' if integral else 'finite'} "
                            f"in [{lo}, {hi}] (the ranges of the class sampling)")
    return ClassParams(arrays["vertices"].astype(np.int64), arrays["contours"].astype(np.int64),
                       arrays["perlin"].astype(np.float64), arrays["offset"].astype(np.float64))


@dataclass(frozen=True)
class ImageParams:
    """Per-image draws: radius, oval_x, oval_y, centre_x, centre_y (512 px units), greys int64 [K],
    noise_inputs float64 [K, 2, V] (x then y noise inputs per contour and vertex); keep bool [K, V]
    (segment v joins vertex v to v + 1) for broken contours, None when every segment is drawn."""

    radius: int
    oval_x: float
    oval_y: float
    centre_x: float
    centre_y: float
    greys: np.ndarray
    noise_inputs: np.ndarray
    keep: np.ndarray | None = None


def broken_segments(seed: int, label: int, instance: int, vertices: int, contours: int,
                    fraction: float) -> np.ndarray:
    """bool [contours, vertices]: False for the ``round(fraction * vertices)`` segments removed
    from each contour, chosen uniformly per contour (a partial Fisher-Yates shuffle) from their own
    stream, so every other draw of the image (and so the closed image) stays the same."""
    return sample_image(seed, label, instance, vertices, contours, fraction).keep.astype(bool)


def sample_image(seed: int, label: int, instance: int, vertices: int, contours: int,
                 broken_fraction: float = 0.0) -> ImageParams:
    """The draws of image ``instance`` of class ``label`` (``vertices``, ``contours``: the class's),
    from its counter-based streams: exactly what the CPU and GPU kernels read
    (``fdsl.generators.kernels.rcdb_image``), as arrays."""
    radius, oval_x, oval_y, centre_x, centre_y = rcdb_image.image_scalars(np.uint64(seed), label, instance)
    greys = np.empty(contours, np.int64)
    noise_inputs = np.empty((contours, 2, vertices))
    keep = np.empty((contours, vertices), np.uint8)
    rcdb_image.image_draws(np.uint64(seed), label, instance, vertices, contours, float(broken_fraction),
                           greys, noise_inputs, keep)
    return ImageParams(int(radius), float(oval_x), float(oval_y), float(centre_x), float(centre_y), greys,
                       noise_inputs, keep.astype(bool) if broken_fraction > 0 else None)
