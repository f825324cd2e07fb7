"""One FractalDB image from scratch, without per-point storage: the body of the GPU kernel.

The CPU source (``FractalDBSource``) runs the chaos game once per (class, variant) into point
arrays and pastes the patches of each render from them. A GPU thread that draws one image has no
room for 200k points, so it runs the same orbit twice from the same counter-based stream:

1. ``orbit_box``: the kept count K and the min/max box of the kept points (a NaN orbit keeps the
   points before ``first NaN - 100``; their box then takes a second, shorter run);
2. ``draw_image``: the orbit again, each point scaled into the frame as ``ifs2d.rescale`` does and
   its random 3x3 patch (draw ``k`` of the render's patch stream) pasted in point order, so later
   patches overwrite earlier ones exactly as on the CPU; the flip is applied to the coordinates.

Every step is the CPU kernels' arithmetic (``ifs2d.step`` on maps scaled by the variant's weights,
``ifs2d._pixel``; ``mul`` / ``add`` keep CUDA from fusing it), and the map choice is "first j with u <= cum[j]", which the CPU's
lookup table only speeds up. So the image is the CPU's, bit for bit.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from fdsl.generators.kernels import counter, ifs2d
from fdsl.generators.kernels.fpround import add, mul


@numba.njit(cache=True, inline="always")
def choose(edges, key, i):
    """The map of draw ``i``: the first j with u_i <= edges[j] (edges: cumulative probabilities
    with the last used one set to inf, so the search always ends)."""
    u = counter.uniform(key, i)
    j = 0
    while u > edges[j]:
        j += 1
    return j


@numba.njit(cache=True, inline="always")
def step(maps, weights, j, x, y):
    """``ifs2d.step`` with map j's parameters scaled by the variant's ``weights`` as it goes: the
    same products as the CPU's ``maps * weights``, without a per-thread copy of the maps."""
    return (add(add(mul(x, mul(maps[j, 0], weights[0])), mul(y, mul(maps[j, 1], weights[1]))),
                mul(maps[j, 4], weights[4])),
            add(add(mul(x, mul(maps[j, 2], weights[2])), mul(y, mul(maps[j, 3], weights[3]))),
                mul(maps[j, 5], weights[5])))


@numba.njit(cache=True)
def _extent(maps, weights, edges, key, points, box):
    """Run the orbit for up to ``points`` points from (0, 0), setting box float64 [4] to the min and
    max x, y of the points before the first NaN; returns (i, x_nan): the step that first turned a
    coordinate NaN (``points`` when none did) and whether x was NaN there."""
    x = 0.0
    y = 0.0
    box[0] = 0.0
    box[1] = 0.0
    box[2] = 0.0
    box[3] = 0.0
    for i in range(1, points):
        nx, ny = step(maps, weights, choose(edges, key, i), x, y)
        if math.isnan(nx) or math.isnan(ny):
            return i, math.isnan(nx)
        x = nx
        y = ny
        box[0] = min(box[0], nx)
        box[1] = max(box[1], nx)
        box[2] = min(box[2], ny)
        box[3] = max(box[3], ny)
    return points, False


@numba.njit(cache=True)
def orbit_box(maps, weights, edges, key, points, box):
    """Run the chaos game of ``points`` points from (0, 0) like ``ifs2d.orbit`` without storing
    them: returns the kept count K and sets box float64 [4] to the kept points' (min x, max x,
    min y, max y)."""
    first, x_nan = _extent(maps, weights, edges, key, points, box)
    if first == points:
        return points
    # NaN spreads to x one step after y, so x's first NaN is at ``first`` or the step after.
    first_x = first if (x_nan or first == points - 1) else first + 1
    kept = max(first_x - ifs2d.NAN_CUT, 0)
    _extent(maps, weights, edges, key, kept, box)  # the box of the points before the cut only
    return kept


@numba.njit(cache=True, error_model="numpy")  # x / 0 is IEEE, as in NumPy
def draw_image(maps, weights, edges, key, kept, box, size, pad, patch_key, flip, palette, bits, img):
    """Paste the patches of the ``kept`` orbit points into ``img`` uint8 [size, size, C] (zeroed by
    the caller) as the saved image of ``flip`` (see ``fractaldb_source.flip_image``).

    Point k's patch covers canvas rows py+1..py+3 and columns px+1..px+3; its mask (1..511) is draw
    k of ``patch_key``; bit ``8 - (3 r + c)`` of the mask (``bits``: ``ifs2d.patch_table(1)``) lights
    channel ch in ``palette[k % P, ch]`` (grey: one row [127]; colour: the hue cycle).
    """
    xshift, xw = ifs2d._frame(box[0], box[1])
    yshift, yw = ifs2d._frame(box[2], box[3])
    padf = float(pad)
    span = float(size - 2 * pad)
    top = np.int64(size - pad)
    last = size - 1
    flip_rows = flip == 0 or flip == 2
    flip_cols = flip == 2 or flip == 3
    period = palette.shape[0]
    channels = palette.shape[1]
    x = 0.0
    y = 0.0
    for k in range(kept):
        if k > 0:
            x, y = step(maps, weights, choose(edges, key, k), x, y)
        px = ifs2d._pixel(x, xshift, xw, span, padf, top)
        py = ifs2d._pixel(y, yshift, yw, span, padf, top)
        b = np.int64(ifs2d._mask(patch_key, k)) * 9
        colour = k % period
        for r in range(3):
            row = py + 1 + r
            if flip_rows:
                row = last - row
            for c in range(3):
                col = px + 1 + c
                if flip_cols:
                    col = last - col
                bit = bits[b + 3 * r + c]
                for ch in range(channels):
                    img[row, col, ch] = palette[colour, ch] * bit


@numba.njit(cache=True)
def render_item(item, seed, instances, renders, maps, edges, weights, points, size, pad, palette,
                bits, box, img):
    """Image ``item`` of a FractalDB set into ``img`` uint8 [size, size, C] (zeroed by the caller).

    maps float64 [C, M, 6] and edges float64 [C, M] (cumulative probabilities, the last used one
    inf) of every class; weights float64 [25, 6] (the variant table); box float64 [4] is scratch. Item -> (class, variant, render, flip) and the stream
    keys are ``FractalDBSource``'s: points from (seed, 3, class), patches from (seed, 4, class,
    variant, render).
    """
    label = item // instances
    instance = item % instances
    variant = instance // (4 * renders)
    render = (instance // 4) % renders
    flip = instance % 4
    key = counter.key3(seed, ifs2d.TAG_POINTS, label)
    kept = orbit_box(maps[label], weights[variant], edges[label], key, points, box)
    patch_key = counter.key5(seed, ifs2d.TAG_PATCH, label, variant, render)
    draw_image(maps[label], weights[variant], edges[label], key, kept, box, size, pad, patch_key,
               flip, palette, bits, img)
    return kept
