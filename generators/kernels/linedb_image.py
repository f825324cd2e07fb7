"""One LineDB image from its counter-based stream: the per-image body of the CPU and GPU kernels.

Image ``instance`` of class ``label`` draws its lines from the stream ``(seed, 1, label,
instance)`` (``fdsl.generators.kernels.counter``): line k's ends x0, y0, x1, y1 are draws
``5 k .. 5 k + 3`` as integers in 0..size-1 and its grey level draw ``5 k + 4`` in 0..255; the
lines are drawn in order, 1 px, with the RCDB rasteriser, on the white canvas. With shuffled
counts the image's line count is ``line_counts[j]``, j draw 0 of ``(seed, 2, label, instance)``
as an integer below the number of classes. Integer arithmetic only.
"""

from __future__ import annotations

import numba

from fdsl.generators.kernels import counter
from fdsl.generators.kernels.raster import draw_line

TAG_IMAGE, TAG_SHUFFLE = 1, 2
DRAWS_PER_LINE = 5


@numba.njit(cache=True)
def line_count(seed, label, instance, line_counts, shuffle):
    """How many lines image ``instance`` of class ``label`` draws."""
    if not shuffle:
        return line_counts[label]
    key = counter.key4(seed, TAG_SHUFFLE, label, instance)
    return line_counts[counter.below(key, 0, line_counts.shape[0])]


@numba.njit(cache=True)
def render_item(item, seed, per_class, line_counts, shuffle, img):
    """Draw item ``item`` (class ``item // per_class``) into ``img`` uint8 [size, size], filled
    with 255 by the caller; returns its line count."""
    label = item // per_class
    instance = item % per_class
    lines = line_count(seed, label, instance, line_counts, shuffle)
    key = counter.key4(seed, TAG_IMAGE, label, instance)
    size = img.shape[0]
    for k in range(lines):
        d = DRAWS_PER_LINE * k
        draw_line(img, counter.below(key, d, size), counter.below(key, d + 1, size),
                  counter.below(key, d + 2, size), counter.below(key, d + 3, size),
                  counter.byte(key, d + 4))
    return lines


@numba.njit(cache=True)
def render_items(items, seed, per_class, line_counts, shuffle, out, counts):
    """The CPU kernel: ``render_item`` of each of ``items`` into out uint8 [N, size, size] (filled
    with 255 here); counts int32 [N] gets each image's line count."""
    out[:] = 255
    for k in range(items.shape[0]):
        counts[k] = render_item(items[k], seed, per_class, line_counts, shuffle, out[k])
