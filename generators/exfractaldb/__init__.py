"""ExFractalDB (Kataoka et al., CVPR 2022): 3-D IFS fractals seen from random viewpoints.

Category search: candidate ``k`` draws N in 2..7 maps of 12 parameters U(-1, 1) (3x3 matrix +
translation) from ``default_rng([seed, 1, k])``, map probabilities proportional to |det A|; its
chaos-game cloud (``search_points`` points from the origin) is min-max normalised jointly to
[-1, 1] and centred, and the candidate is accepted when the variance of x, y and z all exceed the
threshold. The classes are the first ``classes`` accepted candidates in k order, whatever the
number of workers.

Instances: variant v is row v of an instance table (``fdsl.generators.exfractaldb.tables``): by
default ``paper25``, the official ``weights_ins25.csv`` (identity and each of the 12 parameters
scaled by 0.9 or 1.1 in every map), or ``released145``, the ``weights_ins145.csv`` that the released
``instance.py`` reads (factors 0.4..1.6). Probabilities are not renormalised (as the official).
Each variant's cloud (``points`` points, 10,000 by default as the released ``instance.py``,
normalised like the search) is seen from ``views`` viewpoints: by default 40 directions uniform on
the sphere with a random roll (the paper's 40 random views), or the released ``render.py``'s
horizontal ring (``--views-mode ring``, 12 views with +-3 degree jitter). Image ``j`` of a class is
variant ``j // views``, view ``j % views``. ``--preset released-code`` selects all the released
scripts' choices at once (145 rows, 12 ring views, images bottom row first as saved from OpenGL).
A class has ``instances_3d * views`` images, in that order (all views of variant 0, then variant 1,
...); set them with ``--instances-3d`` and ``--views``. ``--instances`` (images per class) is
accepted only when it equals that product, so the manifest's ``instances``, ``instances_3d`` and
``views`` always describe what was made. When the cloud of variant slot ``v < instances_3d`` diverges (not finite), the slot
takes the next unused row of the table (``instances_3d``, ``instances_3d + 1``, ... skipping
diverging ones, slots in order; the official writes no model and the class has fewer images), so every class still has ``instances_3d * views`` images, fixed by
the seed and the class parameters; the image metadata's ``variant`` is the variant actually drawn.

Rendering: perspective camera, fovy 45 degrees, near 1, far 100, at distance 4 looking at the
origin; each point lights one pixel white on black. Differences from the official OpenGL script
(docs/FIDELITY.md): no OpenGL (float64 instead of the GPU's float32); images are stored top row
first unless the preset asks for OpenGL's order.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Any

import fdsl.generators.exfractaldb.tables as tables
from fdsl.errors import FdslError
from fdsl.generators.classfile import read_params_from
from fdsl.generators.exfractaldb.params import (
    DEFAULT_SEARCH_POINTS,
    DEFAULT_THRESHOLD,
    ClassParams,
    load_class_params,
    search_classes,
)
from fdsl.generators.exfractaldb.source import NAME, ExFractalDBSource, source_from_config
from fdsl.generators.spec import GeneratorSpec, register_generator
from fdsl.limits import MAX_POINTS, at_most
from fdsl.sources import Unsearched, with_preview

__all__ = ["SPEC", "ClassParams", "ExFractalDBSource", "load_class_params", "make_source", "prepare_source",
           "search_classes", "source_from_config"]

MAX_VARIANTS = 145  # rows of each instance table (paper25: 25 + 120 spares)
MIN_SEARCH_POINTS = 100
MAX_VIEWS = 100_000
DEFAULTS = {"instances_3d": 25, "views": 40, "points": 10_000, "image_size": 224,
            "variance_threshold": DEFAULT_THRESHOLD, "search_points_3d": DEFAULT_SEARCH_POINTS,
            "instance_table": "paper25", "views_mode": "random"}


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """ExFractalDB's own flags (all default None = official value)."""
    add = group.add_argument
    add("--preset", dest="preset", choices=tables.PRESETS, default=None,
        help="released-code: what the released scripts do (instance.py, render.py): --instance-table "
             "released145 with all 145 rows, --views-mode ring with 12 views, 10000 points, images bottom "
             "row first as saved from OpenGL; flags given as well override it")
    add("--instance-table", dest="instance_table", choices=tables.INSTANCE_TABLES, default=None,
        help="parameter-variant table: paper25 (default, the paper's 25 instances, official weights_ins25.csv: "
             "factors 0.9/1.1) or released145 (weights_ins145.csv read by the released instance.py: factors 0.4..1.6)")
    add("--instances-3d", dest="instances_3d", type=int, default=None,
        help=f"rows of the table used (3-D models per class), 1..{MAX_VARIANTS} (default 25; 145 with the "
             "preset); a class has --instances-3d x --views images")
    add("--views-mode", dest="views_mode", choices=tables.VIEW_MODES, default=None,
        help="random (default, the paper: directions uniform on the sphere, random roll) or ring (the released "
             "render.py: a horizontal ring from 30 degrees, +-3 degree jitter, no elevation or roll)")
    add("--views", dest="views", type=int, default=None, help="viewpoints per 3-D model (default 40; 12 with the preset)")
    add("--no-roll", dest="no_roll", action="store_true", default=None,
        help="keep the camera upright (no random roll about the viewing axis)")
    add("--variance-threshold", dest="variance_threshold", type=float, default=None,
        help="category search: accept when the variance of x, y and z of the normalised cloud all exceed "
             f"this (default {DEFAULT_THRESHOLD})")
    add("--search-points-3d", dest="search_points_3d", type=int, default=None,
        help=f"category search: chaos-game points per candidate (default {DEFAULT_SEARCH_POINTS})")


def _positive(name: str, value: int | float | None, default: int | float) -> Any:
    value = default if value is None else value
    if value <= 0:
        raise FdslError(f"--{name} must be positive, got {value}")
    return value


def _searched(classes: int, seed: int, search_points: int, threshold: float, workers: int, backend: str,
              **source: Any) -> ExFractalDBSource:
    params = search_classes(classes, seed=seed, points=search_points, threshold=threshold, workers=workers,
                            backend=backend)
    return ExFractalDBSource(params, seed=seed, search=_search_config(search_points, threshold), **source)


def _search_config(search_points: int, threshold: float) -> dict[str, Any]:
    return {"points": search_points, "variance_threshold": threshold}


def prepare_source(*, classes: int, instances: int | None = None, seed: int = 0, image_size: int | None = None,
                   points: int | None = None, params_from: str | Path | None = None, workers: int = 1,
                   backend: str = "local",
                   instances_3d: int | None = None, views: int | None = None, no_roll: bool | None = None,
                   variance_threshold: float | None = None, search_points_3d: int | None = None,
                   preset: str | None = None, instance_table: str | None = None,
                   views_mode: str | None = None) -> functools.partial[ExFractalDBSource]:
    """Check the settings (reading ``params_from`` if given) and return the factory of the
    source, which searches the class IFS unless they were read; FdslError for bad values.
    ``None`` takes the preset's value if a preset is given, else the default."""
    fixed = tables.preset_settings(preset)
    instances_3d = fixed.get("instances_3d") if instances_3d is None else instances_3d
    views = fixed.get("views") if views is None else views
    points = fixed.get("points") if points is None else points
    table = instance_table or fixed.get("instance_table") or DEFAULTS["instance_table"]
    mode = views_mode or fixed.get("views_mode") or DEFAULTS["views_mode"]
    tables.instance_table(table)
    if mode not in tables.VIEW_MODES:
        raise FdslError(f"--views-mode must be one of {', '.join(tables.VIEW_MODES)}, got {mode!r}")
    if seed < 0:
        raise FdslError(f"--seed must be >= 0 for exfractaldb, got {seed}")
    instances_3d = _positive("instances-3d", instances_3d, DEFAULTS["instances_3d"])
    if instances_3d > MAX_VARIANTS:
        raise FdslError(f"--instances-3d must be at most {MAX_VARIANTS} (the rows of the instance table), "
                        f"got {instances_3d}")
    views = _positive("views", views, DEFAULTS["views"])
    at_most("--views", views, MAX_VIEWS)
    if instances is not None and instances != instances_3d * views:
        raise FdslError(f"--instances {instances} does not fit --db exfractaldb, whose classes have --instances-3d "
                        f"x --views = {instances_3d} x {views} = {instances_3d * views} images; set "
                        "--instances-3d and --views instead")
    threshold = DEFAULTS["variance_threshold"] if variance_threshold is None else variance_threshold
    if not 0.0 <= threshold < 1.0:
        raise FdslError(f"--variance-threshold must be in [0, 1), got {threshold}")
    search_points = _positive("search-points-3d", search_points_3d, DEFAULTS["search_points_3d"])
    if search_points < MIN_SEARCH_POINTS:
        raise FdslError(f"--search-points-3d must be >= {MIN_SEARCH_POINTS}, got {search_points}")
    at_most("--search-points-3d", search_points, MAX_POINTS)
    source = {"instances_3d": instances_3d, "views": views, "points": _positive("points", points, DEFAULTS["points"]),
              "image_size": _positive("image-size", image_size, DEFAULTS["image_size"]), "roll": not no_roll,
              "instance_table": table, "views_mode": mode, "gl_rows": bool(fixed.get("gl_rows", False))}
    if params_from is None:
        searched = functools.partial(_searched, classes, seed, search_points, threshold, workers, backend, **source)
        return with_preview(searched, functools.partial(
            ExFractalDBSource, Unsearched(classes), seed=seed, search=_search_config(search_points, threshold),
            **source))
    if variance_threshold is not None or search_points_3d is not None:
        raise FdslError("--variance-threshold and --search-points-3d do not apply with --params-from "
                        "(the classes are read, not searched)")
    params, digest = read_params_from(params_from, classes, load_class_params)
    return with_preview(functools.partial(ExFractalDBSource, params, seed=seed, search={"params_sha256": digest},
                                          **source))


SPEC = register_generator(GeneratorSpec(
    NAME, "3-D IFS fractals projected from random viewpoints (Kataoka et al., CVPR 2022)",
    prepare_source, add_arguments, defaults={"instances": "instances-3d x views", "image_size": DEFAULTS["image_size"],
                                             "points": DEFAULTS["points"]},
    load_class_params=load_class_params, source_from_config=source_from_config))
make_source = SPEC.make_source  # settings -> the source, made now (searched if need be)
