"""LineDB rendering: the ShardSource drawing each image's random lines, and
``source_from_config``, which rebuilds it from a data set's manifest config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fdsl.generators.kernels import linedb_image
from fdsl.generators.linedb.params import ClassParams
from fdsl.generators.sourcebase import GeneratedSource
from fdsl.sources import RenderedBatch

NAME = "linedb"
VERSION = "2"  # 2: counter-based per-image streams (fdsl.generators.kernels.linedb_image), shared with the GPU


class LineDBSource(GeneratedSource):
    """ShardSource for LineDB; item ``i`` is class ``i // per_class``, instance ``i % per_class``."""

    name = NAME
    version = VERSION

    def __init__(self, params: ClassParams, *, seed: int, per_class: int, image_size: int,
                 shuffle_counts: bool, params_sha256: str | None = None) -> None:
        self.params, self.line_counts = params, params.line_counts
        self.seed, self.per_class, self.image_size = seed, per_class, image_size
        self.shuffle_counts, self.params_sha256 = shuffle_counts, params_sha256

    def config(self) -> dict[str, Any]:
        config = {"seed": self.seed, "classes": len(self.params), "instances": self.per_class,
                  "image_size": self.image_size, "line_counts": self.line_counts.tolist(),
                  "shuffle_counts": self.shuffle_counts}
        if self.params_sha256:
            config["params_sha256"] = self.params_sha256
        return config

    def _draw(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = np.empty((len(items), self.image_size, self.image_size), dtype=np.uint8)
        lines = np.empty(len(items), np.int32)
        linedb_image.render_items(np.asarray(items, np.int64), np.uint64(self.seed), self.per_class,
                                  self.line_counts, bool(self.shuffle_counts), images, lines)
        return images, lines

    def images_of(self, items: np.ndarray) -> np.ndarray:
        return self._draw(items)[0]

    def render(self, start: int, stop: int) -> RenderedBatch:
        items = np.arange(start, stop, dtype=np.int64)
        images, lines = self._draw(items)
        meta = {"instance": (items % self.per_class).astype(np.int32), "lines": lines}
        return RenderedBatch(images, items // self.per_class, meta, items, [])



def source_from_config(config: Mapping[str, Any], params: ClassParams) -> LineDBSource:
    """The source of a data set whose manifest config is ``config``, drawing classes ``params``."""
    return LineDBSource(params.head(config["classes"]), seed=config["seed"], per_class=config["instances"],
                        image_size=config["image_size"], shuffle_counts=config["shuffle_counts"],
                        params_sha256=config.get("params_sha256"))
