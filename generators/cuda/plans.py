"""One launch plan per generator: its class tables on the device and the launch of a batch.

A plan is built once from the generator's CPU source (the class parameters of ``classes.npz`` and
the data set's settings), copies the class tables to the device, and then renders any batch of
item indices with any seed (``--fresh-instances`` changes the seed per epoch, not the tables):
``plan.render(items, seed) -> torch.uint8 tensor [N, H, W] or [N, H, W, C]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fdsl.errors import FdslError
from fdsl.generators.cuda import kernels
from fdsl.generators.cuda.launch import DeviceArrays
from fdsl.generators.kernels import ifs2d, ifs3d_image, rcdb_image


class _Plan:
    """What every plan shares: the device, the image shape and the background value."""

    shape: tuple[int, ...]
    fill = 0

    def __init__(self, arrays: DeviceArrays) -> None:
        self.arrays = arrays

    def render(self, items: np.ndarray, seed: int) -> Any:
        items = np.ascontiguousarray(items, dtype=np.int64)
        self.arrays.refresh_stream()
        handle, out = self.arrays.output((len(items), *self.shape), self.fill)
        self._launch(items, np.uint64(seed), out)
        return self.arrays.result(handle, out)

    def _launch(self, items: np.ndarray, seed: np.uint64, out: Any) -> None:
        raise NotImplementedError


class FractalDBPlan(_Plan):
    """FractalDB: one thread per image runs the class's orbit twice (box, then patches)."""

    def __init__(self, source: Any, arrays: DeviceArrays) -> None:
        from fdsl.generators.fractaldb.source import _PALETTE, GREY, WEIGHTS

        super().__init__(arrays)
        params = source.params
        classes = len(params)
        most = int(params.num_maps.max())
        maps = np.zeros((classes, most, 6))
        edges = np.zeros((classes, most))
        for c in range(classes):
            n = int(params.num_maps[c])
            maps[c, :n] = params.system(c)[0]
            edges[c, :n] = params.cumulative(c)
            edges[c, n - 1] = np.inf  # as ifs2d.orbit: the search always ends at the last map
        colour = source.color == "color"
        palette = _PALETTE if colour else np.array([[GREY]], np.uint8)
        size = source.image_size
        self.shape = (size, size, palette.shape[1])
        self.source = source
        self.tables = [arrays.table(a) for a in (maps, edges, WEIGHTS, palette, ifs2d.patch_table(1))]

    def render(self, items: np.ndarray, seed: int) -> Any:
        images = super().render(items, seed)
        return images[..., 0] if self.shape[2] == 1 else images  # grey: [N, H, W], a view

    def _launch(self, items: np.ndarray, seed: np.uint64, out: Any) -> None:
        from fdsl.generators.fractaldb.params import PAD

        s = self.source
        maps, edges, weights, palette, bits = self.tables
        self.arrays.launch(kernels.fractaldb, len(items), self.arrays.upload(items), seed,
                           s.per_class, s.renders, maps, edges, weights, s.points, s.image_size,
                           PAD, palette, bits, out)


class ExFractalDBPlan(_Plan):
    """ExFractalDB: one thread per view runs its model's orbit three times; the variant of each
    slot (a spare row when the slot's cloud diverges) and the cameras are worked out on the host,
    the clouds' divergence by a kernel."""

    def __init__(self, source: Any, arrays: DeviceArrays) -> None:
        from fdsl.generators.exfractaldb import tables

        super().__init__(arrays)
        c = source.params
        self.source = source
        self.shape = (source.image_size, source.image_size)
        self.tables = [arrays.table(a) for a in (*ifs3d_image.class_tables(c.params, c.probs, c.num_maps),
                                                  tables.instance_table(source.instance_table))]
        self._plans: dict[int, dict[int, dict[int, int | None]]] = {}

    def _valid(self, labels: np.ndarray, variants: np.ndarray, seed: np.uint64) -> np.ndarray:
        handle, ok = self.arrays.output((len(labels),), 0)
        self.arrays.launch(kernels.exfractaldb_valid, len(labels), self.arrays.upload(labels),
                           self.arrays.upload(variants), seed, self.source.points, *self.tables, ok)
        return self.arrays.result(handle, ok).cpu().numpy().astype(bool)

    def substitutes(self, seed: np.uint64) -> dict[int, dict[int, int | None]]:
        """Class -> its slots' substitutes (``ExFractalDBSource.substitutes``) for ``seed``: every
        class's slots judged in one launch the first time a seed is seen (one wait for the device
        per seed), the spare rows only of classes that need them."""
        plans = self._plans.get(int(seed))
        if plans is None:
            s = self.source
            classes, count = len(s.params), s.instances_3d
            ok = self._valid(np.repeat(np.arange(classes, dtype=np.int64), count),
                             np.tile(np.arange(count, dtype=np.int64), classes), seed).reshape(classes, count)
            spares = np.arange(count, s.table_rows, dtype=np.int64)
            plans = {}
            for label in np.flatnonzero(~ok.all(axis=1)).tolist():  # rare: a diverging slot
                spare_ok = self._valid(np.full(len(spares), label, np.int64), spares, seed)
                plans[label] = ifs3d_image.substitute_plan(ok[label].tolist(), spares.tolist(),
                                                           lambda v, good=spare_ok: bool(good[v - count]))
            self._plans = {int(seed): plans}  # one seed (epoch) at a time
        return plans

    def variants(self, labels: np.ndarray, slots: np.ndarray, seed: np.uint64) -> np.ndarray:
        """The variant drawn in each (label, slot), as ``ExFractalDBSource.substitutes`` picks it."""
        plans = self.substitutes(seed)
        out = slots.copy()
        for k in np.flatnonzero(np.isin(labels, list(plans))).tolist():
            variant = plans[int(labels[k])].get(int(slots[k]), int(slots[k]))
            if variant is None:
                raise FdslError(f"exfractaldb class {int(labels[k])}: slot {int(slots[k])}'s cloud and every "
                                "spare row of the instance table diverge; the data set has no such image")
            out[k] = variant
        return out

    def _launch(self, items: np.ndarray, seed: np.uint64, out: Any) -> None:
        s = self.source
        labels, j = np.divmod(items, s.per_class)
        slots, views = np.divmod(j, s.views)
        variants = self.variants(labels, slots, seed)
        angles = np.empty((len(items), 3))
        cameras = np.empty((len(items), 3, 3))
        ifs3d_image.view_cameras(seed, labels, variants, views, s.roll, s.views_mode == "ring", s.views,
                                 s.image_size, angles, cameras)
        self.arrays.launch(kernels.exfractaldb, len(items), self.arrays.upload(labels),
                           self.arrays.upload(variants), seed, s.points, *self.tables,
                           self.arrays.upload(cameras), bool(s.gl_rows), out)


class RcdbPlan(_Plan):
    """RCDB: one thread per image draws its contours on the white canvas."""

    fill = 255

    def __init__(self, source: Any, arrays: DeviceArrays) -> None:
        super().__init__(arrays)
        c = source.params
        self.source = source
        self.shape = (source.image_size, source.image_size)
        self.tables = [arrays.table(a) for a in (c.vertices.astype(np.int64), c.contours.astype(np.int64),
                                                  c.perlin.astype(np.float64), c.offset.astype(np.float64),
                                                  *rcdb_image.trig_tables())]

    def _launch(self, items: np.ndarray, seed: np.uint64, out: Any) -> None:
        s = self.source
        self.arrays.launch(kernels.rcdb, len(items), self.arrays.upload(items), seed, s.per_class,
                           *self.tables, float(s.broken_fraction), out)


class LineDBPlan(_Plan):
    """LineDB: one thread per image draws its lines on the white canvas."""

    fill = 255

    def __init__(self, source: Any, arrays: DeviceArrays) -> None:
        super().__init__(arrays)
        self.source = source
        self.shape = (source.image_size, source.image_size)
        self.counts = arrays.table(np.asarray(source.line_counts, np.int64))

    def _launch(self, items: np.ndarray, seed: np.uint64, out: Any) -> None:
        s = self.source
        self.arrays.launch(kernels.linedb, len(items), self.arrays.upload(items), seed, s.per_class,
                           self.counts, bool(s.shuffle_counts), out)


PLANS = {"fractaldb": FractalDBPlan, "exfractaldb": ExFractalDBPlan, "rcdb": RcdbPlan, "linedb": LineDBPlan}


def make_plan(source: Any, arrays: DeviceArrays | None = None) -> _Plan:
    """The plan of a generator's source (FdslError for a generator without GPU kernels)."""
    plan = PLANS.get(source.name)
    if plan is None:
        raise FdslError(f"generator {source.name!r} has no GPU kernels; use device='cpu'")
    return plan(source, arrays or DeviceArrays())
