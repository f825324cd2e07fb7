"""A plain Python/NumPy port of the official FractalDB generator, point by point.

It follows the structure and cost profile of the official ``ifs_function`` (a Python loop per
chaos-game point, a 3x3 patch built with NumPy and pasted with PIL per point, PIL flips) and its
``__rescale`` step by step (the origin and every later point kept, NaN rows deleted with the 100
before the first one through ``np.delete``, shift by the minimum only when it is negative,
``np.uint16`` of the scaled values). One change makes it reproducible and comparable with fdsl's
Numba kernels: random numbers come from the same counter-based splitmix64 streams as fdsl
(re-implemented here from their definition, not imported), instead of ``np.random.seed(100)`` for
the points and the unseeded ``random.randrange(1, 512)`` for the patch masks.

Used by the tests (same points, same pixels) and by ``benchmarks/bench_fractaldb.py`` as the
baseline. It is slow on purpose: it is the algorithm as the official code runs it.
"""

from __future__ import annotations

import math
import random

import numpy as np
from PIL import Image

# The random streams only make a port's draws comparable with ours, pixel for pixel; they are not
# part of the official algorithm, so the port shares fdsl's mixer instead of a copy of it.
from fdsl.generators.seeding import GOLDEN, mix64, stream_key

TAG_SEARCH, TAG_SEARCH_POINTS, TAG_POINTS, TAG_PATCH = 1, 2, 3, 4
PAD, NAN_CUT, SEARCH_SIZE, GREY = 6, 100, 512, 127

# The official weights_0.4.csv, row = variant.
WEIGHTS_CSV = """0.2,1,1,1,1,1
0.6,1,1,1,1,1
1,1,1,1,1,1
1.4,1,1,1,1,1
1.8,1,1,1,1,1
1,0.2,1,1,1,1
1,0.6,1,1,1,1
1,1.4,1,1,1,1
1,1.8,1,1,1,1
1,1,0.2,1,1,1
1,1,0.6,1,1,1
1,1,1.4,1,1,1
1,1,1.8,1,1,1
1,1,1,0.2,1,1
1,1,1,0.6,1,1
1,1,1,1.4,1,1
1,1,1,1.8,1,1
1,1,1,1,0.2,1
1,1,1,1,0.6,1
1,1,1,1,1.4,1
1,1,1,1,1.8,1
1,1,1,1,1,0.2
1,1,1,1,1,0.6
1,1,1,1,1,1.4
1,1,1,1,1,1.8"""
WEIGHTS = [[float(v) for v in row.split(",")] for row in WEIGHTS_CSV.splitlines()]


def draw(key: int, i: int) -> int:
    """Draw ``i`` of stream ``key`` (64-bit)."""
    return mix64(key + (i + 1) * GOLDEN)


def uniform(key: int, i: int) -> float:
    return (draw(key, i) >> 11) * (1.0 / 9007199254740992.0)


def patch_mask(key: int, i: int) -> int:
    """1..511, like the official ``random.randrange(1, 512)``."""
    return (((draw(key, i) >> 32) * 511) >> 32) + 1


def convert_color(color: int, n_div: int) -> tuple[int, int, int]:
    """The official hue cycle (S = V = 0.75)."""
    s = 0.75
    hue = 2.0 * math.pi * (float(color % n_div) / float(n_div))
    if hue >= 2.0 * math.pi:
        hue -= 2.0 * math.pi
    h = math.floor((3.0 / math.pi) * hue)
    i = 0.75
    p = i * (1.0 - s)
    q = i * (1.0 - s * ((3.0 / math.pi) * hue - h))
    t = i * (1.0 - s * ((1.0 - (3.0 / math.pi) * hue) + h))
    i8, p8, q8, t8 = (int(np.uint8(v * 255.0)) for v in (i, p, q, t))
    return [(p8, t8, i8), (p8, i8, q8), (t8, i8, p8), (i8, q8, p8), (i8, p8, t8), (q8, p8, i8)][h]


def make_patch3_3(mask: str, colour) -> Image.Image:
    colour = np.array(colour)
    patch = np.zeros((3, 3, 3), np.uint8)
    for i in range(3):
        for j in range(3):
            patch[i, j, :] = colour * int(mask[i * 3 + j])
    return Image.fromarray(patch)


class IfsFunction:
    """The official ``ifs_function``: maps added one by one with running probabilities."""

    def __init__(self) -> None:
        self.function: list[dict[str, float]] = []
        self.select_function: list[float] = []
        self.temp_proba = 0.0
        self.xs: list[float] = []
        self.ys: list[float] = []

    def set_param(self, a, b, c, d, e, f, proba, weights=(1.0,) * 6) -> None:
        a, b, c, d, e, f = (v * w for v, w in zip((a, b, c, d, e, f), weights, strict=True))
        self.function.append({"a": a, "b": b, "c": c, "d": d, "e": e, "f": f, "proba": proba})
        self.temp_proba += proba
        self.select_function.append(self.temp_proba)

    def calculate(self, iteration: int, key: int) -> None:
        """Chaos game from the origin, ``iteration`` points with the origin (inf and NaN stay);
        draw i of stream ``key`` picks the map of point i."""
        self.iterate([uniform(key, i) for i in range(1, iteration)], stale=False)

    def iterate(self, draws, stale: bool = True) -> None:
        """Point i + 1 from draw i (the official ``rand[i]``). A draw above every cumulative
        probability (rounding) keeps the previous point with ``stale`` (the official's leftover
        ``next_x``), else takes the last map (fdsl's kernels)."""
        prev_x, prev_y = 0.0, 0.0
        next_x, next_y = 0.0, 0.0
        self.xs, self.ys = [0.0], [0.0]
        function, select = self.function, self.select_function
        for rand in draws:
            chosen = None if stale else len(select) - 1
            for j in range(len(select)):
                if rand <= select[j]:
                    chosen = j
                    break
            if chosen is None:
                self.xs.append(next_x)
                self.ys.append(next_y)
                continue
            fn = function[chosen]
            next_x = prev_x * fn["a"] + prev_y * fn["b"] + fn["e"]
            next_y = prev_x * fn["c"] + prev_y * fn["d"] + fn["f"]
            self.xs.append(next_x)
            self.ys.append(next_y)
            prev_x, prev_y = next_x, next_y


def _delete_after_nan(xs: np.ndarray, ys: np.ndarray, coord: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The official NaN step for one coordinate: delete its NaN rows and the 100 rows before the
    first (negative indices wrap, as ``np.delete`` reads them)."""
    nan_index = np.where(np.isnan(coord))
    extend = np.array(range(nan_index[0][0] - NAN_CUT, nan_index[0][0]))
    delete_row = np.append(extend, nan_index)
    return np.delete(xs, delete_row, axis=0), np.delete(ys, delete_row, axis=0)


def rescale_xy(xs, ys, size: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """The official ``__rescale`` (both axes): pixel columns and rows, int64. Raises ValueError
    when the NaN step leaves no point (as the official does)."""
    xs, ys = np.array(xs, dtype=np.float64), np.array(ys, dtype=np.float64)
    if np.any(np.isnan(xs)):
        xs, ys = _delete_after_nan(xs, ys, xs)
    if np.any(np.isnan(ys)):
        xs, ys = _delete_after_nan(xs, ys, ys)
    out = []
    with np.errstate(over="ignore", invalid="ignore"):  # inf orbits: NaN casts as the official's
        for values in (xs, ys):
            if np.min(values) < 0.0:
                values = values - np.min(values)
            vmax, vmin = np.max(values), np.min(values)
            out.append(np.uint16(values / (vmax - vmin) * float(size - 2 * pad) + float(pad)).astype(np.int64))
    return out[0], out[1]


def _maps_to_ifs(maps, probs, weights=(1.0,) * 6) -> IfsFunction:
    ifs = IfsFunction()
    for row, p in zip(maps, probs, strict=True):
        ifs.set_param(*[float(v) for v in row], float(p), weights=weights)
    return ifs


def sample_candidate(seed: int, k: int):
    """Candidate ``k`` of the search: (maps [N, 6], probs [N]) or None (all maps singular)."""
    rng = np.random.default_rng([seed % 2**64, TAG_SEARCH, k])
    n = int(rng.integers(2, 8))
    params = np.zeros((n, 7))
    total = 0.0
    for i in range(n):  # one map at a time, like the official loop
        a, b, c, d, e, f = rng.uniform(-1.0, 1.0, 6)
        params[i] = a, b, c, d, e, f, abs(a * d - b * c)
        total += params[i, 6]
    if not total > 0.0:
        return None
    return params[:, :6], params[:, 6] / total


def search_fill_rate(maps, probs, seed: int, k: int, points: int = 100_000) -> float:
    """Filling rate of candidate ``k`` drawn as single pixels on 512 x 512 (official draw_point)."""
    ifs = _maps_to_ifs(maps, probs)
    ifs.calculate(points, stream_key(seed, TAG_SEARCH_POINTS, k))
    image = np.zeros((SEARCH_SIZE, SEARCH_SIZE, 3), np.uint8)
    xs, ys = rescale_xy(ifs.xs, ifs.ys, SEARCH_SIZE, PAD)
    for i in range(len(xs)):
        image[ys[i], xs[i], :] = GREY, GREY, GREY
    return np.count_nonzero(image[:, :, 0]) / float(SEARCH_SIZE * SEARCH_SIZE)


def variant_points(maps, probs, seed: int, label: int, variant: int, points: int, size: int):
    """(px, py, first): pixel coordinates of the kept points and the orbit index of the first
    (always 0: the official keeps the origin)."""
    ifs = _maps_to_ifs(maps, probs, WEIGHTS[variant])
    ifs.calculate(points, stream_key(seed, TAG_POINTS, label))
    px, py = rescale_xy(ifs.xs, ifs.ys, size, PAD)
    return px, py, 0


def draw_patch(px, py, first: int, size: int, key: int, color: bool, masks=None) -> list[np.ndarray]:
    """The official ``draw_patch``: one PIL paste per point, then the four saved flips (RGB).
    Masks from stream ``key`` (draw ``first + i``), or from ``masks()`` when given."""
    image = Image.new("RGB", (size, size))
    for i in range(len(px)):
        mask = f"{patch_mask(key, first + i) if masks is None else masks():09b}"
        colour = [convert_color(i, 128)] if color else [GREY, GREY, GREY]
        image.paste(make_patch3_3(mask, colour), (int(px[i]) + 1, int(py[i]) + 1))
    image = image.transpose(Image.FLIP_TOP_BOTTOM)
    flips = [image, image.transpose(Image.FLIP_TOP_BOTTOM), image.transpose(Image.FLIP_LEFT_RIGHT),
             image.transpose(Image.FLIP_TOP_BOTTOM).transpose(Image.FLIP_LEFT_RIGHT)]
    return [np.array(f) for f in flips]


def render(maps, probs, *, seed: int, label: int, variant: int, render_index: int, size: int = 362,
           points: int = 200_000, color: bool = False) -> list[np.ndarray]:
    """The four images (flip 0..3, uint8 [size, size, 3]) of one render of one class variant."""
    px, py, first = variant_points(maps, probs, seed, label, variant, points, size)
    key = stream_key(seed, TAG_PATCH, label, variant, render_index)
    return draw_patch(px, py, first, size, key, color)


def render_official_rng(maps, probs, *, variant: int, size: int = 362, points: int = 200_000,
                        mask_seed: int = 0) -> np.ndarray:
    """One official ``patch_gray`` render (flip 0, uint8 [size, size, 3]) with the official's own
    random numbers: ``np.random.seed(100)`` then ``np.random.random(points)`` for the map choices,
    and ``randrange(1, 512)`` masks from Python's ``random`` (seeded here with ``mask_seed``; the
    official leaves it unseeded)."""
    ifs = _maps_to_ifs(maps, probs, WEIGHTS[variant])
    state = np.random.get_state()
    np.random.seed(100)
    rand = np.random.random(points)
    np.random.set_state(state)
    ifs.iterate(rand[: points - 1].tolist())
    px, py = rescale_xy(ifs.xs, ifs.ys, size, PAD)
    masks = random.Random(mask_seed)
    return draw_patch(px, py, 0, size, 0, False, masks=lambda: masks.randrange(1, 512))[0]
