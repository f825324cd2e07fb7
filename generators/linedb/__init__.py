"""LineDB (Kataoka et al., CVPR 2022, the contour study): each class is a number of random lines.

Class ``c`` draws ``line_counts[c]`` straight 1 px lines per image; by default the counts are
16, 32, 48, ... (16 x the class number: ``--classes 62`` gives 16..992, within the paper's range
up to 1000); ``--line-counts paper`` takes the counts the paper lists, 16, 32, 64, 128, 256, 512
and 1000 (7 classes); ``--line-counts 10,20,...`` any list, one count per class. Per image (the
counter-based stream ``(seed, 1, class, instance)`` of ``fdsl.generators.kernels.linedb_image``,
which the CPU and the GPU kernels share) each line has both ends uniform on the pixel grid (x0, y0,
x1, y1 in 0..size-1) and a grey level 0..255, drawn in order on a white canvas with the RCDB
rasteriser (Pillow's 1 px lines), the drawing convention of RCDB in the same study.

``--shuffle-counts`` is the control in which line counts are not tied to classes: the count of
each image is drawn uniformly from the class counts (from its own stream ``(seed, 2, class,
instance)``), so the label carries no information about the image. The count drawn is in each
image's ``lines`` metadata. The official LineDB code is not public; the drawing choices are ours.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Sequence
from pathlib import Path

from fdsl.errors import FdslError
from fdsl.generators.classfile import read_params_from
from fdsl.generators.linedb.params import (
    LINE_STEP,
    PAPER,
    PAPER_COUNTS,
    ClassParams,
    class_params,
    load_class_params,
)
from fdsl.generators.linedb.source import NAME, LineDBSource, source_from_config
from fdsl.generators.spec import GeneratorSpec, checked_sizes, register_generator
from fdsl.limits import at_most
from fdsl.sources import with_preview

__all__ = ["SPEC", "ClassParams", "LineDBSource", "load_class_params", "make_source", "prepare_source",
           "source_from_config"]

DEFAULT_INSTANCES = 1000
DEFAULT_IMAGE_SIZE = 512
MIN_IMAGE_SIZE = 8
MAX_LINES = 100_000


def _counts(text: str) -> list[int] | str:
    if text.strip() == PAPER:
        return PAPER
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated line counts or {PAPER!r}, got {text!r}") from None
    if not counts:
        raise argparse.ArgumentTypeError("expected at least one line count")
    return counts


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """LineDB's own flags (default None = 16 lines more per class, counts tied to classes)."""
    group.add_argument("--line-counts", dest="line_counts", type=_counts, default=None,
                       help=f"lines per image of each class: comma-separated, one per class, or {PAPER!r} for the "
                            f"counts the paper lists ({', '.join(map(str, PAPER_COUNTS))}: --classes "
                            f"{len(PAPER_COUNTS)}) (default {LINE_STEP}, {2 * LINE_STEP}, {3 * LINE_STEP}, ...: "
                            f"{LINE_STEP} x class number)")
    group.add_argument("--shuffle-counts", dest="shuffle_counts", action="store_true", default=None,
                       help="control: each image draws its line count at random from the class counts, "
                            "so counts are not tied to classes")


def prepare_source(*, classes: int, instances: int | None = None, seed: int = 0, image_size: int | None = None,
                   params_from: str | Path | None = None, workers: int = 1, backend: str = "local",
                   line_counts: Sequence[int] | str | None = None,
                   shuffle_counts: bool | None = None) -> functools.partial[LineDBSource]:
    """Check the settings (reading ``params_from`` if given) and return the factory of the LineDB
    source; FdslError (one line) for bad values."""
    per_class, size = checked_sizes(NAME, seed=seed, instances=instances, image_size=image_size,
                                    default_instances=DEFAULT_INSTANCES, default_image_size=DEFAULT_IMAGE_SIZE,
                                    min_image_size=MIN_IMAGE_SIZE)
    digest = None
    if params_from is not None:
        if line_counts is not None:
            raise FdslError("--line-counts does not apply with --params-from (the counts are read)")
        params, digest = read_params_from(params_from, classes, load_class_params)
    else:
        params = class_params(classes, line_counts)
    counts = params.line_counts
    if counts.min() < 1:
        raise FdslError(f"line counts must be >= 1, got {counts.min()}")
    at_most("a line count", int(counts.max()), MAX_LINES)
    if len(set(counts.tolist())) != len(counts):
        raise FdslError("line counts must differ between classes (a repeated count makes two classes alike)")
    return with_preview(functools.partial(LineDBSource, params, seed=seed, per_class=per_class, image_size=size,
                                          shuffle_counts=bool(shuffle_counts), params_sha256=digest))


SPEC = register_generator(GeneratorSpec(
    NAME, "random straight lines, the class is the line count (Kataoka et al., CVPR 2022)",
    prepare_source, add_arguments, defaults={"instances": DEFAULT_INSTANCES, "image_size": DEFAULT_IMAGE_SIZE},
    load_class_params=load_class_params, source_from_config=source_from_config))
make_source = SPEC.make_source  # settings -> the source, made now (searched if need be)
