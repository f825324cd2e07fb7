"""FractalDB (Kataoka et al., ACCV 2020): 2-D IFS fractals drawn with random 3x3 patches.

Category search (the official ``ifs_search.py``): candidate ``k`` draws N uniform in 2..7 maps of
six parameters a..f U(-1, 1) from ``default_rng([seed, 1, k])``; map i is chosen with probability
|a d - b c| / sum. Its chaos game (``search_points`` points from (0, 0), the origin included) is
drawn as single pixels on a 512 x 512 canvas (min/max box, 6 px padding) and the candidate is
accepted when the filling rate (non-zero pixels / 512^2) is >= ``fill_rate``. The classes are the
first ``classes`` accepted candidates in k order, whatever the number of workers.

Rendering (the official ``make_fractaldb.py`` with patch_gray, 362 px, 200k points): 25 parameter
variants in the official weights-file order, each scaling one parameter in every map
(probabilities are not renormalised): variants 0..4 scale a by 0.2, 0.6, 1 (the identity), 1.4
and 1.8; variants 5..24 scale b, c, d, e, f in turn by 0.2, 0.6, 1.4 and 1.8 (variant v >= 5:
parameter 1 + (v - 5) // 4, factor (v - 5) % 4 of those four) x 10 renders (different random patches on the same points) x 4 flips. Image ``i`` of
a class is variant ``i // 40``, render ``(i // 4) % 10``, flip ``i % 4``. Other ``--instances``
values set the renders per variant to ceil(instances / 100), as the official ``--instance`` flag
does (k renders of all 25 variants x 4 flips), so 100 instances are one render of every variant.

Each render keeps the origin and every orbit point, as the official ``__rescale`` does (only a NaN
orbit loses its points from 100 before the first NaN on), shifts and scales them by their min/max
box into the frame (6 px padding, truncated like the official ``np.uint16``) and pastes, point by point, a
random non-empty 3x3 binary mask at (x + 1, y + 1) in grey 127 on black (zeros overwrite, as PIL's
``paste``). Flip 0 is the official "as is" image (the canvas turned upside down so y points up),
flip 1 top-bottom, flip 2 left-right, flip 3 both.

Random streams (counter-based, see ``fdsl.generators.kernels.ifs2d``): search candidate k's
parameters from ``default_rng([seed, 1, k])`` and its chaos-game draws from (seed, 2, k); a class's
chaos-game draws from (seed, 3, class), shared by its 25 variants as the official shares one fixed
stream; the patch masks of a render from (seed, 4, class, variant, render), draw = orbit index.
So an image is fixed by (seed, class, variant, render, flip), whatever the workers or shards.

The search stops drawing a candidate as soon as the points left cannot reach the threshold, which
never changes its accept/reject decision (accepted candidates are counted in full).

Differences from the official code, all for reproducibility or robustness: every random number is
seeded (the official draws patches from the unseeded ``random`` module); an orbit whose first NaN
comes within 100 points draws nothing (the official fails on the empty array); grey images are
stored single-channel (the official writes RGB with three equal channels). Inf points and flat
axes scale exactly as the official's NumPy code scales them (docs/FIDELITY.md).
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Any

from fdsl.errors import FdslError
from fdsl.generators.classfile import read_params_from
from fdsl.generators.fractaldb.params import (
    DEFAULT_FILL_RATE,
    DEFAULT_SEARCH_POINTS,
    MIN_POINTS,
    PAD,
    SEARCH_SIZE,
    ClassParams,
    check_reachable,
    load_class_params,
    params_digest,
    search_classes,
)
from fdsl.generators.fractaldb.source import (
    COLOR_MODES,
    FLIPS,
    VARIANTS,
    FractalDBSource,
    source_from_config,
)
from fdsl.generators.spec import GeneratorSpec, register_generator
from fdsl.limits import MAX_POINTS, at_most
from fdsl.sources import Unsearched, with_preview

__all__ = ["SPEC", "ClassParams", "FractalDBSource", "load_class_params", "make_source", "prepare_source",
           "search_classes", "source_from_config"]

DEFAULTS = {"image_size": 362, "points": 200_000, "instances": 1000, "fill_rate": DEFAULT_FILL_RATE,
            "search_points": DEFAULT_SEARCH_POINTS, "color": "gray"}
MIN_IMAGE_SIZE = 16


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """FractalDB's own flags (all default None = official value)."""
    group.add_argument("--fill-rate", dest="fill_rate", type=float, default=None,
                       help="category search: accept a candidate when its filling rate (non-zero "
                            f"pixels of a 512x512 point drawing) is >= this, in (0, 1] (default {DEFAULT_FILL_RATE})")
    group.add_argument("--search-points", dest="search_points", type=int, default=None,
                       help=f"category search: chaos-game points per candidate (default {DEFAULT_SEARCH_POINTS})")
    group.add_argument("--color", dest="color", choices=COLOR_MODES, default=None,
                       help="gray: grey-127 patches, single-channel images (default, the paper's "
                            "patch_gray); color: hue cycling with the point index, RGB images")


def _check(classes: int, seed: int, instances: int, image_size: int, points: int, fill_rate: float,
           search_points: int, color: str) -> None:
    if classes <= 0:
        raise FdslError(f"--classes must be positive, got {classes}")
    if seed < 0:
        raise FdslError(f"--seed must be >= 0 for fractaldb, got {seed}")
    max_instances = VARIANTS * FLIPS * 1000
    if not 1 <= instances <= max_instances:
        raise FdslError(f"--instances must be in 1..{max_instances} for fractaldb, got {instances}")
    if image_size < MIN_IMAGE_SIZE:
        raise FdslError(f"--image-size must be >= {MIN_IMAGE_SIZE} for fractaldb, got {image_size}")
    if points < MIN_POINTS:
        raise FdslError(f"--points must be >= {MIN_POINTS} for fractaldb, got {points}")
    if not 0.0 < fill_rate <= 1.0:
        raise FdslError(f"--fill-rate must be in (0, 1], got {fill_rate}")
    if search_points < MIN_POINTS:
        raise FdslError(f"--search-points must be >= {MIN_POINTS}, got {search_points}")
    at_most("--search-points", search_points, MAX_POINTS)
    check_reachable(fill_rate, search_points)
    if color not in COLOR_MODES:
        raise FdslError(f"--color must be one of {', '.join(COLOR_MODES)}, got {color!r}")


def _searched(classes: int, seed: int, fill_rate: float, search_points: int, workers: int, backend: str,
              **source: Any) -> FractalDBSource:
    params = search_classes(classes, seed=seed, fill_rate=fill_rate, search_points=search_points,
                            workers=workers, backend=backend)
    return FractalDBSource(params, seed=seed, search=_search_config(fill_rate, search_points),
                           params_sha256=None, **source)


def _search_config(fill_rate: float, search_points: int) -> dict[str, Any]:
    return {"fill_rate": fill_rate, "search_points": search_points, "size": SEARCH_SIZE, "pad": PAD}


def prepare_source(*, classes: int, instances: int | None = None, seed: int = 0,
                   image_size: int | None = None, points: int | None = None,
                   params_from: str | Path | None = None, workers: int = 1, backend: str = "local",
                   fill_rate: float | None = None, search_points: int | None = None,
                   color: str | None = None) -> functools.partial[FractalDBSource]:
    """Check the settings and return the factory of the FractalDB source, which searches
    ``classes`` classes (or takes them from ``params_from``, a ``classes.npz`` of an earlier run
    or a folder of the official CSVs, read now: no search, the config records their sha256).

    ``None`` takes the official default (1000 instances, 362 px, 200k points, fill rate 0.2,
    100k search points, gray). FdslError (one line) for bad values.
    """
    settings = {"instances": instances, "image_size": image_size, "points": points,
                "fill_rate": fill_rate, "search_points": search_points, "color": color}
    s = {k: DEFAULTS[k] if v is None else v for k, v in settings.items()}
    _check(classes, seed, s["instances"], s["image_size"], s["points"], s["fill_rate"], s["search_points"], s["color"])
    source = {"instances": s["instances"], "image_size": s["image_size"], "points": s["points"], "color": s["color"]}
    if params_from is None:
        searched = functools.partial(_searched, classes, seed, s["fill_rate"], s["search_points"], workers,
                                     backend, **source)
        return with_preview(searched, functools.partial(
            FractalDBSource, Unsearched(classes), seed=seed, params_sha256=None,
            search=_search_config(s["fill_rate"], s["search_points"]), **source))
    if fill_rate is not None or search_points is not None:
        raise FdslError("--fill-rate and --search-points do not apply with --params-from "
                        "(the classes are read, not searched)")
    params, digest = read_params_from(params_from, classes, load_class_params, params_digest)
    return with_preview(functools.partial(FractalDBSource, params, seed=seed, params_sha256=digest,
                                          search={"from_file": Path(params_from).name}, **source))


SPEC = register_generator(GeneratorSpec(
    "fractaldb", "2-D IFS fractals drawn with random 3x3 patches (Kataoka et al., ACCV 2020)",
    prepare_source, add_arguments, defaults={k: DEFAULTS[k] for k in ("instances", "image_size", "points")},
    load_class_params=load_class_params, source_from_config=source_from_config))
make_source = SPEC.make_source  # settings -> the source, made now (searched if need be)
