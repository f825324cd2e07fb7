"""RCDB rendering: the ShardSource drawing each image from its class's and its own draws, and
``source_from_config``, which rebuilds it from a data set's manifest config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fdsl.generators.kernels.contours import draw_contours
from fdsl.generators.rcdb.params import OFFICIAL_SIZE, ClassParams, ImageParams, sample_image
from fdsl.generators.sourcebase import GeneratedSource
from fdsl.sources import RenderedBatch

NAME = "rcdb"
VERSION = "2"  # 2: the noise package's Perlin table, greys as the official

_ALL_SEGMENTS = np.ones((0, 0), dtype=np.bool_)  # empty: draw every segment


def draw_image(params: ImageParams, perlin: float, offset: float, size: int,
               out: np.ndarray | None = None) -> np.ndarray:
    """One RCDB image, uint8 [size, size], white background (drawn into ``out`` when given)."""
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

    def render(self, start: int, stop: int) -> RenderedBatch:
        size, count = self.image_size, stop - start
        images = np.empty((count, size, size), dtype=np.uint8)
        meta = {"instance": np.zeros(count, np.int32), "radius": np.zeros(count, np.int16)}
        meta.update({k: np.zeros(count, np.float32) for k in ("centre_x", "centre_y", "oval_x", "oval_y")})
        for row, item in enumerate(range(start, stop)):
            label, instance = divmod(item, self.per_class)
            c = self.params
            params = sample_image(self.seed, label, instance, int(c.vertices[label]), int(c.contours[label]),
                                  self.broken_fraction)
            draw_image(params, float(c.perlin[label]), float(c.offset[label]), size, out=images[row])
            meta["instance"][row], meta["radius"][row] = instance, params.radius
            meta["centre_x"][row], meta["centre_y"][row] = params.centre_x, params.centre_y
            meta["oval_x"][row], meta["oval_y"][row] = params.oval_x, params.oval_y
        items = np.arange(start, stop, dtype=np.int64)
        return RenderedBatch(images, items // self.per_class, meta, items, [])



def source_from_config(config: Mapping[str, Any], params: ClassParams) -> RCDBSource:
    """The source of a data set whose manifest config is ``config``, drawing classes ``params``."""
    return RCDBSource(params.head(config["classes"]), seed=config["seed"], per_class=config["instances"],
                      image_size=config["image_size"], params_sha256=config.get("params_sha256"),
                      broken_fraction=config.get("broken_fraction", 0.0))
