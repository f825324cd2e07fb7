"""ExFractalDB (Kataoka et al., CVPR 2022): 3-D IFS fractals seen from random viewpoints.

Category search: candidate ``k`` draws N in 2..7 maps of 12 parameters U(-1, 1) (3x3 matrix +
translation) from ``default_rng([seed, 1, k])``, map probabilities proportional to |det A|; its
chaos-game cloud (``search_points`` points from the origin) is min-max normalised jointly to
[-1, 1] and centred, and the candidate is accepted when the variance of x, y and z all exceed the
threshold. The classes are the first ``classes`` accepted candidates in k order, whatever the
number of workers.

Instances: variant v is row v of an instance table (``fdsl.generators.exfractaldb_tables``): by
default ``paper25``, the official ``weights_ins25.csv`` (identity and each of the 12 parameters
scaled by 0.9 or 1.1 in every map), or ``released145``, the ``weights_ins145.csv`` that the released
``instance.py`` reads (factors 0.4..1.6). Probabilities are not renormalised (as the official).
Each variant's cloud (``points`` points, 10,000 by default as the released ``instance.py``,
normalised like the search) is seen from ``views`` viewpoints: by default 40 directions uniform on
the sphere with a random roll (the paper's 40 random views), or the released ``render.py``'s
horizontal ring (``--views-mode ring``, 12 views with +-3 degree jitter). Image ``j`` of a class is
variant ``j // views``, view ``j % views``. ``--preset released-code`` selects all the released
scripts' choices at once (145 rows, 12 ring views, images bottom row first as saved from OpenGL).
``--instances`` (images per class) defaults to ``instances_3d * views``; a smaller value keeps the
first images of each class in that order (all views of variant 0, then variant 1, ...), a larger
one is an error. When the cloud of variant slot ``v < instances_3d`` diverges (not finite), the slot
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
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.errors import FdslError
from fdsl.generators import exfractaldb_tables as tables
from fdsl.generators.exfractaldb_source import ExFractalSource, variant_cloud, view_angles
from fdsl.generators.kernels import ifs3d
from fdsl.generators.npzfile import npz_bytes
from fdsl.generators.registry import GeneratorSpec, register_generator
from fdsl.generators.search import CandidateSpan, search_candidates
from fdsl.limits import MAX_POINTS, at_most

__all__ = ["ClassParams", "ExFractalSource", "SPEC", "make_source", "search_classes", "variant_cloud",
           "view_angles"]

NAME = "exfractaldb"
MAX_MAPS = 7
NUM_PARAMS = 12
PARAM_LETTERS = "abcdefghijkl"
MAX_VARIANTS = 145  # rows of each instance table (paper25: 25 + 120 spares)
MIN_SEARCH_POINTS = 100
DEFAULTS = {"instances_3d": 25, "views": 40, "points": 10_000, "image_size": 224,
            "variance_threshold": 0.05, "search_points_3d": 10_000, "instance_table": "paper25",
            "views_mode": "random"}
SEARCH_CHUNK = 256
MAX_VIEWS = 100_000
TAG_SEARCH = 1


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """ExFractalDB's own flags (all default None = official value)."""
    group.add_argument("--preset", dest="preset", choices=tables.PRESETS, default=None,
                       help="released-code: what the released scripts do (instance.py, render.py): "
                            "--instance-table released145 with all 145 rows, --views-mode ring with 12 "
                            "views, 10000 points, images bottom row first as saved from OpenGL; "
                            "flags given as well override it")
    group.add_argument("--instance-table", dest="instance_table", choices=tables.INSTANCE_TABLES, default=None,
                       help="parameter-variant table: paper25 (default, the paper's 25 instances, official "
                            "weights_ins25.csv: factors 0.9/1.1) or released145 (weights_ins145.csv read "
                            "by the released instance.py: factors 0.4..1.6)")
    group.add_argument("--instances-3d", dest="instances_3d", type=int, default=None,
                       help=f"rows of the table used (3-D models per class), 1..{MAX_VARIANTS} "
                            "(default 25; 145 with the preset)")
    group.add_argument("--views-mode", dest="views_mode", choices=tables.VIEW_MODES, default=None,
                       help="random (default, the paper: directions uniform on the sphere, random roll) "
                            "or ring (the released render.py: a horizontal ring from 30 degrees, "
                            "+-3 degree jitter, no elevation or roll)")
    group.add_argument("--views", dest="views", type=int, default=None,
                       help="viewpoints per 3-D model (default 40; 12 with the preset)")
    group.add_argument("--no-roll", dest="no_roll", action="store_true", default=None,
                       help="keep the camera upright (no random roll about the viewing axis)")
    group.add_argument("--variance-threshold", dest="variance_threshold", type=float, default=None,
                       help="category search: accept when the variance of x, y and z of the "
                            "normalised cloud all exceed this (default 0.05)")
    group.add_argument("--search-points-3d", dest="search_points_3d", type=int, default=None,
                       help="category search: chaos-game points per candidate (default 10000)")


# --------------------------------------------------------------------------- class parameters


@dataclass(frozen=True)
class ClassParams:
    """Accepted IFS per class: params float64 [C, 7, 12] (a..l, zero-padded), probs float64 [C, 7],
    num_maps int64 [C], candidate int64 [C] (search index k, -1 when loaded from a file)."""

    params: np.ndarray
    probs: np.ndarray
    num_maps: np.ndarray
    candidate: np.ndarray

    def system(self, label: int, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(matrices [N, 3, 3], shifts [N, 3], probs [N]) of class ``label``, parameters scaled
        by ``weights`` float64 [12] if given."""
        n = int(self.num_maps[label])
        p = self.params[label, :n] * (weights if weights is not None else 1.0)
        return p[:, :9].reshape(n, 3, 3), p[:, 9:].copy(), self.probs[label, :n].copy()

    def to_npz(self) -> bytes:
        return npz_bytes({"params": self.params, "probs": self.probs, "num_maps": self.num_maps,
                          "candidate": self.candidate})


def sample_candidate(seed: int, k: int) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    """Candidate ``k``: params float64 [N, 12], probs float64 [N] and its Generator (for points)."""
    rng = np.random.default_rng([seed, TAG_SEARCH, k])
    n = int(rng.integers(2, MAX_MAPS + 1))
    params = rng.uniform(-1.0, 1.0, (n, NUM_PARAMS))
    dets = np.abs(np.linalg.det(params[:, :9].reshape(n, 3, 3)))
    total = dets.sum()
    probs = dets / total if total > 0 else np.full(n, np.nan)
    return params, probs, rng


def cloud_variances(params: np.ndarray, probs: np.ndarray, uniforms: np.ndarray) -> np.ndarray | None:
    """Axis variances float64 [3] of the normalised, centred cloud; None if it is not finite."""
    if not np.all(np.isfinite(probs)):
        return None
    n = params.shape[0]
    points = ifs3d.chaos_game(params[:, :9].reshape(n, 3, 3), params[:, 9:], probs, uniforms)
    if not ifs3d.normalize_center(points):
        return None
    return ifs3d.axis_variances(points)


def accepts(variances: np.ndarray | None, threshold: float) -> bool:
    """The official acceptance: every axis variance strictly above ``threshold``."""
    return variances is not None and bool(np.all(variances > threshold))


@dataclass(frozen=True)
class _SearchChunk:
    """Evaluate a span of candidates; picklable for run_tasks."""

    seed: int
    points: int
    threshold: float

    def __call__(self, span: CandidateSpan) -> list[tuple[int, np.ndarray, np.ndarray]]:
        found = []
        start, stop = span
        for k in range(start, stop):
            params, probs, rng = sample_candidate(self.seed, k)
            if accepts(cloud_variances(params, probs, rng.random(self.points)), self.threshold):
                found.append((k, params, probs))
        return found


def search_classes(classes: int, *, seed: int, points: int = 10_000, threshold: float = 0.05,
                   workers: int = 1, backend: str = "local",
                   max_candidates: int | None = None) -> ClassParams:
    """The first ``classes`` accepted candidates in k order (identical for any ``workers``)."""
    found = search_candidates(
        _SearchChunk(seed, points, threshold), classes, candidate=lambda hit: hit[0],
        expected_rate=0.013, max_candidates=max_candidates or 5_000 * classes + 200_000,
        too_few=lambda hits, tried: (f"category search found only {hits} of {classes} classes in {tried} "
                                     f"candidates; lower --variance-threshold (now {threshold})"),
        workers=workers, backend=backend, chunk=SEARCH_CHUNK, desc="exfractaldb search")
    return _pack([(p, q) for _, p, q in found], np.array([k for k, _, _ in found], dtype=np.int64))


def _pack(systems: list[tuple[np.ndarray, np.ndarray]], candidate: np.ndarray) -> ClassParams:
    params = np.zeros((len(systems), MAX_MAPS, NUM_PARAMS))
    probs = np.zeros((len(systems), MAX_MAPS))
    num_maps = np.zeros(len(systems), dtype=np.int64)
    for c, (p, q) in enumerate(systems):
        params[c, :len(p)], probs[c, :len(q)], num_maps[c] = p, q, len(p)
    return ClassParams(params, probs, num_maps, candidate)


def load_class_params(path: Path, classes: int) -> ClassParams:
    """The first ``classes`` classes of a classes.npz written by an earlier run."""
    try:
        with np.load(path) as data:
            arrays = {k: data[k] for k in ("params", "probs", "num_maps", "candidate")}
    except (OSError, ValueError, KeyError) as exc:
        raise FdslError(f"--params-from {path}: not an ExFractalDB classes.npz ({exc})") from None
    params, num_maps = arrays["params"], arrays["num_maps"]
    if params.ndim != 3 or params.shape[1:] != (MAX_MAPS, NUM_PARAMS) or len(num_maps) != len(params):
        raise FdslError(f"--params-from {path}: params must be [C, {MAX_MAPS}, {NUM_PARAMS}], got {params.shape}")
    if len(params) < classes:
        raise FdslError(f"--params-from {path} holds {len(params)} classes, fewer than --classes {classes}")
    if np.any(num_maps < 1) or np.any(num_maps > MAX_MAPS):
        raise FdslError(f"--params-from {path}: num_maps must be in 1..{MAX_MAPS}")
    return ClassParams(*(np.ascontiguousarray(arrays[k][:classes]) for k in
                         ("params", "probs", "num_maps", "candidate")))


# --------------------------------------------------------------------------- registry entry


def _positive(name: str, value: int | float | None, default: int | float) -> Any:
    value = default if value is None else value
    if value <= 0:
        raise FdslError(f"--{name} must be positive, got {value}")
    return value


def make_source(*, classes: int, instances: int | None, seed: int, image_size: int | None,
                points: int | None, params_from: Path | None, workers: int | None, backend: str = "local",
                instances_3d: int | None = None, views: int | None = None, no_roll: bool | None = None,
                variance_threshold: float | None = None, search_points_3d: int | None = None,
                preset: str | None = None, instance_table: str | None = None,
                views_mode: str | None = None) -> ExFractalSource:
    """Search (or load) the class IFS and return the source; FdslError for bad values. ``None``
    takes the preset's value if a preset is given, else the default."""
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
    per_class = instances_3d * views
    if instances is not None and instances > per_class:
        raise FdslError(f"--instances {instances} exceeds --instances-3d x --views = {per_class}; "
                        "raise --instances-3d or --views")
    threshold = DEFAULTS["variance_threshold"] if variance_threshold is None else variance_threshold
    if not 0.0 <= threshold < 1.0:
        raise FdslError(f"--variance-threshold must be in [0, 1), got {threshold}")
    search_points = _positive("search-points-3d", search_points_3d, DEFAULTS["search_points_3d"])
    if search_points < MIN_SEARCH_POINTS:
        raise FdslError(f"--search-points-3d must be >= {MIN_SEARCH_POINTS}, got {search_points}")
    at_most("--search-points-3d", search_points, MAX_POINTS)
    if params_from is not None:
        if variance_threshold is not None or search_points_3d is not None:
            raise FdslError("--variance-threshold and --search-points-3d do not apply with --params-from "
                            "(the classes are read, not searched)")
        class_params = load_class_params(params_from, classes)
        search = {"params_sha256": hashlib.sha256(params_from.read_bytes()).hexdigest()}
    else:
        class_params = search_classes(classes, seed=seed, points=search_points, threshold=threshold,
                                      workers=workers or 1, backend=backend)
        search = {"points": search_points, "variance_threshold": threshold}
    return ExFractalSource(class_params, seed=seed, per_class=instances or per_class, instances_3d=instances_3d,
                           views=views, points=_positive("points", points, DEFAULTS["points"]),
                           image_size=_positive("image-size", image_size, DEFAULTS["image_size"]),
                           roll=not no_roll, search=search, instance_table=table, views_mode=mode,
                           gl_rows=bool(fixed.get("gl_rows", False)))


SPEC = register_generator(GeneratorSpec(
    name=NAME,
    description="3-D IFS fractals projected from random viewpoints (Kataoka et al., CVPR 2022)",
    defaults={"instances": "instances-3d x views", "image_size": DEFAULTS["image_size"],
              "points": DEFAULTS["points"]},
    add_arguments=add_arguments,
    make_source=make_source,
))
