"""Plain-Python port of the official RCDB per-image algorithm (make_rcdb.py), for benchmarks and tests.

Same loop structure as the official script: Python lists of vertex coordinates, one Python noise
call per vertex and axis, Pillow's ``ImageDraw.line`` per segment. It takes the same pre-drawn
random numbers as fdsl's kernel (``fdsl.generators.rcdb.params.ImageParams``), so both must give the same
pixels. ``pnoise1`` comes from the C ``noise`` package the official script imports, when it is
installed (``pip install noise``), else from ``fdsl.generators.kernels.perlin.pnoise1`` (equal to
it, tested in tests/test_perlin.py), called once per value like the C function.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from fdsl.generators.rcdb.params import OFFICIAL_SIZE, ImageParams

try:
    from noise import pnoise1
    NOISE_SOURCE = "noise package"
except ImportError:  # the port still runs, with fdsl's equal implementation
    from fdsl.generators.kernels.perlin import pnoise1
    NOISE_SOURCE = "fdsl.generators.kernels.perlin"


def draw_image(params: ImageParams, perlin: float, offset: float, size: int = OFFICIAL_SIZE) -> np.ndarray:
    """One RCDB image as uint8 [size, size] on white, as the official script draws it."""
    im = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(im)
    vertices = params.noise_inputs.shape[2]
    angle = math.pi * 2 / vertices
    scale = size / OFFICIAL_SIZE
    vertex_x = [math.cos(angle * v) * params.radius * params.oval_x for v in range(vertices)]
    vertex_y = [math.sin(angle * v) * params.radius * params.oval_y for v in range(vertices)]
    vertex_x.append(vertex_x[0])
    vertex_y.append(vertex_y[0])
    for contour, grey in enumerate(params.greys.tolist()):
        inputs = params.noise_inputs[contour].tolist()
        noise_x = [pnoise1(u) * perlin * 2 - perlin for u in inputs[0]]
        noise_y = [pnoise1(u) * perlin * 2 - perlin for u in inputs[1]]
        for v in range(vertices):
            vertex_x[v] -= math.cos(angle * v) * (noise_x[v] - offset)
            vertex_y[v] -= math.sin(angle * v) * (noise_y[v] - offset)
        vertex_x[vertices] = vertex_x[0]
        vertex_y[vertices] = vertex_y[0]
        for i in range(vertices):
            draw.line(((vertex_x[i] + params.centre_x) * scale, (vertex_y[i] + params.centre_y) * scale,
                       (vertex_x[i + 1] + params.centre_x) * scale, (vertex_y[i + 1] + params.centre_y) * scale),
                      fill=grey, width=1)
    return np.asarray(im)
