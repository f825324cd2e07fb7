"""ExFractalDB rendering: each class's 3-D models (rows of an instance table) seen from its views.

See ``fdsl.generators.exfractaldb`` for the data set and ``fdsl.generators.exfractaldb.tables`` for
the instance tables and view modes. Model (class, variant) draws its ``points`` chaos-game points
from the counter-based stream ``(seed, 2, class, variant)``; view v of it its angles (and ring
jitter) from ``(seed, 3, class, variant, v)`` (``fdsl.generators.kernels.ifs3d_image``, whose
kernels the CPU and the GPU share); so every image is fixed by the seed, the class parameters and
its (variant, view), whatever the workers, shards or device.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np

import fdsl.generators.exfractaldb.tables as tables
from fdsl.generators.exfractaldb.params import ClassParams
from fdsl.generators.kernels import ifs3d_image
from fdsl.generators.sourcebase import GeneratedSource
from fdsl.sources import RenderedBatch

NAME = "exfractaldb"
# 3: official weights_ins25 order, 10k points, instance tables and view modes; 4: counter-based
# streams for the models' points and the views (shared with the GPU kernel)
VERSION = "4"


def variant_cloud(params: ClassParams, label: int, variant: int, seed: int, points: int,
                  table: str = "paper25") -> np.ndarray | None:
    """The normalised, centred float64 [points, 3] cloud of (class, row ``variant`` of ``table``);
    None if it diverges (the official writes no model then)."""
    xs, ys, zs = np.empty((3, points))
    tabled = ifs3d_image.class_tables(params.params, params.probs, params.num_maps)
    if not ifs3d_image.cloud_points(label, variant, np.uint64(seed), points, *tabled,
                                    tables.instance_table(table), xs, ys, zs):
        return None
    return np.stack([xs, ys, zs], axis=1)


def view_angles(seed: int, label: int, variant: int, view: int, roll: bool, mode: str = "random",
                views: int = 1) -> tuple[float, float, float]:
    """(azimuth, elevation, roll) in radians of view ``view`` (of ``views``) of a model."""
    return ifs3d_image.view_angles(np.uint64(seed), label, variant, view, roll, mode == "ring", views)


class ExFractalDBSource(GeneratedSource):
    """ShardSource for ExFractalDB; item ``i`` is class ``i // per_class``, image ``i % per_class``
    (``per_class = instances_3d * views``): variant slot ``j // views``, view ``j % views`` of
    image ``j``."""

    name = NAME
    version = VERSION
    name_digits = 6

    def __init__(self, params: ClassParams, *, seed: int, instances_3d: int, views: int,
                 points: int, image_size: int, roll: bool, search: dict[str, Any],
                 instance_table: str = "paper25", views_mode: str = "random", gl_rows: bool = False) -> None:
        self.params, self.seed, self.per_class = params, seed, instances_3d * views
        self.instances_3d, self.views, self.points = instances_3d, views, points
        self.image_size, self.roll, self.search = image_size, roll, search
        self.instance_table, self.views_mode, self.gl_rows = instance_table, views_mode, gl_rows
        self.table_rows = len(tables.instance_table(instance_table))
        self._substitutes: dict[int, dict[int, int | None]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("kernel_tables", None)  # cached, rebuilt on use
        return state

    @functools.cached_property
    def kernel_tables(self) -> tuple[np.ndarray, ...]:
        """(params, cumulative, num_maps, instance table): the kernels' class tables."""
        c = self.params
        return (*ifs3d_image.class_tables(c.params, c.probs, c.num_maps), tables.instance_table(self.instance_table))

    def cloud(self, label: int, variant: int) -> np.ndarray | None:
        return variant_cloud(self.params, label, variant, self.seed, self.points, self.instance_table)

    def valid(self, label: int, variant: int) -> bool:
        """Whether model (label, variant)'s cloud is drawable (does not diverge)."""
        return bool(ifs3d_image.model_valid(label, variant, np.uint64(self.seed), self.points, *self.kernel_tables,
                                            np.empty((ifs3d_image.MAX_MAPS, ifs3d_image.NUM_PARAMS)),
                                            np.empty(ifs3d_image.FRAME)))

    def substitutes(self, label: int) -> dict[int, int | None]:
        """Variant slot -> the variant drawn instead, for the slots of class ``label`` whose own
        variant diverges (None when no row of the table is left). Computed once per class."""
        plan = self._substitutes.get(label)
        if plan is None:
            slot_ok = [self.valid(label, slot) for slot in range(self.instances_3d)]
            plan = ifs3d_image.substitute_plan(slot_ok, range(self.instances_3d, self.table_rows),
                                               lambda v: self.valid(label, v))
            self._substitutes[label] = plan
        return plan

    def config(self) -> dict[str, Any]:
        return {"seed": self.seed, "classes": len(self.params), "instances": self.per_class,
                "instances_3d": self.instances_3d, "views": self.views, "points": self.points,
                "image_size": self.image_size, "roll": self.roll, "search": self.search,
                "instance_table": self.instance_table, "views_mode": self.views_mode, "gl_rows": self.gl_rows}

    def render(self, start: int, stop: int) -> RenderedBatch:
        size = self.image_size
        items = np.arange(start, stop, dtype=np.int64)
        labels, j = np.divmod(items, self.per_class)
        slots, views = np.divmod(j, self.views)
        variants = slots.copy()
        drawable = np.ones(len(items), bool)
        for k, (label, slot) in enumerate(zip(labels.tolist(), slots.tolist(), strict=True)):
            variant = self.substitutes(label).get(slot, slot)  # a diverging slot's substitute
            drawable[k] = variant is not None
            variants[k] = slot if variant is None else variant
        angles = np.empty((len(items), 3))
        cameras = np.empty((len(items), 3, 3))
        seed = np.uint64(self.seed)
        ifs3d_image.view_cameras(seed, labels, variants, views, self.roll, self.views_mode == "ring", self.views,
                                 size, angles, cameras)
        images = np.empty((len(items), size, size), dtype=np.uint8)
        lit = np.empty(len(items), np.int64)
        keep = drawable
        ifs3d_image.render_models(labels[keep], variants[keep], cameras[keep], seed, self.points,
                                  *self.kernel_tables, self.gl_rows, images[: keep.sum()], lit[: keep.sum()])
        failures = [{"class": int(label), "variant": int(slot), "items": [int(items[k]), int(items[k])],
                     "reason": "the variant's point cloud diverges (not finite) and so do all spare rows of "
                               f"the {self.instance_table} table"}
                    for k, (label, slot) in enumerate(zip(labels, slots, strict=True)) if not drawable[k]]
        meta = {"variant": variants[keep].astype(np.int32), "view": views[keep].astype(np.int32)}
        for col, key in enumerate(("azimuth", "elevation", "roll")):
            meta[key] = np.degrees(angles[keep, col]).astype(np.float32)
        meta["fill"] = (lit[: keep.sum()] / (size * size)).astype(np.float32)
        return RenderedBatch(images[: keep.sum()], labels[keep], meta, items[keep], _merged(failures))

    def png_path(self, label: int, metadata: Mapping[str, Any], item: int) -> str:
        # The official render.py layout: <class>/<class>_<model 5 digits>_<view 3 digits>.png
        return f"{label:06d}/{label:06d}_{int(metadata['variant']):05d}_{int(metadata['view']):03d}.png"


def _merged(failures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One failure per run of consecutive items of the same model."""
    out: list[dict[str, Any]] = []
    for f in failures:
        last = out[-1] if out else None
        if last and (last["class"], last["variant"]) == (f["class"], f["variant"]) and last["items"][1] + 1 == f["items"][0]:
            last["items"][1] = f["items"][1]
        else:
            out.append(f)
    return out


def source_from_config(config: Mapping[str, Any], params: ClassParams) -> ExFractalDBSource:
    """The source of a data set whose manifest config is ``config``, drawing classes ``params``."""
    return ExFractalDBSource(params.head(config["classes"]), seed=config["seed"], instances_3d=config["instances_3d"],
                             views=config["views"], points=config["points"], image_size=config["image_size"],
                             roll=config["roll"], search=config["search"], instance_table=config["instance_table"],
                             views_mode=config["views_mode"], gl_rows=config["gl_rows"])
