"""RCDB rendering: the ShardSource drawing each image from its class's and its own draws, and
``source_from_config``, which rebuilds it from a data set's manifest config."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np

from fdsl.generators.kernels import rcdb_image
from fdsl.generators.kernels.contours import draw_contours
from fdsl.generators.rcdb.params import OFFICIAL_SIZE, ClassParams, ImageParams
from fdsl.generators.sourcebase import GeneratedSource
from fdsl.sources import RenderedBatch

NAME = "rcdb"
# 2: the noise package's Perlin table, greys as the official; 3: counter-based per-image streams
# (fdsl.generators.kernels.rcdb_image), shared with the GPU kernel
VERSION = "3"

_ALL_SEGMENTS = np.ones((0, 0), dtype=np.bool_)  # empty: draw every segment


def draw_image(params: ImageParams, perlin: float, offset: float, size: int,
               out: np.ndarray | None = None) -> np.ndarray:
    """One RCDB image from explicit draws (``params.sample_image``), uint8 [size, size], white
    background (drawn into ``out`` when given): what the source's kernel draws from the same
    draws read from the stream, kept in this form for the official algorithm's reference port."""
    img = np.empty((size, size), dtype=np.uint8) if out is None else out
    img.fill(255)
    draw_contours(img, float(params.radius), params.oval_x, params.oval_y, params.centre_x, params.centre_y,
                  perlin, offset, params.greys, params.noise_inputs, size / OFFICIAL_SIZE,
                  _ALL_SEGMENTS if params.keep is None else params.keep)
    return img


class RCDBSource(GeneratedSource):
    """ShardSource for RCDB; item ``i`` is class ``i // per_class``, instance ``i % per_class``."""

    name = NAME
    version = VERSION

    def __init__(self, params: ClassParams, *, seed: int, per_class: int, image_size: int,
                 params_sha256: str | None, broken_fraction: float = 0.0) -> None:
        self.params, self.seed, self.per_class = params, seed, per_class
        self.image_size, self.params_sha256 = image_size, params_sha256
        self.broken_fraction = broken_fraction

    def config(self) -> dict[str, Any]:
        config = {"seed": self.seed, "classes": len(self.params), "instances": self.per_class,
                  "image_size": self.image_size}
        if self.params_sha256:
            config["params_sha256"] = self.params_sha256
        if self.broken_fraction:  # absent when 0, so closed-contour data sets keep their config
            config["broken_fraction"] = self.broken_fraction
        return config

    def images_of(self, items: np.ndarray) -> np.ndarray:
        size, c = self.image_size, self.params
        images = np.empty((len(items), size, size), dtype=np.uint8)
        rcdb_image.render_items(np.asarray(items, np.int64), np.uint64(self.seed), self.per_class, c.vertices,
                                c.contours, c.perlin, c.offset, *_trig_tables(), float(self.broken_fraction), images)
        return images

    def render(self, start: int, stop: int) -> RenderedBatch:
        items = np.arange(start, stop, dtype=np.int64)
        images = self.images_of(items)
        scalars = np.array([rcdb_image.image_scalars(np.uint64(self.seed), int(i) // self.per_class,
                                                     int(i) % self.per_class) for i in items]).reshape(-1, 5)
        meta = {"instance": (items % self.per_class).astype(np.int32), "radius": scalars[:, 0].astype(np.int16)}
        meta.update({k: scalars[:, col].astype(np.float32)
                     for col, k in enumerate(("oval_x", "oval_y", "centre_x", "centre_y"), start=1)})
        return RenderedBatch(images, items // self.per_class, meta, items, [])


@functools.cache
def _trig_tables() -> tuple[np.ndarray, np.ndarray]:
    return rcdb_image.trig_tables()


def source_from_config(config: Mapping[str, Any], params: ClassParams) -> RCDBSource:
    """The source of a data set whose manifest config is ``config``, drawing classes ``params``."""
    return RCDBSource(params.head(config["classes"]), seed=config["seed"], per_class=config["instances"],
                      image_size=config["image_size"], params_sha256=config.get("params_sha256"),
                      broken_fraction=config.get("broken_fraction", 0.0))
