"""LineDB (Kataoka et al., CVPR 2022, the contour study): each class is a number of random lines.

Class ``c`` draws ``line_counts[c]`` straight 1 px lines per image; by default the counts are
16, 32, 48, ... (16 per class: ``--classes 62`` gives 16..992, the paper's range up to 1000), or
any list given with ``--line-counts``. Per image (``default_rng([seed, 1, class, instance])``) each
line has both ends uniform on the pixel grid (x0, y0, x1, y1 in 0..size-1) and a grey level
0..255, drawn in order on a white canvas with the RCDB rasteriser (Pillow's 1 px lines), the
drawing convention of RCDB in the same study.

``--shuffle-counts`` is the control in which line counts are not tied to classes: the count of
each image is drawn uniformly from the class counts (from its own stream ``(seed, 2, class,
instance)``), so the label carries no information about the image. The count drawn is in each
image's ``lines`` metadata. The official LineDB code is not public; these choices are ours.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numba
import numpy as np

from fdsl.errors import FdslError
from fdsl.generators.kernels.raster import draw_line
from fdsl.generators.npzfile import npz_bytes
from fdsl.generators.registry import GeneratorSpec, register_generator
from fdsl.limits import at_most
from fdsl.sources import RenderedBatch

NAME = "linedb"
VERSION = "1"
LINE_STEP = 16
DEFAULT_INSTANCES = 1000
DEFAULT_IMAGE_SIZE = 512
MIN_IMAGE_SIZE = 8
MAX_LINES = 100_000
TAG_IMAGE, TAG_SHUFFLE = 1, 2


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated line counts, got {text!r}") from None
    if not counts:
        raise argparse.ArgumentTypeError("expected at least one line count")
    return counts


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """LineDB's own flags (default None = 16 lines more per class, counts tied to classes)."""
    group.add_argument("--line-counts", dest="line_counts", type=_counts, default=None,
                       help=f"lines per image of each class, comma-separated, one per class (default "
                            f"{LINE_STEP}, {2 * LINE_STEP}, {3 * LINE_STEP}, ...: {LINE_STEP} x class number)")
    group.add_argument("--shuffle-counts", dest="shuffle_counts", action="store_true", default=None,
                       help="control: each image draws its line count at random from the class counts, "
                            "so counts are not tied to classes")


def default_counts(classes: int) -> list[int]:
    """16, 32, ... for ``classes`` classes."""
    return [LINE_STEP * (c + 1) for c in range(classes)]


@numba.njit(cache=True)
def _draw_lines(img: np.ndarray, ends: np.ndarray, greys: np.ndarray) -> None:
    for k in range(ends.shape[0]):
        draw_line(img, ends[k, 0], ends[k, 1], ends[k, 2], ends[k, 3], greys[k])


def draw_image(seed: int, label: int, instance: int, lines: int, out: np.ndarray) -> np.ndarray:
    """Draw image ``instance`` of class ``label`` with ``lines`` lines into ``out`` uint8 [H, W]."""
    rng = np.random.default_rng([seed, TAG_IMAGE, label, instance])
    size = out.shape[0]
    ends = rng.integers(0, size, (lines, 4))
    greys = rng.integers(0, 256, lines)
    out.fill(255)
    _draw_lines(out, ends, greys)
    return out


class LineSource:
    """ShardSource for LineDB; item ``i`` is class ``i // per_class``, instance ``i % per_class``."""

    name = NAME
    version = VERSION

    def __init__(self, line_counts: list[int], *, seed: int, per_class: int, image_size: int,
                 shuffle_counts: bool, params_sha256: str | None = None) -> None:
        self.line_counts = np.asarray(line_counts, dtype=np.int64)
        self.seed, self.per_class, self.image_size = seed, per_class, image_size
        self.shuffle_counts, self.params_sha256 = shuffle_counts, params_sha256

    def config(self) -> dict[str, Any]:
        config = {"seed": self.seed, "classes": len(self.line_counts), "instances": self.per_class,
                  "image_size": self.image_size, "line_counts": self.line_counts.tolist(),
                  "shuffle_counts": self.shuffle_counts}
        if self.params_sha256:
            config["params_sha256"] = self.params_sha256
        return config

    def class_names(self) -> list[str]:
        return [f"{c:05d}" for c in range(len(self.line_counts))]

    def num_items(self) -> int:
        return len(self.line_counts) * self.per_class

    def lines_of(self, label: int, instance: int) -> int:
        """How many lines image ``instance`` of class ``label`` draws."""
        if not self.shuffle_counts:
            return int(self.line_counts[label])
        rng = np.random.default_rng([self.seed, TAG_SHUFFLE, label, instance])
        return int(self.line_counts[rng.integers(len(self.line_counts))])

    def render(self, start: int, stop: int) -> RenderedBatch:
        size, count = self.image_size, stop - start
        images = np.empty((count, size, size), dtype=np.uint8)
        meta = {"instance": np.zeros(count, np.int32), "lines": np.zeros(count, np.int32)}
        for row, item in enumerate(range(start, stop)):
            label, instance = divmod(item, self.per_class)
            lines = self.lines_of(label, instance)
            draw_image(self.seed, label, instance, lines, images[row])
            meta["instance"][row], meta["lines"][row] = instance, lines
        items = np.arange(start, stop, dtype=np.int64)
        return RenderedBatch(images, items // self.per_class, meta, items, [])

    def png_path(self, label: int, metadata: Mapping[str, Any], item: int) -> str:
        return f"{label:05d}/{label:05d}_{int(metadata['instance']):04d}.png"

    def extra_files(self) -> dict[str, bytes]:
        return {"classes.npz": npz_bytes({"line_counts": self.line_counts})}


def load_line_counts(path: Path, classes: int) -> list[int]:
    """The first ``classes`` line counts of a LineDB classes.npz written by an earlier run."""
    try:
        with np.load(path) as data:
            counts = np.asarray(data["line_counts"])
    except (OSError, ValueError, KeyError) as exc:
        raise FdslError(f"--params-from {path}: not a LineDB classes.npz ({exc})") from None
    if counts.ndim != 1 or counts.dtype.kind not in "iu":
        raise FdslError(f"--params-from {path}: line_counts must be a 1-D integer array")
    if len(counts) < classes:
        raise FdslError(f"--params-from {path} holds {len(counts)} classes, fewer than --classes {classes}")
    return [int(c) for c in counts[:classes]]


def make_source(*, classes: int, instances: int | None = None, seed: int = 0, image_size: int | None = None,
                params_from: Path | None = None, workers: int | None = None, backend: str = "local",
                line_counts: list[int] | None = None, shuffle_counts: bool | None = None) -> LineSource:
    """The LineDB source; FdslError (one line) for bad values."""
    if seed < 0:
        raise FdslError(f"--seed must be >= 0 for linedb, got {seed}")
    size = DEFAULT_IMAGE_SIZE if image_size is None else image_size
    if size < MIN_IMAGE_SIZE:
        raise FdslError(f"--image-size must be at least {MIN_IMAGE_SIZE} for linedb, got {size}")
    per_class = DEFAULT_INSTANCES if instances is None else instances
    if per_class <= 0:
        raise FdslError(f"--instances must be positive, got {per_class}")
    digest = None
    if params_from is not None:
        if line_counts is not None:
            raise FdslError("--line-counts does not apply with --params-from (the counts are read)")
        counts = load_line_counts(Path(params_from), classes)
        digest = hashlib.sha256(Path(params_from).read_bytes()).hexdigest()
    elif line_counts is not None:
        if len(line_counts) != classes:
            raise FdslError(f"--line-counts gives {len(line_counts)} counts for --classes {classes}; give one per class")
        counts = list(line_counts)
    else:
        counts = default_counts(classes)
    if min(counts) < 1:
        raise FdslError(f"line counts must be >= 1, got {min(counts)}")
    at_most("a line count", max(counts), MAX_LINES)
    if len(set(counts)) != len(counts):
        raise FdslError("line counts must differ between classes (a repeated count makes two classes alike)")
    return LineSource(counts, seed=seed, per_class=per_class, image_size=size,
                      shuffle_counts=bool(shuffle_counts), params_sha256=digest)


SPEC = register_generator(GeneratorSpec(
    name=NAME,
    description="random straight lines, the class is the line count (Kataoka et al., CVPR 2022)",
    defaults={"instances": DEFAULT_INSTANCES, "image_size": DEFAULT_IMAGE_SIZE},
    add_arguments=add_arguments,
    make_source=make_source,
))
