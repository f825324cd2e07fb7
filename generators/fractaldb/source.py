"""FractalDB rendering: the ShardSource that draws each class's 25 parameter variants with
random 3x3 patches (see ``fdsl.generators.fractaldb`` for the algorithm and the random streams),
and ``source_from_config``, which rebuilds it from a data set's manifest config."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fdsl.generators.classfile import NAME as NPZ_NAME
from fdsl.generators.fractaldb.params import PAD, ClassParams
from fdsl.generators.kernels import ifs2d
from fdsl.generators.sourcebase import GeneratedSource
from fdsl.sources import RenderedBatch

NAME = "fractaldb"
VERSION = "3"  # 3: the origin and early orbit points are kept (the official __rescale)
FLIPS = 4
RENDERS = 10
FACTORS = (0.2, 0.6, 1.4, 1.8)
GREY = 127
HUE_PERIOD = 128
COLOR_MODES = ("gray", "color")


def variant_weights() -> np.ndarray:
    """float64 [25, 6]: the official weights file (weights_0.4.csv) row by row: for parameter
    a..f in turn the factors 0.2, 0.6, (identity once, as row 2), 1.4, 1.8."""
    rows = []
    for param in range(6):
        for factor in (FACTORS[0], FACTORS[1], 1.0, FACTORS[2], FACTORS[3]):
            if factor == 1.0 and param > 0:
                continue
            row = np.ones(6)
            row[param] = factor
            rows.append(row)
    return np.array(rows)


WEIGHTS = variant_weights()
_GREY_PATCHES = ifs2d.patch_table(GREY)
_PATCH_BITS = ifs2d.patch_table(1)
VARIANTS = len(WEIGHTS)


def hue_palette(period: int = HUE_PERIOD) -> np.ndarray:
    """uint8 [period, 3]: the official ``convert_color`` (S = V = 0.75) for index 0..period-1,
    channel order as the official writes it into its RGB image."""
    out = np.zeros((period, 3), np.uint8)
    for index in range(period):
        s, value = 0.75, 0.75
        hue = 2.0 * math.pi * (float(index % period) / float(period))
        if hue >= 2.0 * math.pi:
            hue -= 2.0 * math.pi
        h = math.floor((3.0 / math.pi) * hue)
        p = value * (1.0 - s)
        q = value * (1.0 - s * ((3.0 / math.pi) * hue - h))
        t = value * (1.0 - s * ((1.0 - (3.0 / math.pi) * hue) + h))
        i8, p8, q8, t8 = (np.uint8(v * 255.0) for v in (value, p, q, t))
        out[index] = [(p8, t8, i8), (p8, i8, q8), (t8, i8, p8), (i8, q8, p8), (i8, p8, t8), (q8, p8, i8)][h]
    return out


_PALETTE = hue_palette()


def item_layout(instance: int, renders: int = RENDERS) -> tuple[int, int, int]:
    """(variant, render, flip) of image ``instance`` of a class (the official loop order)."""
    return instance // (FLIPS * renders), (instance // FLIPS) % renders, instance % FLIPS


def flip_image(canvas: np.ndarray, flip: int) -> np.ndarray:
    """The saved image for ``flip`` from the raw canvas (row = scaled y): 0 the official
    upside-down turn (y up), 1 that flipped top-bottom, 2 flipped left-right, 3 both."""
    views = (canvas[::-1], canvas, canvas[::-1, ::-1], canvas[:, ::-1])
    return views[flip]


@dataclass
class _VariantPoints:
    key: tuple[int, int]
    px: np.ndarray
    py: np.ndarray
    first: int  # index of the first kept point in the orbit (draw counter of its patch)


class FractalDBSource(GeneratedSource):
    """The ShardSource of FractalDB (picklable; the per-variant point cache is not pickled)."""

    name = NAME
    version = VERSION

    def __init__(self, params: ClassParams, *, instances: int, seed: int, image_size: int,
                 points: int, color: str, search: Mapping[str, Any], params_sha256: str | None) -> None:
        self.params = params
        self.per_class, self.seed, self.image_size, self.points = instances, seed, image_size, points
        self.color, self.search, self.params_sha256 = color, dict(search), params_sha256
        self.renders = max(1, math.ceil(instances / (VARIANTS * FLIPS)))
        self._points: _VariantPoints | None = None
        self._scratch: tuple[np.ndarray, ...] | None = None
        self._canvas_key: tuple[int, int, int] | None = None
        self._canvas: np.ndarray | None = None
        self._drawn = 0  # points drawn on the cached canvas

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_points=None, _scratch=None, _canvas_key=None, _canvas=None)
        return state

    def config(self) -> dict[str, Any]:
        return {"classes": len(self.params), "instances": self.per_class, "seed": self.seed,
                "image_size": self.image_size, "points": self.points, "color": self.color,
                "pad": PAD, "keep_origin": True, "factors": list(FACTORS),
                "renders_per_variant": self.renders, "search": self.search,
                "params_sha256": self.params_sha256}

    def item_labels(self, items: np.ndarray) -> np.ndarray:
        """int64 labels of ``items`` (the class of each item index), without rendering."""
        return np.asarray(items, dtype=np.int64) // self.per_class

    def image_shape(self) -> tuple[int, ...]:
        size = self.image_size
        return (size, size, 3) if self.color == "color" else (size, size)

    def variant_points(self, label: int, variant: int) -> _VariantPoints:
        """Pixel coordinates of the kept points of (class, variant); the last one is cached."""
        if self._points is not None and self._points.key == (label, variant):
            return self._points
        if self._scratch is None:
            # Reused: fresh multi-MB arrays cost more in page faults than the chaos game itself.
            self._scratch = (np.empty(self.points), np.empty(self.points),
                             np.empty(self.points, np.int32), np.empty(self.points, np.int32))
        xs, ys, px, py = self._scratch
        cum = self.params.cumulative(label)
        key = np.uint64(ifs2d.stream_key(self.seed, ifs2d.TAG_POINTS, label))
        maps = np.ascontiguousarray(self.params.system(label)[0] * WEIGHTS[variant])
        box = np.empty(4)
        # The official keeps the origin and every point (a NaN orbit loses its last 100 finite ones).
        n = ifs2d.orbit(maps, cum, ifs2d.selection_table(cum), key, xs, ys, box)
        ifs2d.rescale(xs, 0, n, box[0], box[1], self.image_size, PAD, px)
        ifs2d.rescale(ys, 0, n, box[2], box[3], self.image_size, PAD, py)
        # Views into the scratch buffers: valid until the next variant replaces this cache entry.
        self._points = _VariantPoints((label, variant), px[:n], py[:n], 0)
        return self._points

    def canvas(self, label: int, variant: int, render: int) -> np.ndarray:
        """The raw (unflipped) canvas of one render; uint8 [H, W] or [H, W, 3]. Cached (last)."""
        if self._canvas_key == (label, variant, render) and self._canvas is not None:
            return self._canvas
        pts = self.variant_points(label, variant)
        self._drawn = len(pts.px)
        canvas = np.zeros(self.image_shape(), np.uint8)
        key = np.uint64(ifs2d.stream_key(self.seed, ifs2d.TAG_PATCH, label, variant, render))
        if self.color == "color":
            ifs2d.paste_patches_color(canvas, pts.px, pts.py, key, pts.first, _PALETTE, _PATCH_BITS)
        else:
            ifs2d.paste_patches_gray(canvas, pts.px, pts.py, key, pts.first, _GREY_PATCHES)
        self._canvas_key, self._canvas = (label, variant, render), canvas
        return canvas

    def render(self, start: int, stop: int) -> RenderedBatch:
        count = stop - start
        images = np.empty((count, *self.image_shape()), np.uint8)
        meta = {"variant": np.empty(count, np.int16), "render": np.empty(count, np.int16),
                "flip": np.empty(count, np.int8), "n_maps": np.empty(count, np.int8),
                "points_drawn": np.empty(count, np.int32)}
        labels = np.empty(count, np.int64)
        for k, item in enumerate(range(start, stop)):
            label, instance = divmod(item, self.per_class)
            variant, render, flip = item_layout(instance, self.renders)
            images[k] = flip_image(self.canvas(label, variant, render), flip)
            labels[k] = label
            meta["variant"][k], meta["render"][k], meta["flip"][k] = variant, render, flip
            meta["n_maps"][k] = self.params.offsets[label + 1] - self.params.offsets[label]
            meta["points_drawn"][k] = self._drawn
        return RenderedBatch(images, labels, meta, np.arange(start, stop, dtype=np.int64))

    def png_path(self, label: int, metadata: Mapping[str, Any], item: int) -> str:
        name = f"{label:05d}"
        return (f"{name}/{name}_{int(metadata['variant']):02d}_count_{int(metadata['render'])}"
                f"_flip{int(metadata['flip'])}.png")

    def extra_files(self) -> dict[str, bytes]:
        settings = {f"search_{k}": v for k, v in self.search.items()} | {"seed": self.seed}
        return {NPZ_NAME: self.params.to_npz(settings)}


def source_from_config(config: Mapping[str, Any], params: ClassParams) -> FractalDBSource:
    """The source of a data set whose manifest config is ``config``, drawing classes ``params``."""
    return FractalDBSource(params.head(config["classes"]), instances=config["instances"], seed=config["seed"],
                           image_size=config["image_size"], points=config["points"], color=config["color"],
                           search=config["search"], params_sha256=config["params_sha256"])
