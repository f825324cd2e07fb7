"""LineDB rendering: the ShardSource drawing each image's random lines, and
``source_from_config``, which rebuilds it from a data set's manifest config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fdsl.generators.kernels.raster import draw_lines
from fdsl.generators.linedb.params import ClassParams
from fdsl.generators.sourcebase import GeneratedSource
from fdsl.sources import RenderedBatch

NAME = "linedb"
VERSION = "1"
TAG_IMAGE, TAG_SHUFFLE = 1, 2


def draw_image(seed: int, label: int, instance: int, lines: int, out: np.ndarray) -> np.ndarray:
    """Draw image ``instance`` of class ``label`` with ``lines`` lines into ``out`` uint8 [H, W]."""
    rng = np.random.default_rng([seed, TAG_IMAGE, label, instance])
    size = out.shape[0]
    ends = rng.integers(0, size, (lines, 4))
    greys = rng.integers(0, 256, lines)
    out.fill(255)
    draw_lines(out, ends, greys)
    return out


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

    def lines_of(self, label: int, instance: int) -> int:
        """How many lines image ``instance`` of class ``label`` draws."""
        if not self.shuffle_counts:
            return int(self.line_counts[label])
        rng = np.random.default_rng([self.seed, TAG_SHUFFLE, label, instance])
        return int(self.line_counts[rng.integers(len(self.line_counts))])

    def render(self, start: int, stop: int) -> RenderedBatch:
        size, count = self.image_size, stop - start
        images = np.empty((count, size, size), dtype=np.uint8)
        meta = {"instance": np.zeros(count, np.int32), "lines": np.zeros(count, np.int32)}
        for row, item in enumerate(range(start, stop)):
            label, instance = divmod(item, self.per_class)
            lines = self.lines_of(label, instance)
            draw_image(self.seed, label, instance, lines, images[row])
            meta["instance"][row], meta["lines"][row] = instance, lines
        items = np.arange(start, stop, dtype=np.int64)
        return RenderedBatch(images, items // self.per_class, meta, items, [])



def source_from_config(config: Mapping[str, Any], params: ClassParams) -> LineDBSource:
    """The source of a data set whose manifest config is ``config``, drawing classes ``params``."""
    return LineDBSource(params.head(config["classes"]), seed=config["seed"], per_class=config["instances"],
                        image_size=config["image_size"], shuffle_counts=config["shuffle_counts"],
                        params_sha256=config.get("params_sha256"))
