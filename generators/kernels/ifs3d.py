"""3-D iterated function systems for ExFractalDB's category search, and its pinhole projection.

A system of N maps is ``matrices`` float64 [N, 3, 3] (rows (a b c), (d e f), (g h i) of the official
parameter order) and ``shifts`` float64 [N, 3] (j, k, l); a point maps to ``A @ p + t``. The search's
randomness comes in as arrays of uniforms drawn by seeded NumPy Generators, so kernels are pure
functions. The models and views of the data set are ``ifs3d_image``'s (counter-based streams,
shared with the GPU); ``camera_basis`` and ``project_views`` expose its projection on any points.
"""

from __future__ import annotations

import numba
import numpy as np

from fdsl.generators.kernels import ifs3d_image

CAMERA_DISTANCE = ifs3d_image.CAMERA_DISTANCE


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
    """Rows (right, up, back) float64 [3, 3] of a camera on the +back side looking at the origin
    (``ifs3d_image.camera_axes``: angles in radians, azimuth about +Y from +Z, elevation toward +Y,
    roll about the viewing axis; the camera sits at ``CAMERA_DISTANCE * back``)."""
    out = np.empty((3, 3))
    ifs3d_image.camera_axes(float(azimuth), float(elevation), float(roll), out)
    return out


def project_views(points: np.ndarray, bases: np.ndarray, images: np.ndarray) -> np.ndarray:
    """Splat float64 [n, 3] points as 1 px white (255) into zeroed uint8 images [V, H, W] with the
    projection ExFractalDB's kernels use (``ifs3d_image.pixel_of``).

    View ``v`` has the rows of ``bases[v]`` float64 [V, 3, 3] (see camera_basis) as camera axes,
    sits at distance 4 on its back axis and has a vertical field of view of 45 degrees; a point
    lights the pixel holding its window coordinate. Returns the lit pixel count per view, int64 [V]
    (images must start black for the count to be the number of points' pixels).
    """
    xs, ys, zs = np.ascontiguousarray(np.asarray(points, dtype=np.float64).T)
    index = np.empty(len(xs), np.int64)
    lit = np.zeros(len(images), dtype=np.int64)
    height, width = images.shape[1:]
    for v, basis in enumerate(np.asarray(bases, dtype=np.float64).reshape(-1, 3, 3)):
        cam = basis.copy()
        ifs3d_image.scale_axes(cam, height, width)
        lit[v] = ifs3d_image.project_cloud(xs, ys, zs, cam, False, images[v], index)
    return lit
