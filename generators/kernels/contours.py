"""RCDB's contour drawing in Numba: concentric polygons moved by Perlin noise, drawn as 1 px lines.

Geometry is in the official 512 px units; ``scale`` maps it onto the canvas. Vertex v starts at
(cos, sin)(2 pi v / V) * radius * oval and every contour moves it by ``-(cos, sin) * (noise -
offset)``, cumulatively; each contour's closed polyline is drawn after its move.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from fdsl.generators.kernels.perlin import pnoise1_jit
from fdsl.generators.kernels.raster import draw_line


@numba.njit(cache=True)
def draw_contours(img: np.ndarray, radius: float, oval_x: float, oval_y: float, centre_x: float,
                  centre_y: float, perlin: float, offset: float, greys: np.ndarray,
                  noise_inputs: np.ndarray, scale: float, keep: np.ndarray) -> None:
    """Draw every contour into ``img`` uint8 [H, W] (greys int64 [K], noise_inputs float64
    [K, 2, V]; keep bool [K, V] says which segments are drawn, all of them when empty)."""
    vertices = noise_inputs.shape[2]
    step = 2.0 * math.pi / vertices
    cos_v = np.empty(vertices)
    sin_v = np.empty(vertices)
    vx = np.empty(vertices)
    vy = np.empty(vertices)
    px = np.empty(vertices, dtype=np.int64)
    py = np.empty(vertices, dtype=np.int64)
    for v in range(vertices):
        cos_v[v] = math.cos(step * v)
        sin_v[v] = math.sin(step * v)
        vx[v] = cos_v[v] * radius * oval_x
        vy[v] = sin_v[v] * radius * oval_y
    for k in range(greys.size):
        for v in range(vertices):
            nx = pnoise1_jit(noise_inputs[k, 0, v]) * perlin * 2.0 - perlin
            ny = pnoise1_jit(noise_inputs[k, 1, v]) * perlin * 2.0 - perlin
            vx[v] -= cos_v[v] * (nx - offset)
            vy[v] -= sin_v[v] * (ny - offset)
            # Truncate toward zero like Pillow's line drawing with float coordinates.
            px[v] = int((vx[v] + centre_x) * scale)
            py[v] = int((vy[v] + centre_y) * scale)
        for v in range(vertices):
            if keep.size == 0 or keep[k, v]:
                w = v + 1 if v + 1 < vertices else 0
                draw_line(img, px[v], py[v], px[w], py[w], greys[k])
