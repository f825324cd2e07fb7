"""3-D iterated function systems and their pinhole projection, in Numba.

A system of N maps is ``matrices`` float64 [N, 3, 3] (rows (a b c), (d e f), (g h i) of the official
parameter order) and ``shifts`` float64 [N, 3] (j, k, l); a point maps to ``A @ p + t``. Randomness
comes in as arrays of uniforms drawn by seeded NumPy Generators, so kernels are pure functions.
"""

from __future__ import annotations

import math

import numba
import numpy as np

FOVY_DEGREES = 45.0
CAMERA_DISTANCE = 4.0
Z_NEAR = 1.0
Z_FAR = 100.0


@numba.njit(cache=True)
def _chaos_game(matrices: np.ndarray, shifts: np.ndarray, cumulative: np.ndarray,
                uniforms: np.ndarray, out: np.ndarray) -> None:
    # Start at the origin and keep every iterate, no burn-in (as the official ifs_function does);
    # a map is chosen as the first whose cumulative probability reaches the uniform draw.
    x = y = z = 0.0
    last = cumulative.size - 1
    for n in range(uniforms.size):
        u = uniforms[n]
        m = 0
        while m < last and u > cumulative[m]:
            m += 1
        a = matrices[m]
        nx = a[0, 0] * x + a[0, 1] * y + a[0, 2] * z + shifts[m, 0]
        ny = a[1, 0] * x + a[1, 1] * y + a[1, 2] * z + shifts[m, 1]
        nz = a[2, 0] * x + a[2, 1] * y + a[2, 2] * z + shifts[m, 2]
        x, y, z = nx, ny, nz
        out[n, 0] = x
        out[n, 1] = y
        out[n, 2] = z


def chaos_game(matrices: np.ndarray, shifts: np.ndarray, probabilities: np.ndarray,
               uniforms: np.ndarray) -> np.ndarray:
    """Iterate the IFS once per uniform draw (float64 [n] in [0, 1)); returns float64 [n, 3].

    Points may overflow to inf for an expanding system; callers check ``np.isfinite``.
    """
    cumulative = np.cumsum(np.asarray(probabilities, dtype=np.float64))
    out = np.empty((uniforms.size, 3), dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        _chaos_game(np.ascontiguousarray(matrices, dtype=np.float64),
                    np.ascontiguousarray(shifts, dtype=np.float64), cumulative,
                    np.ascontiguousarray(uniforms, dtype=np.float64), out)
    return out


@numba.njit(cache=True)
def _normalize_center(points: np.ndarray) -> bool:
    # Joint min-max over all coordinates to [-1, 1], then subtract the centroid per axis
    # (the official min_max(axis=None) + centoroid); False when the cloud is not finite or flat.
    lo = np.inf
    hi = -np.inf
    for v in points.ravel():
        if not np.isfinite(v):
            return False
        lo = min(lo, v)
        hi = max(hi, v)
    if not hi > lo:
        return False
    scale = 2.0 / (hi - lo)
    n = points.shape[0]
    for axis in range(3):
        total = 0.0
        for i in range(n):
            points[i, axis] = (points[i, axis] - lo) * scale - 1.0
            total += points[i, axis]
        mean = total / n
        for i in range(n):
            points[i, axis] -= mean
    return True


def normalize_center(points: np.ndarray) -> bool:
    """Normalise float64 [n, 3] ``points`` in place; False if they are not finite or all equal."""
    return bool(_normalize_center(points))


@numba.njit(cache=True)
def _axis_variances(points: np.ndarray, out: np.ndarray) -> None:
    n = points.shape[0]
    for axis in range(3):
        total = 0.0
        for i in range(n):
            total += points[i, axis]
        mean = total / n
        squares = 0.0
        for i in range(n):
            d = points[i, axis] - mean
            squares += d * d
        out[axis] = squares / n


def axis_variances(points: np.ndarray) -> np.ndarray:
    """Population variance of x, y and z of float64 [n, 3] points; float64 [3]."""
    out = np.empty(3)
    _axis_variances(np.ascontiguousarray(points, dtype=np.float64), out)
    return out


def camera_basis(azimuth: float, elevation: float, roll: float) -> np.ndarray:
    """Rows (right, up, back) float64 [3, 3] of a camera on the +back side looking at the origin.

    Angles in radians; azimuth about +Y from +Z, elevation toward +Y (Y is up as in OpenGL), roll
    turns the image about the viewing axis. The camera sits at ``CAMERA_DISTANCE * back``.
    """
    ca, sa = math.cos(azimuth), math.sin(azimuth)
    ce, se = math.cos(elevation), math.sin(elevation)
    right = np.array([ca, 0.0, -sa])
    up = np.array([-se * sa, ce, -se * ca])
    back = np.array([ce * sa, se, ce * ca])
    cr, sr = math.cos(roll), math.sin(roll)
    return np.stack([cr * right + sr * up, -sr * right + cr * up, back])


@numba.njit(cache=True, error_model="numpy")
def _pixel_indices(xs: np.ndarray, ys: np.ndarray, zs: np.ndarray, cam: np.ndarray, distance: float,
                   near: float, far: float, height: int, width: int, out: np.ndarray) -> None:
    # Branch-free so LLVM vectorises it: flat pixel index per point, -1 when clipped. cam holds the
    # right and up rows pre-scaled by focal * half the image side, and the back row; window
    # coordinates are floored (int of a non-negative value), row 0 at the top, depth clipped to
    # [near, far] as OpenGL does.
    half_w = 0.5 * width
    half_h = 0.5 * height
    for i in range(xs.size):
        px, py, pz = xs[i], ys[i], zs[i]
        depth = distance - (cam[2, 0] * px + cam[2, 1] * py + cam[2, 2] * pz)
        inv = 1.0 / depth
        x = half_w + (cam[0, 0] * px + cam[0, 1] * py + cam[0, 2] * pz) * inv
        y = half_h - (cam[1, 0] * px + cam[1, 1] * py + cam[1, 2] * pz) * inv
        inside = (depth >= near) & (depth <= far) & (x >= 0.0) & (y >= 0.0) & (x < width) & (y < height)
        out[i] = np.int32(y) * width + np.int32(x) if inside else -1


@numba.njit(cache=True)
def _project_views(xs: np.ndarray, ys: np.ndarray, zs: np.ndarray, cameras: np.ndarray,
                   distance: float, near: float, far: float, images: np.ndarray,
                   lit: np.ndarray) -> None:
    count, height, width = images.shape
    index = np.empty(xs.size, dtype=np.int32)
    for v in range(count):
        _pixel_indices(xs, ys, zs, cameras[v], distance, near, far, height, width, index)
        flat = images[v].ravel()
        for i in range(index.size):
            if index[i] >= 0:
                flat[index[i]] = 255
        lit[v] = np.count_nonzero(flat)


def project_views(points: np.ndarray, bases: np.ndarray, images: np.ndarray,
                  distance: float = CAMERA_DISTANCE, fovy_degrees: float = FOVY_DEGREES) -> np.ndarray:
    """Splat float64 [n, 3] points as 1 px white (255) into zeroed uint8 images [V, H, W].

    View ``v`` has the rows of ``bases[v]`` float64 [V, 3, 3] (see camera_basis) as camera axes,
    sits at ``distance * back`` and has vertical field of view ``fovy_degrees``; a point lights the
    pixel holding its window coordinate. Returns the lit pixel count per view, int64 [V]
    (images must start black for the count to be the number of points' pixels).
    """
    focal = 1.0 / math.tan(math.radians(fovy_degrees) / 2.0)
    cameras = np.array(bases, dtype=np.float64).reshape(-1, 3, 3)
    cameras[:, 0] *= focal * 0.5 * images.shape[2]
    cameras[:, 1] *= focal * 0.5 * images.shape[1]
    lit = np.zeros(len(cameras), dtype=np.int64)
    xs, ys, zs = np.ascontiguousarray(np.asarray(points, dtype=np.float64).T)
    _project_views(xs, ys, zs, cameras, float(distance), Z_NEAR, Z_FAR, images, lit)
    return lit

