"""RCDB, the Radial Contour DataBase (Kataoka et al., CVPR 2022): noisy concentric polygons.

Per class (``default_rng([seed, 1, class])``): vertices ``int(Exponential(mean 100))`` redrawn until
in 3..200, contours ``randint(1, 200)``, Perlin coefficient c ~ U(0, 4), radial offset ~ U(0, 0.1).
Per image (the counter-based stream ``(seed, 2, class, instance)`` that the CPU and the GPU kernels
share, ``fdsl.generators.kernels.rcdb_image``): radius randint(0, 100), oval factors for x then
y ~ U(1, 2), centre ``(512 + randint(-400, 400)) / 2`` for y then x, then per contour a grey level
randint(0, 256) clipped to 255 (the official ``randint(0, image_size / 2)`` at 512 px, which
Pillow clips) and two uniforms U(0, 1e4) per vertex (x then y noise inputs).

Drawing (the official make_rcdb.py algorithm): vertex v starts at (cos, sin)(2 pi v / V) * radius *
oval; each contour moves every vertex by ``-(cos, sin) * (noise - offset)`` with noise =
pnoise1(u) * 2c - c (``fdsl.generators.kernels.perlin``, equal to the ``noise`` package's),
cumulatively, and draws the closed 1 px polyline on a white canvas. Geometry is
in the official 512 px units and scaled by ``image_size / 512`` (so 512 px is the official image).
The paper lists the radius and the resize (oval) factor among the per-class parameters; the
released code draws them per image, and so does fdsl.
Differences (docs/FIDELITY.md): seeded counter-based streams instead of ``random.seed(thread + 1)``;
grey images (the official writes RGB with three equal channels); at other sizes than 512 the
geometry is scaled (the official keeps it in pixels and draws greys up to size / 2).
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

from fdsl.errors import FdslError
from fdsl.generators.classfile import read_params_from
from fdsl.generators.rcdb.params import (
    OFFICIAL_SIZE,
    ClassParams,
    load_class_params,
    sample_classes,
)
from fdsl.generators.rcdb.source import NAME, RCDBSource, source_from_config
from fdsl.generators.spec import GeneratorSpec, checked_sizes, register_generator
from fdsl.sources import with_preview

__all__ = ["SPEC", "ClassParams", "RCDBSource", "load_class_params", "make_source", "prepare_source",
           "sample_classes", "source_from_config"]

DEFAULT_INSTANCES = 1000
MIN_IMAGE_SIZE = 8


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """RCDB's own flags (default None = the official drawing)."""
    group.add_argument("--broken-fraction", dest="broken_fraction", type=float, default=None,
                       help="broken contours (the CVPR 2022 ablation): remove this fraction of each "
                            "contour's segments, in [0, 1], chosen at random per contour (default 0: "
                            "closed contours)")


def prepare_source(*, classes: int, instances: int | None = None, seed: int = 0, image_size: int | None = None,
                   params_from: str | Path | None = None, workers: int = 1, backend: str = "local",
                   broken_fraction: float | None = None) -> functools.partial[RCDBSource]:
    """Check the settings (reading ``params_from`` if given: else the class parameters are sampled
    from the seed) and return the factory of the RCDB source; FdslError for bad values."""
    per_class, size = checked_sizes(NAME, seed=seed, instances=instances, image_size=image_size,
                                    default_instances=DEFAULT_INSTANCES, default_image_size=OFFICIAL_SIZE,
                                    min_image_size=MIN_IMAGE_SIZE)
    broken = 0.0 if broken_fraction is None else float(broken_fraction)
    if not 0.0 <= broken <= 1.0:
        raise FdslError(f"--broken-fraction must be in [0, 1], got {broken_fraction}")
    source = {"seed": seed, "per_class": per_class, "image_size": size, "broken_fraction": broken}
    if params_from is None:
        params, digest = sample_classes(classes, seed), None
    else:
        params, digest = read_params_from(params_from, classes, load_class_params)
    return with_preview(functools.partial(RCDBSource, params, params_sha256=digest, **source))


SPEC = register_generator(GeneratorSpec(
    NAME, "radial contours: Perlin-noised concentric polygons (Kataoka et al., CVPR 2022)",
    prepare_source, add_arguments, defaults={"instances": DEFAULT_INSTANCES, "image_size": OFFICIAL_SIZE},
    load_class_params=load_class_params, source_from_config=source_from_config))
make_source = SPEC.make_source  # settings -> the source, made now (searched if need be)
