"""ExFractalDB (Kataoka et al., CVPR 2022): 3-D IFS fractals seen from random viewpoints.

Category search: candidate ``k`` draws N in 2..7 maps of 12 parameters U(-1, 1) (3x3 matrix +
translation) from ``default_rng([seed, 1, k])``, map probabilities proportional to |det A|; its
chaos-game cloud (``search_points`` points from the origin) is min-max normalised jointly to
[-1, 1] and centred, and the candidate is accepted when the variance of x, y and z all exceed the
threshold. The classes are the first ``classes`` accepted candidates in k order, whatever the
number of workers.

Instances: variant 0 is the identity; variant ``v >= 1`` scales one of the 12 parameters (in every
map) by one factor, ordered ring by ring: ring r = 1..6 uses factors 1 - r/10 and 1 + r/10, and
within a ring parameters a..l in order, the smaller factor first. So variants 1..24 are the
official 25-instance table (0.9 / 1.1) and all 145 variants are the official 145-instance table
(0.4..0.9, 1.1..1.6). Probabilities are not renormalised (as the official). Each variant's cloud
(``points`` points, normalised like the search) is seen from ``views`` viewpoints uniform on the
sphere with a random roll; image ``j`` of a class is variant ``j // views``, view ``j % views``.
``--instances`` (images per class) defaults to ``instances_3d * views``; a smaller value keeps the
first images of each class in that order (all views of variant 0, then variant 1, ...), a larger
one is an error. When the cloud of variant slot ``v < instances_3d`` diverges (not finite), the slot
takes the next unused variant of the table (``instances_3d``, ``instances_3d + 1``, ... skipping
diverging ones, slots in order), so every class still has ``instances_3d * views`` images, fixed by
the seed and the class parameters; the image metadata's ``variant`` is the variant actually drawn.

Rendering: perspective camera, fovy 45 degrees, near 1, far 100, at distance 4 looking at the
origin; each point lights one pixel white on black. Differences from the official OpenGL script:
no OpenGL; viewpoints cover the sphere (the official turns the camera about the Y axis only); images
are stored top row first (OpenGL's glReadPixels output, saved as is, is upside down).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import math
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.datasets.jobs import run_tasks
from fdsl.errors import FdslError
from fdsl.generators.kernels import ifs3d
from fdsl.sources import RenderedBatch

log = logging.getLogger(__name__)

DESCRIPTION = "3-D IFS fractals projected from random viewpoints (Kataoka et al., CVPR 2022)"
OPTION_NAMES = ("instances_3d", "views", "no_roll", "variance_threshold", "search_points_3d")

NAME = "exfractaldb"
VERSION = "2"  # 2: a diverging variant is replaced by the next unused one
MAX_MAPS = 7
NUM_PARAMS = 12
PARAM_LETTERS = "abcdefghijkl"
FACTOR_RINGS = 6
MAX_VARIANTS = 1 + NUM_PARAMS * 2 * FACTOR_RINGS  # 145, the official largest table
MIN_SEARCH_POINTS = 100
DEFAULTS = {"instances_3d": 25, "views": 40, "points": 100_000, "image_size": 224,
            "variance_threshold": 0.05, "search_points_3d": 10_000}
SEARCH_CHUNK = 256
TAG_SEARCH, TAG_INSTANCE, TAG_VIEW = 1, 2, 3


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """ExFractalDB's own flags (all default None = official value)."""
    group.add_argument("--instances-3d", dest="instances_3d", type=int, default=None,
                       help=f"parameter variants (3-D models) per class, 1..{MAX_VARIANTS} (default 25)")
    group.add_argument("--views", dest="views", type=int, default=None,
                       help="random viewpoints per 3-D model (default 40)")
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


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An ``np.load``-able .npz whose bytes depend only on the arrays (np.savez stamps the time)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), member.getvalue())
    return buf.getvalue()


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
    """Evaluate candidates [start, stop); picklable for run_tasks."""

    seed: int
    points: int
    threshold: float

    def __call__(self, span: tuple[int, int]) -> list[tuple[int, np.ndarray, np.ndarray]]:
        found = []
        for k in range(*span):
            params, probs, rng = sample_candidate(self.seed, k)
            if accepts(cloud_variances(params, probs, rng.random(self.points)), self.threshold):
                found.append((k, params, probs))
        return found


def search_classes(classes: int, *, seed: int, points: int = 10_000, threshold: float = 0.05,
                   workers: int = 1, backend: str = "local",
                   max_candidates: int | None = None) -> ClassParams:
    """The first ``classes`` accepted candidates in k order (identical for any ``workers``)."""
    limit = max_candidates or 5_000 * classes + 200_000
    job = _SearchChunk(seed, points, threshold)
    found: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    tried = 0
    while len(found) < classes:
        if tried >= limit:
            raise FdslError(f"category search found only {len(found)} of {classes} classes in {tried} "
                            f"candidates; lower --variance-threshold (now {threshold})")
        rate = max(len(found) / tried if tried else 0.013, 0.002)
        chunks = max(workers, math.ceil((classes - len(found)) / rate * 1.15 / SEARCH_CHUNK))
        chunks = min(chunks, math.ceil((limit - tried) / SEARCH_CHUNK))
        spans = [(tried + i * SEARCH_CHUNK, tried + (i + 1) * SEARCH_CHUNK) for i in range(chunks)]

        def on_result(span: tuple[int, int], result: list) -> int:
            found.update({k: (p, q) for k, p, q in result})
            return span[1] - span[0]

        # Spawning a worker costs about a CPU-second: worth it only for a few chunks per worker.
        round_workers = workers if chunks >= 2 * workers else 1
        run_tasks(job, spans, on_result, backend=backend, workers=round_workers,
                  total_items=chunks * SEARCH_CHUNK, unit="cand", desc="exfractaldb search")
        tried += chunks * SEARCH_CHUNK
    keys = sorted(found)[:classes]
    log.info("category search: %d classes from %d candidates (%.2f%% accepted)", classes,
             keys[-1] + 1, 100 * len(found) / tried)
    return _pack([found[k] for k in keys], np.array(keys, dtype=np.int64))


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


def variant_weights(variant: int) -> np.ndarray:
    """Per-parameter scale factors float64 [12] of instance variant ``variant`` (see module doc)."""
    if not 0 <= variant < MAX_VARIANTS:
        raise FdslError(f"variant must be in 0..{MAX_VARIANTS - 1}, got {variant}")
    weights = np.ones(NUM_PARAMS)
    if variant:
        ring, rest = divmod(variant - 1, 2 * NUM_PARAMS)
        param, side = divmod(rest, 2)
        step = (ring + 1) / 10
        weights[param] = 1.0 - step if side == 0 else 1.0 + step
    return weights


# --------------------------------------------------------------------------- rendering


def variant_cloud(classes: ClassParams, label: int, variant: int, seed: int, points: int) -> np.ndarray | None:
    """The normalised, centred float64 [points, 3] cloud of (class, variant); None if it diverges."""
    matrices, shifts, probs = classes.system(label, variant_weights(variant))
    rng = np.random.default_rng([seed, TAG_INSTANCE, label, variant])
    cloud = ifs3d.chaos_game(matrices, shifts, probs, rng.random(points))
    return cloud if ifs3d.normalize_center(cloud) else None


def view_angles(seed: int, label: int, variant: int, view: int, roll: bool) -> tuple[float, float, float]:
    """(azimuth, elevation, roll) in radians: a direction uniform on the sphere and a roll."""
    rng = np.random.default_rng([seed, TAG_VIEW, label, variant, view])
    height, azimuth, spin = rng.uniform(-1.0, 1.0), rng.uniform(0.0, 2 * math.pi), rng.uniform(-math.pi, math.pi)
    return azimuth, math.asin(height), spin if roll else 0.0


class ExFractalSource:
    """ShardSource for ExFractalDB; item ``i`` is class ``i // per_class``, image ``i % per_class``."""

    name = NAME
    version = VERSION

    def __init__(self, classes: ClassParams, *, seed: int, per_class: int, instances_3d: int, views: int,
                 points: int, image_size: int, roll: bool, search: dict[str, Any]) -> None:
        self.classes, self.seed, self.per_class = classes, seed, per_class
        self.instances_3d, self.views, self.points = instances_3d, views, points
        self.image_size, self.roll, self.search = image_size, roll, search
        self._substitutes: dict[int, dict[int, int | None]] = {}

    def substitutes(self, label: int) -> dict[int, int | None]:
        """Variant slot -> the variant drawn instead, for the slots of class ``label`` whose own
        variant diverges (None when no variant of the table is left). Computed once per class."""
        plan = self._substitutes.get(label)
        if plan is None:
            def finite(variant: int) -> bool:
                return variant_cloud(self.classes, label, variant, self.seed, self.points) is not None

            spare = iter(range(self.instances_3d, MAX_VARIANTS))
            slots = min(self.instances_3d, math.ceil(self.per_class / self.views))
            plan = {}
            for slot in range(slots):
                if not finite(slot):
                    plan[slot] = next((v for v in spare if finite(v)), None)
            self._substitutes[label] = plan
        return plan

    def config(self) -> dict[str, Any]:
        return {"seed": self.seed, "classes": len(self.classes.num_maps), "instances": self.per_class,
                "instances_3d": self.instances_3d, "views": self.views, "points": self.points,
                "image_size": self.image_size, "roll": self.roll, "search": self.search}

    def class_names(self) -> list[str]:
        return [f"{c:06d}" for c in range(len(self.classes.num_maps))]

    def num_items(self) -> int:
        return len(self.classes.num_maps) * self.per_class

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
            group_end = min(stop, label * self.per_class + (slot + 1) * self.views,
                            (label + 1) * self.per_class)
            rows = slice(item - start, group_end - start)
            views = np.arange(first_view, first_view + group_end - item)
            variant = slot
            cloud = variant_cloud(self.classes, label, slot, self.seed, self.points)
            substitute = self.substitutes(label)[slot] if cloud is None else None
            if substitute is not None:
                variant = substitute
                cloud = variant_cloud(self.classes, label, variant, self.seed, self.points)
            if cloud is None:
                keep[rows] = False
                failures.append({"class": label, "variant": slot, "items": [item, group_end - 1],
                                 "reason": "the variant's point cloud diverges (not finite) and so do "
                                           f"all spare variants up to {MAX_VARIANTS - 1}"})
            else:
                angles = np.array([view_angles(self.seed, label, variant, int(v), self.roll) for v in views])
                bases = np.stack([ifs3d.camera_basis(*a) for a in angles])
                lit = ifs3d.project_views(cloud, bases, images[rows])
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

    def extra_files(self) -> dict[str, bytes]:
        return {"classes.npz": self.classes.to_npz()}


# --------------------------------------------------------------------------- registry entry


def _positive(name: str, value: int | float | None, default: int | float) -> Any:
    value = default if value is None else value
    if value <= 0:
        raise FdslError(f"--{name} must be positive, got {value}")
    return value


def make_source(*, classes: int, instances: int | None, seed: int, image_size: int | None,
                points: int | None, params_from: Path | None, workers: int | None, backend: str = "local",
                instances_3d: int | None = None, views: int | None = None, no_roll: bool | None = None,
                variance_threshold: float | None = None, search_points_3d: int | None = None) -> ExFractalSource:
    """Search (or load) the class IFS and return the source; FdslError for bad values."""
    if seed < 0:
        raise FdslError(f"--seed must be >= 0 for exfractaldb, got {seed}")
    instances_3d = _positive("instances-3d", instances_3d, DEFAULTS["instances_3d"])
    if instances_3d > MAX_VARIANTS:
        raise FdslError(f"--instances-3d must be at most {MAX_VARIANTS} (the official variant table), got {instances_3d}")
    views = _positive("views", views, DEFAULTS["views"])
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
                           roll=not no_roll, search=search)
