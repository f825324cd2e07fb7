"""2-D IFS kernels for FractalDB: chaos game, pixel scaling, 3x3 patch drawing and filling rate.

Every random number comes from a counter-based generator: ``counter_hash(key, i)`` is splitmix64's
finaliser applied to ``key + (i + 1) * golden``, so point ``i`` of a stream never depends on how
many points were drawn before, on the worker, or on numba's global RNG (never used here). The
plain-Python reference (``benchmarks/reference/fractaldb_official.py``) reproduces the same
numbers, so tests can compare points and pixels bit for bit.

Floating point follows the official code's operation order (``x*a + y*b + e``, then
``(x - min) / range * span + pad`` truncated), and the kernels are compiled without fastmath so
no fused multiply-adds change a bit.

Which points are kept follows the official ``ifs_function.__rescale`` (``orbit`` and
``rescale``): the orbit starts at (0, 0) and every point is kept, the origin included; only when a
coordinate turns NaN are the points from 100 before the first NaN of x (else of y) on deleted.
Infinite points before that stay in, and then scale as NumPy scales them there: a NaN pixel
coordinate (inf / inf, 0 / 0) becomes 0, which is what ``np.uint16(nan)`` gives on x86-64 and
aarch64.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from fdsl.generators.kernels.counter import draw as _hash
from fdsl.generators.kernels.fpround import add, mul
from fdsl.generators.seeding import GOLDEN, mix64, stream_key  # noqa: F401  (part of this module's API)

# Stream tags: one independent stream family per use.
TAG_SEARCH_POINTS = 2
TAG_POINTS = 3
TAG_PATCH = 4

NAN_CUT = 100  # the official deletes this many points before the first NaN
LUT_BITS = 10  # map-selection table: 1024 buckets of the top bits of each draw

_S11 = np.uint64(11)
_S32 = np.uint64(32)
_S_LUT = np.uint64(64 - LUT_BITS)
_ONE = np.uint64(1)
_P511 = np.uint64(511)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53


# --------------------------------------------------------------------------- Python side


def selection_table(cum: np.ndarray) -> np.ndarray:
    """int64 [2**LUT_BITS]: for each bucket of u, the first map whose cumulative probability
    reaches the bucket's lower edge (the chaos game searches on from there, so the choice is
    exactly "first j with u <= cum[j]", only faster)."""
    edges = np.arange(1 << LUT_BITS, dtype=np.float64) / float(1 << LUT_BITS)
    first = np.searchsorted(cum, edges, side="left")
    return np.minimum(first, len(cum) - 1).astype(np.int64)


# --------------------------------------------------------------------------- kernels


@numba.njit(cache=True)
def counter_hash(key, i):
    """uint64 hash of draw ``i`` (int64) of stream ``key`` (uint64); same as the Python mix."""
    return _hash(key, i)


@numba.njit(cache=True, fastmath=False)
def box_of(xs, ys, start, stop, box):
    """box: float64 [4] set to (min x, max x, min y, max y) of points ``[start, stop)``."""
    box[0] = np.inf
    box[1] = -np.inf
    box[2] = np.inf
    box[3] = -np.inf
    for k in range(start, stop):
        box[0] = min(box[0], xs[k])
        box[1] = max(box[1], xs[k])
        box[2] = min(box[2], ys[k])
        box[3] = max(box[3], ys[k])


@numba.njit(cache=True, fastmath=False)
def orbit(maps, cum, table, key, xs, ys, box):
    """Run the chaos game from (0, 0) and return how many points the official renderer keeps.

    maps: float64 [N, 6] rows a, b, c, d, e, f ((x, y) -> (a x + b y + e, c x + d y + f));
    cum: float64 [N] cumulative probabilities; draw i picks the first map j with u_i <= cum[j]
    (the last map if rounding leaves u_i above cum[N-1]); table: int64 [1024] from
    ``selection_table``; key: uint64 stream key; xs, ys: float64 [n] filled in place (point 0 is
    the origin, point i applies one map to point i-1). Returns K: points ``[0, K)`` are kept, all
    of them when no coordinate turns NaN, else those before ``f - 100`` with f the first NaN of x
    (or of y when x has none; x turns NaN one step after y) and none when that is < 1 (the
    official then fails on an empty array). Infinite points are kept, as the official keeps them.
    box: float64 [4] set to (min x, max x, min y, max y) of the kept points.
    """
    n = xs.shape[0]
    # An infinite last edge makes the search loop's only branch almost always not taken
    # (a data-dependent "j < last" test mispredicts and costs more than the arithmetic).
    edges = cum.copy()
    edges[maps.shape[0] - 1] = np.inf
    x = 0.0
    y = 0.0
    xlo = 0.0
    xhi = 0.0
    ylo = 0.0
    yhi = 0.0
    kept = n
    if n > 0:
        xs[0] = 0.0
        ys[0] = 0.0
    for i in range(1, n):
        h = _hash(key, i)
        u = np.float64(h >> _S11) * _INV53
        j = table[h >> _S_LUT]
        while u > edges[j]:
            j += 1
        nx, ny = step(maps, j, x, y)
        if math.isnan(nx) or math.isnan(ny):
            # NaN spreads to x one step after y, so x's first NaN is i or i + 1.
            first_x = i if (math.isnan(nx) or i == n - 1) else i + 1
            kept = max(first_x - NAN_CUT, 0)
            break
        xs[i] = nx
        ys[i] = ny
        x = nx
        y = ny
        xlo = min(xlo, nx)
        xhi = max(xhi, nx)
        ylo = min(ylo, ny)
        yhi = max(yhi, ny)
    box[0] = xlo
    box[1] = xhi
    box[2] = ylo
    box[3] = yhi
    if kept < n:
        box_of(xs, ys, 0, kept, box)
    return kept


@numba.njit(cache=True, inline="always")
def step(maps, j, x, y):
    """Map ``j`` of ``maps`` applied to (x, y): ``(x a + y b + e, x c + y d + f)``, each product and
    sum rounded on its own (``mul`` / ``add``: the GPU kernel shares this step)."""
    return (add(add(mul(x, maps[j, 0]), mul(y, maps[j, 1])), maps[j, 4]),
            add(add(mul(x, maps[j, 2]), mul(y, maps[j, 3])), maps[j, 5]))


@numba.njit(cache=True, inline="always")
def _frame(lo, hi):
    """(shift, width) of the official rescale of values with min ``lo`` and max ``hi``: shift by
    the minimum only when it is negative, then divide by (max - min) of the shifted values."""
    shift = lo if lo < 0.0 else 0.0
    return shift, (hi - shift) - (lo - shift)


@numba.njit(cache=True, inline="always", error_model="numpy")
def _pixel(v, shift, width, span, padf, top):
    """``np.uint16((v - shift) / width * span + pad)``; NaN (inf / inf, 0 / 0) gives 0 as there.
    Shared with the GPU kernel (``ifs2d_image``): ``mul`` / ``add`` keep CUDA from fusing."""
    s = add(mul((v - shift) / width, span), padf)
    if not math.isfinite(s):
        return 0
    return min(np.int64(s), top)  # finite values never pass the frame; the min guards memory


@numba.njit(cache=True, fastmath=False, error_model="numpy")  # x / 0 is IEEE, as in NumPy
def rescale(values, start, stop, lo, hi, size, pad, out):
    """The official ``__rescale`` of ``values[start:stop]`` (min ``lo``, max ``hi``) into a
    ``size`` frame with ``pad`` px padding: out int32 [>= stop - start], truncated like
    ``np.uint16``. With the origin kept ``lo <= 0``, so this is ``(v - lo) / (hi - lo) * (size -
    2 pad) + pad``."""
    shift, width = _frame(lo, hi)
    padf = float(pad)
    span = float(size - 2 * pad)
    top = np.int64(size - pad)
    src = values[start:stop]
    dst = out[: stop - start]
    for k in range(src.shape[0]):
        dst[k] = np.int32(_pixel(src[k], shift, width, span, padf, top))


@numba.njit(cache=True, inline="always")
def _mask(key, i):
    """A 9-bit patch mask in 1..511 (Lemire's multiply-shift instead of a slow modulo)."""
    h = _hash(key, i)
    return ((h >> _S32) * _P511 >> _S32) + _ONE


def patch_table(value: int) -> np.ndarray:
    """uint8 [512 * 9]: row m holds the 3x3 patch of mask m, bit 8 - (3 r + c) -> ``value``."""
    masks = np.arange(512)[:, None]
    bits = (masks >> (8 - np.arange(9))[None, :]) & 1
    return (bits * value).astype(np.uint8).ravel()


@numba.njit(cache=True)
def paste_patches_gray(canvas, px, py, key, first, table):
    """Paste a random 3x3 binary patch at every point, in point order (later patches overwrite).

    canvas: uint8 [H, W] C-contiguous, cleared by the caller; px, py: int32 [n] pixel
    coordinates; the patch of point k covers rows py+1..py+3 and columns px+1..px+3 (PIL
    ``paste`` at (x+1, y+1)); its mask m in 1..511 is draw ``first + k`` of stream ``key``;
    table: ``patch_table(grey)``.
    """
    width = canvas.shape[1]
    flat = canvas.ravel()
    for k in range(px.shape[0]):
        b = np.int64(_mask(key, first + k)) * 9
        o = (py[k] + 1) * width + px[k] + 1
        flat[o] = table[b]
        flat[o + 1] = table[b + 1]
        flat[o + 2] = table[b + 2]
        o += width
        flat[o] = table[b + 3]
        flat[o + 1] = table[b + 4]
        flat[o + 2] = table[b + 5]
        o += width
        flat[o] = table[b + 6]
        flat[o + 1] = table[b + 7]
        flat[o + 2] = table[b + 8]


@numba.njit(cache=True)
def paste_patches_color(canvas, px, py, key, first, palette, bits):
    """Like ``paste_patches_gray`` on an RGB canvas uint8 [H, W, 3] (C-contiguous); point k is
    coloured ``palette[k % len(palette)]`` (palette: uint8 [P, 3], the official hue cycle);
    bits: ``patch_table(1)``."""
    period = palette.shape[0]
    row_stride = canvas.shape[1] * 3
    flat = canvas.ravel()
    for k in range(px.shape[0]):
        b = np.int64(_mask(key, first + k)) * 9
        colour = palette[k % period]
        red = colour[0]
        green = colour[1]
        blue = colour[2]
        o = (py[k] + 1) * row_stride + (px[k] + 1) * 3
        for r in range(3):
            for c in range(3):
                bit = bits[b + 3 * r + c]
                q = o + 3 * c
                flat[q] = red * bit
                flat[q + 1] = green * bit
                flat[q + 2] = blue * bit
            o += row_stride


@numba.njit(cache=True, fastmath=False, error_model="numpy")  # x / 0 is IEEE, as in NumPy
def fill_count(xs, ys, n, box, size, pad, need, canvas):
    """Distinct pixels hit by points ``[0, n)`` (box: float64 [4] their min/max x, y) drawn as
    single pixels on a size x size canvas, coordinates exactly as ``rescale``.

    canvas: uint8 [size * size], zeroed here. Returns the exact count when it reaches ``need``,
    else -1 as soon as the remaining points cannot reach it (stopping early never changes the
    accept/reject decision ``count >= need``).
    """
    if n < need:
        return -1
    canvas[:] = 0
    xshift, xw = _frame(box[0], box[1])
    yshift, yw = _frame(box[2], box[3])
    padf = float(pad)
    span = float(size - 2 * pad)
    top = np.int64(size - pad)
    count = 0
    for k in range(n):
        idx = _pixel(ys[k], yshift, yw, span, padf, top) * size + _pixel(xs[k], xshift, xw, span, padf, top)
        # Branch-free: whether a pixel is new is a coin flip the CPU cannot predict.
        count += 1 - canvas[idx]
        canvas[idx] = 1
        if count + (n - k - 1) < need:
            return -1
    return count if count >= need else -1
