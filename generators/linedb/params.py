"""LineDB class parameters: the line count of each class (``classes.npz``), by default, from the
paper's list or given."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fdsl.errors import FdslError
from fdsl.generators.classfile import npz_bytes, read_arrays

LINE_STEP = 16
PAPER = "paper"
PAPER_COUNTS = (16, 32, 64, 128, 256, 512, 1000)


@dataclass(frozen=True)
class ClassParams:
    """Per class: line_counts int64 [C], the lines each image of the class draws."""

    line_counts: np.ndarray

    def __len__(self) -> int:
        return len(self.line_counts)

    def head(self, classes: int) -> ClassParams:
        return ClassParams(self.line_counts[:classes])

    def to_npz(self) -> bytes:
        return npz_bytes({"line_counts": self.line_counts})


def default_counts(classes: int) -> list[int]:
    """16, 32, ... for ``classes`` classes."""
    return [LINE_STEP * (c + 1) for c in range(classes)]


def class_params(classes: int, line_counts: Sequence[int] | str | None = None) -> ClassParams:
    """The counts of ``classes`` classes: ``default_counts``, the paper's (``"paper"``) or the
    ``line_counts`` given, one per class; FdslError when their number is not ``classes``."""
    if line_counts is None:
        return ClassParams(np.array(default_counts(classes), dtype=np.int64))
    if line_counts == PAPER:
        if classes != len(PAPER_COUNTS):
            raise FdslError(f"--line-counts paper gives the paper's {len(PAPER_COUNTS)} classes "
                            f"({', '.join(map(str, PAPER_COUNTS))} lines); use --classes {len(PAPER_COUNTS)}")
        line_counts = PAPER_COUNTS
    if len(line_counts) != classes:
        raise FdslError(f"--line-counts gives {len(line_counts)} counts for --classes {classes}; give one per class")
    return ClassParams(np.array([int(c) for c in line_counts], dtype=np.int64))


def load_class_params(path: str | Path) -> ClassParams:
    """The classes of a LineDB classes.npz written by an earlier run; FdslError (one line)."""
    counts = read_arrays(path, ("line_counts",), "a LineDB classes.npz")["line_counts"]
    if counts.ndim != 1 or counts.dtype.kind not in "iu":
        raise FdslError(f"--params-from {path}: line_counts must be a 1-D integer array")
    return ClassParams(counts.astype(np.int64))
