"""ExFractalDB rendering: each class's 3-D models (rows of an instance table) seen from its views.

See ``fdsl.generators.exfractaldb`` for the data set and ``fdsl.generators.exfractaldb.tables`` for
the instance tables and view modes. Model (class, variant) draws its ``points`` chaos-game points
from ``default_rng([seed, 2, class, variant])``; view v of it its angles (and ring jitter) from
``default_rng([seed, 3, class, variant, v])``; so every image is fixed by the seed, the class
parameters and its (variant, view), whatever the workers or shards.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

import fdsl.generators.exfractaldb.tables as tables
from fdsl.generators.exfractaldb.params import ClassParams
from fdsl.generators.kernels import ifs3d
from fdsl.generators.sourcebase import GeneratedSource
from fdsl.sources import RenderedBatch

NAME = "exfractaldb"
VERSION = "3"  # 3: official weights_ins25 order, 10k points, instance tables and view modes
TAG_INSTANCE, TAG_VIEW = 2, 3


def variant_cloud(params: ClassParams, label: int, variant: int, seed: int, points: int,
                  table: str = "paper25") -> np.ndarray | None:
    """The normalised, centred float64 [points, 3] cloud of (class, row ``variant`` of ``table``);
    None if it diverges (the official writes no model then)."""
    matrices, shifts, probs = params.system(label, tables.instance_table(table)[variant])
    rng = np.random.default_rng([seed, TAG_INSTANCE, label, variant])
    cloud = ifs3d.chaos_game(matrices, shifts, probs, rng.random(points))
    return cloud if ifs3d.normalize_center(cloud) else None


def view_angles(seed: int, label: int, variant: int, view: int, roll: bool, mode: str = "random",
                views: int = 1) -> tuple[float, float, float]:
    """(azimuth, elevation, roll) in radians of view ``view`` (of ``views``) of a model."""
    rng = np.random.default_rng([seed, TAG_VIEW, label, variant, view])
    if mode == "ring":
        return tables.ring_view(rng, view, views)
    return tables.random_view(rng, roll)


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

    def cloud(self, label: int, variant: int) -> np.ndarray | None:
        return variant_cloud(self.params, label, variant, self.seed, self.points, self.instance_table)

    def substitutes(self, label: int) -> dict[int, int | None]:
        """Variant slot -> the variant drawn instead, for the slots of class ``label`` whose own
        variant diverges (None when no row of the table is left). Computed once per class."""
        plan = self._substitutes.get(label)
        if plan is None:
            spare = iter(range(self.instances_3d, self.table_rows))
            plan = {}
            for slot in range(self.instances_3d):
                if self.cloud(label, slot) is None:
                    plan[slot] = next((v for v in spare if self.cloud(label, v) is not None), None)
            self._substitutes[label] = plan
        return plan

    def config(self) -> dict[str, Any]:
        return {"seed": self.seed, "classes": len(self.params), "instances": self.per_class,
                "instances_3d": self.instances_3d, "views": self.views, "points": self.points,
                "image_size": self.image_size, "roll": self.roll, "search": self.search,
                "instance_table": self.instance_table, "views_mode": self.views_mode, "gl_rows": self.gl_rows}

    def _draw_model(self, cloud: np.ndarray, label: int, variant: int, views: np.ndarray,
                    out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project ``cloud`` into ``out`` uint8 [V, H, W] for ``views``; (angles [V, 3], lit [V])."""
        angles = np.array([view_angles(self.seed, label, variant, int(v), self.roll, self.views_mode, self.views)
                           for v in views])
        bases = np.stack([ifs3d.camera_basis(*a) for a in angles])
        lit = ifs3d.project_views(cloud, bases, out)
        if self.gl_rows:  # the released script saves glReadPixels' rows, bottom row first
            out[:] = out[:, ::-1].copy()
        return angles, lit

    def render(self, start: int, stop: int) -> RenderedBatch:
        size = self.image_size
        images = np.zeros((stop - start, size, size), dtype=np.uint8)
        meta = {k: np.zeros(stop - start, dtype=np.int32) for k in ("variant", "view")}
        meta.update({k: np.zeros(stop - start, dtype=np.float32) for k in ("azimuth", "elevation", "roll", "fill")})
        keep = np.ones(stop - start, dtype=bool)
        failures: list[dict[str, Any]] = []
        item = start
        while item < stop:
            # One 3-D model (class, variant) at a time: its cloud is shared by all its views.
            label, j = divmod(item, self.per_class)
            slot, first_view = divmod(j, self.views)
            group_end = min(stop, label * self.per_class + (slot + 1) * self.views)
            rows = slice(item - start, group_end - start)
            views = np.arange(first_view, first_view + group_end - item)
            variant = slot
            cloud = self.cloud(label, slot)
            substitute = self.substitutes(label)[slot] if cloud is None else None
            if substitute is not None:
                variant = substitute
                cloud = self.cloud(label, variant)
            if cloud is None:
                keep[rows] = False
                failures.append({"class": label, "variant": slot, "items": [item, group_end - 1],
                                 "reason": "the variant's point cloud diverges (not finite) and so do "
                                           f"all spare rows of the {self.instance_table} table"})
            else:
                angles, lit = self._draw_model(cloud, label, variant, views, images[rows])
                meta["variant"][rows], meta["view"][rows] = variant, views
                for col, key in enumerate(("azimuth", "elevation", "roll")):
                    meta[key][rows] = np.degrees(angles[:, col])
                meta["fill"][rows] = lit / (size * size)
            item = group_end
        items = np.arange(start, stop, dtype=np.int64)[keep]
        return RenderedBatch(images[keep], items // self.per_class, {k: v[keep] for k, v in meta.items()},
                             items, failures)

    def png_path(self, label: int, metadata: Mapping[str, Any], item: int) -> str:
        # The official render.py layout: <class>/<class>_<model 5 digits>_<view 3 digits>.png
        return f"{label:06d}/{label:06d}_{int(metadata['variant']):05d}_{int(metadata['view']):03d}.png"


def source_from_config(config: Mapping[str, Any], params: ClassParams) -> ExFractalDBSource:
    """The source of a data set whose manifest config is ``config``, drawing classes ``params``."""
    return ExFractalDBSource(params.head(config["classes"]), seed=config["seed"], instances_3d=config["instances_3d"],
                             views=config["views"], points=config["points"], image_size=config["image_size"],
                             roll=config["roll"], search=config["search"], instance_table=config["instance_table"],
                             views_mode=config["views_mode"], gl_rows=config["gl_rows"])
