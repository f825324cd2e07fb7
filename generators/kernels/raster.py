"""Exact integer line rasterisation in Numba (Bresenham, pixel for pixel like Pillow's 1 px lines).

Coordinates are truncated toward zero (as Pillow's ``ImageDraw.line`` does with float input), the
line is walked with integer Bresenham steps, and pixels outside the canvas are skipped, so a
segment that leaves the canvas is clipped, never wrapped.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _put(img: np.ndarray, x: int, y: int, value: int) -> None:
    if 0 <= x < img.shape[1] and 0 <= y < img.shape[0]:
        img[y, x] = value


@numba.njit(cache=True, inline="always")
def _walk(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, value: int, checked: bool) -> None:
    dx = abs(x1 - x0)
    dy = abs(y1 - y0)
    xs = 1 if x1 >= x0 else -1
    ys = 1 if y1 >= y0 else -1
    # One Bresenham walk for both octant families: each step moves one pixel along the major axis
    # and, when the error term says so, one along the minor axis.
    if dx >= dy:
        major, minor, major_x, major_y, minor_x, minor_y = dx, dy, xs, 0, 0, ys
    else:
        major, minor, major_x, major_y, minor_x, minor_y = dy, dx, 0, ys, xs, 0
    err = 2 * minor - major
    for _ in range(major + 1):
        if checked:
            _put(img, x0, y0, value)
        else:
            img[y0, x0] = value
        if err >= 0 and major > 0:
            x0 += minor_x
            y0 += minor_y
            err -= 2 * major
        err += 2 * minor
        x0 += major_x
        y0 += major_y


@numba.njit(cache=True)
def draw_line(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, value: int) -> None:
    """Draw the 1 px segment (x0, y0)-(x1, y1), both ends included, into ``img`` uint8 [H, W]."""
    height, width = img.shape
    if (x0 < 0 and x1 < 0) or (y0 < 0 and y1 < 0) or (x0 >= width and x1 >= width) \
            or (y0 >= height and y1 >= height):
        return  # wholly outside: nothing to draw
    inside = (0 <= x0 < width and 0 <= x1 < width and 0 <= y0 < height and 0 <= y1 < height)
    if inside:
        _walk(img, x0, y0, x1, y1, value, False)  # no per-pixel bounds checks needed
    else:
        _walk(img, x0, y0, x1, y1, value, True)

