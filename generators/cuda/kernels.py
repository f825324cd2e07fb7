"""The CUDA kernels: one thread per image, many images per launch.

Each kernel maps its thread to one requested item and calls the per-image body that the CPU
kernels share (``fdsl.generators.kernels``): same draws from the same counter-based streams, same
point and segment order, same rounding (``mul`` / ``add`` -> libdevice, see ``rounding``). Scratch
lives in per-thread local arrays; class tables are device arrays copied once; ``out`` is the
caller's zeroed (or white) uint8 tensor, one image per thread.

In numba's CUDA simulator kernels run as Python with device arrays wrapped in fake arrays, which
compiled ``@njit`` bodies cannot take: ``plain`` unwraps them there, and is the identity on a GPU.

``SIGNATURES`` gives each kernel's argument types, for compiling it to PTX ahead of any launch
(``tests/test_cuda_kernels.py``).
"""

from __future__ import annotations

import numba
from numba import cuda

from fdsl.generators.cuda import rounding
from fdsl.generators.kernels import ifs2d_image, ifs3d_image, linedb_image, rcdb_image

THREADS = 64  # images per block: one thread each, heavy on registers and local memory
# Local array shapes must be literal constants of this module (checked against the bodies' sizes
# in tests/test_cuda_kernels.py).
SYSTEM_SHAPE = (7, 12)
FRAME = 5
MAX_VERTICES = 200

if rounding.SIMULATED:
    def plain(array):
        return getattr(array, "_ary", array)
else:
    @numba.njit(inline="always")
    def plain(array):
        return array


@cuda.jit
def fractaldb(items, seed, instances, renders, maps, edges, weights, points, size, pad, palette,
              bits, out):
    t = cuda.grid(1)
    if t < items.shape[0]:
        box = cuda.local.array(4, numba.float64)
        ifs2d_image.render_item(items[t], seed, instances, renders, plain(maps), plain(edges),
                                plain(weights), points, size, pad, plain(palette), plain(bits), box,
                                plain(out)[t])


@cuda.jit
def exfractaldb(labels, variants, seed, points, params, cumulative, n_maps, table, cameras, gl_rows,
                out):
    t = cuda.grid(1)
    if t < labels.shape[0]:
        system = cuda.local.array(SYSTEM_SHAPE, numba.float64)
        frame = cuda.local.array(FRAME, numba.float64)
        ifs3d_image.render_view(labels[t], variants[t], seed, points, plain(params),
                                plain(cumulative), plain(n_maps), plain(table), plain(cameras)[t],
                                gl_rows, system, frame, plain(out)[t])


@cuda.jit
def exfractaldb_valid(labels, variants, seed, points, params, cumulative, n_maps, table, ok):
    t = cuda.grid(1)
    if t < labels.shape[0]:
        system = cuda.local.array(SYSTEM_SHAPE, numba.float64)
        frame = cuda.local.array(FRAME, numba.float64)
        valid = ifs3d_image.model_valid(labels[t], variants[t], seed, points, plain(params),
                                        plain(cumulative), plain(n_maps), plain(table), system,
                                        frame)
        ok[t] = 1 if valid else 0


@cuda.jit
def rcdb(items, seed, per_class, vertices, contour_counts, perlin, offset, cos_table, sin_table,
         broken, out):
    t = cuda.grid(1)
    if t < items.shape[0]:
        vx = cuda.local.array(MAX_VERTICES, numba.float64)
        vy = cuda.local.array(MAX_VERTICES, numba.float64)
        keep = cuda.local.array(MAX_VERTICES, numba.uint8)
        order = cuda.local.array(MAX_VERTICES, numba.int32)
        rcdb_image.render_item(items[t], seed, per_class, plain(vertices), plain(contour_counts),
                             plain(perlin), plain(offset), plain(cos_table), plain(sin_table),
                             broken, vx, vy, keep, order, plain(out)[t])


@cuda.jit
def linedb(items, seed, per_class, line_counts, shuffle, out):
    t = cuda.grid(1)
    if t < items.shape[0]:
        linedb_image.render_item(items[t], seed, per_class, plain(line_counts), shuffle, plain(out)[t])


_I64, _U64, _F64, _B = "int64[::1]", "uint64", "float64", "boolean"
SIGNATURES = {
    "fractaldb": (fractaldb, f"void({_I64}, {_U64}, int64, int64, float64[:, :, ::1], "
                             "float64[:, ::1], float64[:, ::1], int64, int64, int64, uint8[:, ::1], "
                             "uint8[::1], uint8[:, :, :, ::1])"),
    "exfractaldb": (exfractaldb, f"void({_I64}, {_I64}, {_U64}, int64, float64[:, :, ::1], "
                                 f"float64[:, ::1], {_I64}, float64[:, ::1], float64[:, :, ::1], "
                                 f"{_B}, uint8[:, :, ::1])"),
    "exfractaldb_valid": (exfractaldb_valid, f"void({_I64}, {_I64}, {_U64}, int64, "
                                             f"float64[:, :, ::1], float64[:, ::1], {_I64}, "
                                             "float64[:, ::1], uint8[::1])"),
    "rcdb": (rcdb, f"void({_I64}, {_U64}, int64, {_I64}, {_I64}, float64[::1], float64[::1], "
                   f"float64[:, ::1], float64[:, ::1], {_F64}, uint8[:, :, ::1])"),
    "linedb": (linedb, f"void({_I64}, {_U64}, int64, {_I64}, {_B}, uint8[:, :, ::1])"),
}
