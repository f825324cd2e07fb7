"""Small data sets whose GPU images the CUDA tests (simulator and device) compare with the CPU's.

Each case is (CPU source, item indices): sizes small enough for numba's CUDA simulator, and
chosen to reach the branches that matter: every flip and grey/colour for FractalDB, an orbit that
turns NaN (its kept points are cut), an ExFractalDB class whose table rows diverge (spare rows
drawn instead), broken RCDB contours, shuffled LineDB counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.generators import exfractaldb, fractaldb, linedb, rcdb
from fdsl.generators.exfractaldb.source import ExFractalDBSource


def fractaldb_params(path: Path) -> Path:
    """classes.npz of three hand-made classes: Sierpinski-like, a 3-map spiral, and a system whose
    orbit overflows and turns NaN after a few hundred points (3 x - 3 y with x, y -> inf)."""
    sierpinski = [[0.5, 0, 0, 0.5, 0, 0], [0.5, 0, 0, 0.5, 0.5, 0], [0.5, 0, 0, 0.5, 0.25, 0.5]]
    spiral = [[0.8, -0.3, 0.3, 0.8, 0.1, 0], [0.3, 0, 0, 0.3, 0.6, 0.2], [-0.2, 0.1, 0.3, 0.4, 0, 0.7]]
    diverging = [[3.0, -3.0, 3.0, 3.0, 1.0, 0.0], [2.0, -2.5, 2.5, 2.0, 0, 1.0]]
    maps = np.array(sierpinski + spiral + diverging, np.float64)
    probs = np.array([0.2, 0.3, 0.5, 0.5, 0.25, 0.25, 0.6, 0.4])
    np.savez(path, maps=maps, probs=probs, offsets=np.array([0, 3, 6, 8], np.int64))
    return path


def fractaldb_case(folder: Path, color: str = "gray") -> tuple[Any, np.ndarray]:
    """3 classes x 100 images (25 variants x 4 flips, one render) at 32 px, 1500 points; items:
    the 4 flips of variants 0, 2 (identity) and 24 of every class, in a shuffled order."""
    source = fractaldb.prepare_source(classes=3, instances=100, seed=5, image_size=32, points=1500,
                                      params_from=fractaldb_params(folder / "classes.npz"),
                                      color=color, workers=1, backend="inline")()
    items = np.array([c * 100 + v * 4 + f for c in range(3) for v in (0, 2, 24) for f in range(4)])
    return source, np.random.default_rng(0).permutation(items)


def exfractaldb_case() -> tuple[ExFractalDBSource, np.ndarray]:
    """Two hand-made classes: a contractive 2-map IFS, and one map x -> 12 x + 1 whose cloud
    overflows within 300 points unless parameter a is scaled by 0.8 or less, so its 3 slots are
    drawn from spare rows 25, 49 and 73 of the paper25 table. 3 slots x 4 views, 24 px, ring
    views for class 0's odd items are not mixed in: random views with roll."""
    params = np.zeros((2, 7, 12))
    probs = np.zeros((2, 7))
    params[0, 0] = [0.5, 0.1, 0, -0.1, 0.5, 0.1, 0, -0.1, 0.5, 0.2, 0.1, 0]
    params[0, 1] = [0.4, 0, 0.2, 0, 0.4, 0, -0.2, 0, 0.4, -0.3, 0, 0.4]
    probs[0, :2] = [0.6, 0.4]
    params[1, 0] = [12.0, 0, 0, 0, 0.5, 0, 0, 0, 0.5, 1.0, 0.5, 0.25]
    probs[1, 0] = 1.0
    classes = exfractaldb.ClassParams(params, probs, np.array([2, 1]), np.array([-1, -1]))
    source = ExFractalDBSource(classes, seed=9, instances_3d=3, views=4, points=300, image_size=24,
                               roll=True, search={})
    return source, np.arange(24)[::-1].copy()


def rcdb_case(broken: float = 0.0) -> tuple[Any, np.ndarray]:
    """3 classes x 4 images at 40 px (classes sampled from seed 2)."""
    source = rcdb.prepare_source(classes=3, instances=4, seed=2, image_size=40, broken_fraction=broken)()
    return source, np.array([11, 0, 5, 6, 3, 8])


def linedb_case(shuffle: bool = False) -> tuple[Any, np.ndarray]:
    """4 classes (16..64 lines) x 3 images at 32 px."""
    source = linedb.prepare_source(classes=4, instances=3, seed=6, image_size=32, shuffle_counts=shuffle)()
    return source, np.array([0, 4, 11, 7, 2])


def every_case(folder: Path) -> Iterator[tuple[Any, np.ndarray]]:
    """One case of each kind above (FractalDB in grey and colour, RCDB closed and broken)."""
    yield fractaldb_case(folder, "gray")
    yield fractaldb_case(folder, "color")
    yield exfractaldb_case()
    yield rcdb_case(0.0)
    yield rcdb_case(0.3)
    yield linedb_case(True)


def cpu_images(source: Any, items: np.ndarray) -> np.ndarray:
    """The CPU source's images of ``items``, in that order (what gen-fractal stores for them)."""
    return np.stack([source.render(int(i), int(i) + 1).images[0] for i in items])


def mismatched_pixels(a: np.ndarray, b: np.ndarray) -> int:
    """How many pixels (all channels of one) differ; shapes must match."""
    assert a.shape == b.shape, (a.shape, b.shape)
    differ = a != b
    return int(differ.any(axis=-1).sum() if a.ndim == 4 else differ.sum())
