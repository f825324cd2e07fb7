"""One RCDB image from its counter-based stream: the per-image body of the CPU and GPU kernels.

Image ``instance`` of class ``label`` reads every random number from the stream
``(seed, 2, label, instance)`` (``fdsl.generators.kernels.counter``), by draw index:

- 0: radius, an integer in 0..100; 1, 2: oval factors x, y, U(1, 2);
- 3, 4: centre y, x = (512 + an integer in -400..400) / 2 (512 px units);
- 5 + k: the grey level of contour k, an integer in 0..256 clipped to 255 (the official
  ``randint(0, image_size / 2)`` at 512 px, which Pillow clips);
- 5 + K + (2 k + a) V + v: the noise input U(0, 1e4) of vertex v of contour k, axis a (x then y).

Broken contours (``broken`` > 0) remove ``round(broken * V)`` segments of each contour, chosen by a
partial Fisher-Yates shuffle from their own stream ``(seed, 3, label, instance)``, draw ``k V + i``
for step i of contour k; the other draws, and so the closed image, stay the same.

Drawing is the official ``make_rcdb.py``'s: vertex v starts at (cos, sin)(2 pi v / V) * radius *
oval (``cos_table`` / ``sin_table`` [V, v], computed on the host once, since a device ``cos`` may
differ from the host's in the last bit); each contour moves every vertex by ``-(cos, sin) * (noise
- offset)`` with noise = pnoise1(u) * 2c - c, cumulatively, and draws the closed 1 px polyline
(segment v joins vertex v to v + 1) on the white canvas, in segment order, geometry scaled by
size / 512. Products and sums go through ``mul`` / ``add`` so that CUDA rounds as the CPU does.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from fdsl.generators.kernels import counter
from fdsl.generators.kernels.fpround import add, mul
from fdsl.generators.kernels.perlin import pnoise1_jit
from fdsl.generators.kernels.raster import draw_line

OFFICIAL_SIZE = 512
MAX_VERTICES = 200
CENTRE_SPREAD = 400
GREY_DRAW = OFFICIAL_SIZE // 2
TAG_IMAGE, TAG_BREAK = 2, 3
SCALARS = 5  # draws before the greys: radius, oval x, oval y, centre y, centre x


def trig_tables() -> tuple[np.ndarray, np.ndarray]:
    """float64 [MAX_VERTICES + 1, MAX_VERTICES] each: row V holds cos / sin(2 pi v / V), v < V."""
    cos_table = np.zeros((MAX_VERTICES + 1, MAX_VERTICES))
    sin_table = np.zeros((MAX_VERTICES + 1, MAX_VERTICES))
    _fill_trig(cos_table, sin_table)
    return cos_table, sin_table


@numba.njit(cache=True)
def _fill_trig(cos_table, sin_table):
    for vertices in range(1, cos_table.shape[0]):
        step = 2.0 * math.pi / vertices
        for v in range(vertices):
            cos_table[vertices, v] = math.cos(step * v)
            sin_table[vertices, v] = math.sin(step * v)


@numba.njit(cache=True, inline="always")
def _uniform_in(key, i, low, high):
    """NumPy's ``uniform(low, high)`` recipe, low + (high - low) u, on draw ``i`` of ``key``."""
    return add(low, mul(high - low, counter.uniform(key, i)))


@numba.njit(cache=True)
def image_scalars(seed, label, instance):
    """(radius, oval_x, oval_y, centre_x, centre_y) of an image (512 px units), its metadata."""
    key = counter.key4(seed, TAG_IMAGE, label, instance)
    radius = counter.below(key, 0, 101)
    oval_x = _uniform_in(key, 1, 1.0, 2.0)
    oval_y = _uniform_in(key, 2, 1.0, 2.0)
    # Halving is exact: mul keeps CUDA from fusing the product LLVM makes of "/ 2" with a later add.
    centre_y = mul(np.float64(OFFICIAL_SIZE + counter.below(key, 3, 2 * CENTRE_SPREAD + 1) - CENTRE_SPREAD), 0.5)
    centre_x = mul(np.float64(OFFICIAL_SIZE + counter.below(key, 4, 2 * CENTRE_SPREAD + 1) - CENTRE_SPREAD), 0.5)
    return radius, oval_x, oval_y, centre_x, centre_y


@numba.njit(cache=True)
def _broken_keep(key, contour, vertices, remove, keep, order):
    """keep[:vertices] = 1 except the ``remove`` segments a partial Fisher-Yates shuffle picks."""
    for v in range(vertices):
        keep[v] = 1
        order[v] = v
    for i in range(remove):
        j = i + counter.below(key, contour * vertices + i, vertices - i)
        picked = order[j]
        order[j] = order[i]
        order[i] = picked
        keep[picked] = 0


@numba.njit(cache=True)
def image_draws(seed, label, instance, vertices, contours, broken, greys, noise_inputs, keep):
    """The draws ``render_item`` reads for an image, as arrays (for the official algorithm's
    reference port and the fidelity tests): greys int64 [K], noise_inputs float64 [K, 2, V], keep
    uint8 [K, V] (segment v of contour k drawn; all 1 when ``broken`` is 0)."""
    key = counter.key4(seed, TAG_IMAGE, label, instance)
    break_key = counter.key4(seed, TAG_BREAK, label, instance)
    remove = min(vertices, np.int64(add(mul(broken, np.float64(vertices)), 0.5))) if broken > 0.0 else 0
    noise = SCALARS + contours
    order = np.empty(vertices, np.int32)
    for k in range(contours):
        greys[k] = min(counter.below(key, SCALARS + k, GREY_DRAW + 1), 255)
        for v in range(vertices):
            noise_inputs[k, 0, v] = mul(1e4, counter.uniform(key, noise + (2 * k) * vertices + v))
            noise_inputs[k, 1, v] = mul(1e4, counter.uniform(key, noise + (2 * k + 1) * vertices + v))
            keep[k, v] = 1
        if remove > 0:
            _broken_keep(break_key, k, vertices, remove, keep[k], order)


@numba.njit(cache=True)
def render_item(item, seed, per_class, vertices_of, contours_of, perlin_of, offset_of, cos_table,
                sin_table, broken, vx, vy, keep, order, img):
    """Draw item ``item`` (class ``item // per_class``) into ``img`` uint8 [H, W], filled with 255
    by the caller. Class tables: vertices, contours int64 [C], perlin, offset float64 [C]; vx, vy
    float64, keep uint8, order int32 [>= MAX_VERTICES] are scratch."""
    label = item // per_class
    instance = item % per_class
    nv = vertices_of[label]
    nk = contours_of[label]
    perlin = perlin_of[label]
    offset = offset_of[label]
    key = counter.key4(seed, TAG_IMAGE, label, instance)
    radius, oval_x, oval_y, centre_x, centre_y = image_scalars(seed, label, instance)
    scale = mul(np.float64(img.shape[0]), 1.0 / OFFICIAL_SIZE)  # = size / 512 exactly
    remove = min(nv, np.int64(add(mul(broken, np.float64(nv)), 0.5))) if broken > 0.0 else 0
    break_key = counter.key4(seed, TAG_BREAK, label, instance)
    for v in range(nv):
        vx[v] = mul(mul(cos_table[nv, v], np.float64(radius)), oval_x)
        vy[v] = mul(mul(sin_table[nv, v], np.float64(radius)), oval_y)
        keep[v] = 1
    noise = SCALARS + nk
    for k in range(nk):
        grey = min(counter.below(key, SCALARS + k, GREY_DRAW + 1), 255)
        if remove > 0:
            _broken_keep(break_key, k, nv, remove, keep, order)
        x0 = 0
        y0 = 0
        last_x = 0
        last_y = 0
        for v in range(nv):
            ux = mul(1e4, counter.uniform(key, noise + (2 * k) * nv + v))
            uy = mul(1e4, counter.uniform(key, noise + (2 * k + 1) * nv + v))
            nx = mul(mul(pnoise1_jit(ux), perlin), 2.0) - perlin
            ny = mul(mul(pnoise1_jit(uy), perlin), 2.0) - perlin
            vx[v] = vx[v] - mul(cos_table[nv, v], nx - offset)
            vy[v] = vy[v] - mul(sin_table[nv, v], ny - offset)
            # Truncate toward zero like Pillow's line drawing with float coordinates.
            px = np.int64(mul(vx[v] + centre_x, scale))
            py = np.int64(mul(vy[v] + centre_y, scale))
            if v == 0:
                x0 = px
                y0 = py
            elif keep[v - 1]:
                draw_line(img, last_x, last_y, px, py, grey)
            last_x = px
            last_y = py
        if keep[nv - 1]:
            draw_line(img, last_x, last_y, x0, y0, grey)


@numba.njit(cache=True)
def render_items(items, seed, per_class, vertices_of, contours_of, perlin_of, offset_of, cos_table,
                 sin_table, broken, out):
    """The CPU kernel: ``render_item`` of each of ``items`` into out uint8 [N, H, W] (filled with
    255 here)."""
    vx = np.empty(MAX_VERTICES)
    vy = np.empty(MAX_VERTICES)
    keep = np.empty(MAX_VERTICES, np.uint8)
    order = np.empty(MAX_VERTICES, np.int32)
    out[:] = 255
    for k in range(items.shape[0]):
        render_item(items[k], seed, per_class, vertices_of, contours_of, perlin_of, offset_of,
                    cos_table, sin_table, broken, vx, vy, keep, order, out[k])
