"""What every generator's ShardSource shares: its class parameters stored as ``classes.npz``, and
the layout of sources whose item ``i`` is image ``i % per_class`` of class ``i // per_class``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fdsl.errors import FdslError
from fdsl.generators.classfile import NAME as NPZ_NAME
from fdsl.generators.spec import ClassParams
from fdsl.sources import RenderedBatch


class GeneratedSource:
    """Base of the generators' sources: ``params`` (the ClassParams) and ``per_class`` images per
    class; class ``c`` is named ``c`` in ``name_digits`` digits."""

    params: ClassParams
    per_class: int
    name_digits = 5

    def class_names(self) -> list[str]:
        return [f"{c:0{self.name_digits}d}" for c in range(len(self.params))]

    def num_items(self) -> int:
        return len(self.params) * self.per_class

    def render(self, start: int, stop: int) -> RenderedBatch:
        raise NotImplementedError

    def images_of(self, items: np.ndarray) -> np.ndarray:
        """The images of ``items`` (int64, any order, repeats allowed) as ``render`` draws them:
        uint8 [N, H, W] or [N, H, W, C], for on-the-fly use (no metadata). FdslError for an item
        ``render`` cannot draw. Runs of consecutive items are one ``render`` call; sources whose
        kernel takes any list of items override this."""
        out: np.ndarray | None = None
        start = 0
        while start < len(items):
            stop = start + 1
            while stop < len(items) and items[stop] == items[stop - 1] + 1:
                stop += 1
            first = int(items[start])
            batch = self.render(first, first + stop - start)
            if len(batch.items) != stop - start:
                missing = sorted(set(range(first, first + stop - start)) - set(batch.items.tolist()))
                raise FdslError(f"image {missing[0]} cannot be drawn: "
                                f"{batch.failures[0]['reason'] if batch.failures else 'no image'}")
            if out is None:
                out = np.empty((len(items), *batch.images.shape[1:]), np.uint8)
            out[start:stop] = batch.images
            start = stop
        return out if out is not None else self.render(0, 0).images

    def extra_files(self) -> dict[str, bytes]:
        return {NPZ_NAME: self.params.to_npz()}

    def png_path(self, label: int, metadata: Mapping[str, Any], item: int) -> str:
        # The official RCDB layout (make_rcdb.py, below its image/ folder): <class>/<class>_<image>.png
        return f"{label:05d}/{label:05d}_{int(metadata['instance']):04d}.png"
