"""RCDB, the Radial Contour DataBase (Kataoka et al., CVPR 2022): noisy concentric polygons.

Per class (``default_rng([seed, 1, class])``): vertices ``int(Exponential(mean 100))`` redrawn until
in 3..200, contours ``randint(1, 200)``, Perlin coefficient c ~ U(0, 4), radial offset ~ U(0, 0.1).
Per image (``default_rng([seed, 2, class, instance])``): radius randint(0, 100), oval factors for x
then y ~ U(1, 2), centre ``(512 + randint(-400, 400)) / 2`` for y then x, then per contour a grey
level randint(0, 256) clipped to 255 (the official ``randint(0, image_size / 2)`` at 512 px, which
Pillow clips) and two uniforms U(0, 1e4) per vertex (x then y noise inputs).

Drawing (the official make_rcdb.py algorithm): vertex v starts at (cos, sin)(2 pi v / V) * radius *
oval; each contour moves every vertex by ``-(cos, sin) * (noise - offset)`` with noise =
pnoise1(u) * 2c - c (``fdsl.generators.kernels.perlin``, equal to the ``noise`` package's),
cumulatively, and draws the closed 1 px polyline on a white canvas. Geometry is
in the official 512 px units and scaled by ``image_size / 512`` (so 512 px is the official image).
Differences (docs/FIDELITY.md): seeded NumPy streams instead of ``random.seed(thread + 1)``;
grey images (the official writes RGB with three equal channels); at other sizes than 512 the
geometry is scaled (the official keeps it in pixels and draws greys up to size / 2).
"""

from __future__ import annotations

import argparse
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np

from fdsl.errors import FdslError
from fdsl.generators.kernels.perlin import pnoise1_jit
from fdsl.generators.kernels.raster import draw_line
from fdsl.generators.npzfile import npz_bytes
from fdsl.generators.registry import GeneratorSpec, register_generator
from fdsl.sources import RenderedBatch

NAME = "rcdb"
VERSION = "2"  # 2: the noise package's Perlin table, greys as the official
OFFICIAL_SIZE = 512
DEFAULT_INSTANCES = 1000
MAX_VERTICES = 200
MAX_CONTOURS = 200
MAX_PERLIN = 4.0
MAX_OFFSET = 0.1
CENTRE_SPREAD = 400
GREY_DRAW = OFFICIAL_SIZE // 2  # randint(0, 256): 256 comes out as 255
TAG_CLASS, TAG_IMAGE, TAG_BREAK = 1, 2, 3


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """RCDB's own flags (default None = the official drawing)."""
    group.add_argument("--broken-fraction", dest="broken_fraction", type=float, default=None,
                       help="broken contours (the CVPR 2022 ablation): remove this fraction of each "
                            "contour's segments, in [0, 1], chosen at random per contour (default 0: "
                            "closed contours)")


@dataclass(frozen=True)
class ClassParams:
    """Per class: vertices int64 [C], contours int64 [C], perlin float64 [C], offset float64 [C]."""

    vertices: np.ndarray
    contours: np.ndarray
    perlin: np.ndarray
    offset: np.ndarray

    def to_npz(self) -> bytes:
        return npz_bytes({"vertices": self.vertices, "contours": self.contours, "perlin": self.perlin,
                          "offset": self.offset})


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
    rows = [sample_class(seed, c) for c in range(classes)]
    vertices, contours, perlin, offset = (np.array(col) for col in zip(*rows, strict=True))
    return ClassParams(vertices.astype(np.int64), contours.astype(np.int64),
                       perlin.astype(np.float64), offset.astype(np.float64))


def load_class_params(path: Path, classes: int) -> ClassParams:
    """The first ``classes`` classes of an RCDB classes.npz written by an earlier run."""
    try:
        with np.load(path) as data:
            arrays = {k: np.asarray(data[k]) for k in ("vertices", "contours", "perlin", "offset")}
    except (OSError, ValueError, KeyError) as exc:
        raise FdslError(f"--params-from {path}: not an RCDB classes.npz ({exc})") from None
    if any(a.ndim != 1 for a in arrays.values()) or len({len(a) for a in arrays.values()}) != 1:
        raise FdslError(f"--params-from {path}: arrays must be 1-D and of equal length")
    if len(arrays["vertices"]) < classes:
        raise FdslError(f"--params-from {path} holds {len(arrays['vertices'])} classes, fewer than --classes {classes}")
    for name, lo, hi in (("vertices", 3, MAX_VERTICES), ("contours", 1, MAX_CONTOURS),
                         ("perlin", 0.0, MAX_PERLIN), ("offset", 0.0, MAX_OFFSET)):
        values = arrays[name]
        integral = name in ("vertices", "contours")
        if (values.dtype.kind not in ("iu" if integral else "iuf") or not np.all(np.isfinite(values))
                or np.any(values < lo) or np.any(values > hi)):
            raise FdslError(f"--params-from {path}: {name} must be {'integers' if integral else 'finite'} "
                            f"in [{lo}, {hi}] (the ranges of the class sampling)")
    return ClassParams(arrays["vertices"][:classes].astype(np.int64), arrays["contours"][:classes].astype(np.int64),
                       arrays["perlin"][:classes].astype(np.float64), arrays["offset"][:classes].astype(np.float64))


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
    from each contour, chosen uniformly per contour from their own stream, so every other draw
    of the image (and so the closed image) stays the same."""
    remove = min(vertices, int(fraction * vertices + 0.5))
    order = np.random.default_rng([seed, TAG_BREAK, label, instance]).random((contours, vertices)).argsort(axis=1)
    keep = np.ones((contours, vertices), dtype=np.bool_)
    np.put_along_axis(keep, order[:, :remove], False, axis=1)
    return keep


def sample_image(seed: int, label: int, instance: int, vertices: int, contours: int,
                 broken_fraction: float = 0.0) -> ImageParams:
    rng = np.random.default_rng([seed, TAG_IMAGE, label, instance])
    radius = int(rng.integers(0, 101))
    oval_x, oval_y = rng.uniform(1.0, 2.0, 2)
    centre_y, centre_x = (OFFICIAL_SIZE + rng.integers(-CENTRE_SPREAD, CENTRE_SPREAD + 1, 2)) / 2
    greys = np.minimum(rng.integers(0, GREY_DRAW + 1, contours), 255)
    noise_inputs = rng.uniform(0.0, 1e4, (contours, 2, vertices))
    keep = (broken_segments(seed, label, instance, vertices, contours, broken_fraction)
            if broken_fraction > 0 else None)
    return ImageParams(radius, float(oval_x), float(oval_y), float(centre_x), float(centre_y), greys,
                       noise_inputs, keep)


@numba.njit(cache=True)
def _draw_contours(img: np.ndarray, radius: float, oval_x: float, oval_y: float, centre_x: float,
                   centre_y: float, perlin: float, offset: float, greys: np.ndarray,
                   noise_inputs: np.ndarray, scale: float, keep: np.ndarray) -> None:
    vertices = noise_inputs.shape[2]
    step = 2.0 * math.pi / vertices
    cos_v = np.empty(vertices)
    sin_v = np.empty(vertices)
    vx = np.empty(vertices)
    vy = np.empty(vertices)
    px = np.empty(vertices, dtype=np.int64)
    py = np.empty(vertices, dtype=np.int64)
    for v in range(vertices):
        cos_v[v] = math.cos(step * v)
        sin_v[v] = math.sin(step * v)
        vx[v] = cos_v[v] * radius * oval_x
        vy[v] = sin_v[v] * radius * oval_y
    for k in range(greys.size):
        for v in range(vertices):
            nx = pnoise1_jit(noise_inputs[k, 0, v]) * perlin * 2.0 - perlin
            ny = pnoise1_jit(noise_inputs[k, 1, v]) * perlin * 2.0 - perlin
            vx[v] -= cos_v[v] * (nx - offset)
            vy[v] -= sin_v[v] * (ny - offset)
            # Truncate toward zero like Pillow's line drawing with float coordinates.
            px[v] = int((vx[v] + centre_x) * scale)
            py[v] = int((vy[v] + centre_y) * scale)
        for v in range(vertices):
            if keep.size == 0 or keep[k, v]:
                w = v + 1 if v + 1 < vertices else 0
                draw_line(img, px[v], py[v], px[w], py[w], greys[k])


_ALL_SEGMENTS = np.ones((0, 0), dtype=np.bool_)  # empty: draw every segment


def draw_image(params: ImageParams, perlin: float, offset: float, size: int,
               out: np.ndarray | None = None) -> np.ndarray:
    """One RCDB image, uint8 [size, size], white background (drawn into ``out`` when given)."""
    img = np.empty((size, size), dtype=np.uint8) if out is None else out
    img.fill(255)
    _draw_contours(img, float(params.radius), params.oval_x, params.oval_y, params.centre_x, params.centre_y,
                   perlin, offset, params.greys, params.noise_inputs, size / OFFICIAL_SIZE,
                   _ALL_SEGMENTS if params.keep is None else params.keep)
    return img


class RcdbSource:
    """ShardSource for RCDB; item ``i`` is class ``i // per_class``, instance ``i % per_class``."""

    name = NAME
    version = VERSION

    def __init__(self, classes: ClassParams, *, seed: int, per_class: int, image_size: int,
                 params_sha256: str | None, broken_fraction: float = 0.0) -> None:
        self.classes, self.seed, self.per_class = classes, seed, per_class
        self.image_size, self.params_sha256 = image_size, params_sha256
        self.broken_fraction = broken_fraction

    def config(self) -> dict[str, Any]:
        config = {"seed": self.seed, "classes": len(self.classes.vertices), "instances": self.per_class,
                  "image_size": self.image_size}
        if self.params_sha256:
            config["params_sha256"] = self.params_sha256
        if self.broken_fraction:  # absent when 0, so closed-contour data sets keep their config
            config["broken_fraction"] = self.broken_fraction
        return config

    def class_names(self) -> list[str]:
        return [f"{c:05d}" for c in range(len(self.classes.vertices))]

    def num_items(self) -> int:
        return len(self.classes.vertices) * self.per_class

    def render(self, start: int, stop: int) -> RenderedBatch:
        size, count = self.image_size, stop - start
        images = np.empty((count, size, size), dtype=np.uint8)
        meta = {"instance": np.zeros(count, np.int32), "radius": np.zeros(count, np.int16)}
        meta.update({k: np.zeros(count, np.float32) for k in ("centre_x", "centre_y", "oval_x", "oval_y")})
        for row, item in enumerate(range(start, stop)):
            label, instance = divmod(item, self.per_class)
            c = self.classes
            params = sample_image(self.seed, label, instance, int(c.vertices[label]), int(c.contours[label]),
                                  self.broken_fraction)
            draw_image(params, float(c.perlin[label]), float(c.offset[label]), size, out=images[row])
            meta["instance"][row], meta["radius"][row] = instance, params.radius
            meta["centre_x"][row], meta["centre_y"][row] = params.centre_x, params.centre_y
            meta["oval_x"][row], meta["oval_y"][row] = params.oval_x, params.oval_y
        items = np.arange(start, stop, dtype=np.int64)
        return RenderedBatch(images, items // self.per_class, meta, items, [])

    def png_path(self, label: int, metadata: Mapping[str, Any], item: int) -> str:
        # The official make_rcdb.py layout (below its image/ folder): <class>/<class>_<instance>.png
        return f"{label:05d}/{label:05d}_{int(metadata['instance']):04d}.png"

    def extra_files(self) -> dict[str, bytes]:
        return {"classes.npz": self.classes.to_npz()}


def make_source(*, classes: int, instances: int | None = None, seed: int = 0, image_size: int | None = None,
                params_from: Path | None = None, workers: int | None = None, backend: str = "local",
                broken_fraction: float | None = None) -> RcdbSource:
    """The RCDB source (class parameters sampled from the seed or loaded); FdslError for bad values."""
    if seed < 0:
        raise FdslError(f"--seed must be >= 0 for rcdb, got {seed}")
    size = OFFICIAL_SIZE if image_size is None else image_size
    if size < 8:
        raise FdslError(f"--image-size must be at least 8 for rcdb, got {size}")
    per_class = DEFAULT_INSTANCES if instances is None else instances
    if per_class <= 0:
        raise FdslError(f"--instances must be positive, got {per_class}")
    broken = 0.0 if broken_fraction is None else float(broken_fraction)
    if not 0.0 <= broken <= 1.0:
        raise FdslError(f"--broken-fraction must be in [0, 1], got {broken_fraction}")
    if params_from is not None:
        params = load_class_params(Path(params_from), classes)
        digest = hashlib.sha256(Path(params_from).read_bytes()).hexdigest()
    else:
        params, digest = sample_classes(classes, seed), None
    return RcdbSource(params, seed=seed, per_class=per_class, image_size=size, params_sha256=digest,
                      broken_fraction=broken)


SPEC = register_generator(GeneratorSpec(
    name=NAME,
    description="radial contours: Perlin-noised concentric polygons (Kataoka et al., CVPR 2022)",
    defaults={"instances": DEFAULT_INSTANCES, "image_size": OFFICIAL_SIZE},
    add_arguments=add_arguments,
    make_source=make_source,
))
