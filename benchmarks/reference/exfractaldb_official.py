"""Plain-Python/NumPy port of the official ExFractalDB algorithms, for benchmarks and tests.

- ``chaos_game``: the official ``ifs_function.calculate`` loop (pure Python, one point at a time,
  first map whose cumulative probability reaches the draw), fed with given uniforms.
- ``normalize_center``: the official ``min_max(axis=None)`` then ``centoroid``.
- ``search``: the official category-search loop over fdsl's candidate stream (so the accepted
  candidates must match ``fdsl.generators.exfractaldb.search_classes``).
- ``render_view``: what the official OpenGL pass computes for 1 px points, in NumPy: glm-style
  ``lookAt`` and ``perspective`` (fovy 45, near 1, far 100) 4x4 matrices, clip test, perspective
  divide, viewport transform, pixel = floor of the window coordinate; returned top row first.
"""

from __future__ import annotations

import math

import numpy as np

from fdsl.generators.exfractaldb import sample_candidate


def chaos_game(params: np.ndarray, probs: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """params float64 [N, 12] (a..l), probs [N], uniforms [n] -> points float64 [n, 3]."""
    functions = [dict(zip("abcdefghijkl", row, strict=True)) for row in params.tolist()]
    cumulative, total = [], 0.0
    for p in probs.tolist():
        total += p
        cumulative.append(total)
    x = y = z = 0.0
    xs, ys, zs = [], [], []
    for u in uniforms.tolist():
        f = functions[-1]
        for j, c in enumerate(cumulative):
            if u <= c:
                f = functions[j]
                break
        x, y, z = (x * f["a"] + y * f["b"] + z * f["c"] + f["j"],
                   x * f["d"] + y * f["e"] + z * f["f"] + f["k"],
                   x * f["g"] + y * f["h"] + z * f["i"] + f["l"])
        xs.append(x)
        ys.append(y)
        zs.append(z)
    return np.array([xs, ys, zs], dtype=float).T


def normalize_center(points: np.ndarray) -> np.ndarray:
    """Joint min-max to [-1, 1], then centre each axis: float64 [n, 3] -> float64 [n, 3]."""
    lo, hi = points.min(), points.max()
    scaled = (points - lo) / (hi - lo) * 2.0 - 1.0
    return scaled - scaled.mean(axis=0)


def accepted(params: np.ndarray, probs: np.ndarray, uniforms: np.ndarray, threshold: float) -> bool:
    """The official acceptance test of one candidate."""
    with np.errstate(all="ignore"):
        if not np.all(np.isfinite(probs)):
            return False
        points = chaos_game(params, probs, uniforms)
        if not np.all(np.isfinite(points)) or points.max() == points.min():
            return False
        return bool(np.all(normalize_center(points).var(axis=0) > threshold))


def search(seed: int, classes: int, points: int, threshold: float) -> list[int]:
    """Indices k of the first ``classes`` accepted candidates of fdsl's candidate stream."""
    found, k = [], 0
    while len(found) < classes:
        params, probs, rng = sample_candidate(seed, k)
        if accepted(params, probs, rng.random(points), threshold):
            found.append(k)
        k += 1
    return found


def _look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    forward = (target - eye) / np.linalg.norm(target - eye)
    side = np.cross(forward, up)
    side /= np.linalg.norm(side)
    true_up = np.cross(side, forward)
    view = np.eye(4)
    view[0, :3], view[1, :3], view[2, :3] = side, true_up, -forward
    view[:3, 3] = -view[:3, :3] @ eye
    return view


def _perspective(fovy: float, aspect: float, near: float, far: float) -> np.ndarray:
    f = 1.0 / math.tan(fovy / 2.0)
    proj = np.zeros((4, 4))
    proj[0, 0], proj[1, 1] = f / aspect, f
    proj[2, 2], proj[2, 3] = (far + near) / (near - far), 2 * far * near / (near - far)
    proj[3, 2] = -1.0
    return proj


def render_view(points: np.ndarray, azimuth: float, elevation: float, roll: float, size: int,
                distance: float = 4.0) -> np.ndarray:
    """1 px white points on black, uint8 [size, size], for a camera at ``distance`` on the
    direction (azimuth, elevation) (radians, Y up) with ``roll``, looking at the origin."""
    back = np.array([math.cos(elevation) * math.sin(azimuth), math.sin(elevation),
                     math.cos(elevation) * math.cos(azimuth)])
    right = np.array([math.cos(azimuth), 0.0, -math.sin(azimuth)])
    up = np.cross(back, right)
    up = -math.sin(roll) * right + math.cos(roll) * up
    mvp = _perspective(math.radians(45.0), 1.0, 1.0, 100.0) @ _look_at(distance * back, np.zeros(3), up)
    clip = np.c_[points, np.ones(len(points))] @ mvp.T
    w = clip[:, 3]
    inside = np.all(np.abs(clip[:, :3]) <= w[:, None], axis=1)
    ndc = clip[inside, :2] / w[inside, None]
    window = (ndc + 1.0) * 0.5 * size
    cols, rows_gl = np.floor(window[:, 0]).astype(int), np.floor(window[:, 1]).astype(int)
    ok = (cols >= 0) & (cols < size) & (rows_gl >= 0) & (rows_gl < size)
    img = np.zeros((size, size), dtype=np.uint8)
    img[size - 1 - rows_gl[ok], cols[ok]] = 255
    return img


# --------------------------------------------------------------------------- released scripts


def instance_cloud(params: np.ndarray, probs: np.ndarray, weights: np.ndarray, rng: np.random.Generator,
                   point_num: int = 10_000) -> np.ndarray | None:
    """The released ``instance.py`` for one row of the weights table: ``calculate(point_num)``
    (``point_num - 1`` iterates from the origin, the origin itself not stored), joint min-max to
    [-1, 1], centroid = sums / ``point_num``; None where it writes no PLY (NaN in y)."""
    uniforms = rng.random(point_num)[: point_num - 1]
    with np.errstate(all="ignore"):
        points = chaos_game(params * weights, probs, uniforms)
        lo, hi = points.min(), points.max()
        scaled = (points - lo) / (hi - lo) * 2.0 - 1.0
        centred = scaled - scaled.sum(axis=0) / point_num
    return None if np.isnan(centred[:, 1]).any() else centred


def ring_render(points: np.ndarray, view: int, views: int, jitter_degrees: float, size: int = 224) -> np.ndarray:
    """The released ``render.py`` for one view, in NumPy float32 as the GPU computes: yaw
    ``2 pi view / views + 30 deg + jitter deg`` about +Y, camera at ``-4 R e_x`` looking at the
    origin with up ``R e_y``, glm perspective (45 deg, near 1, far 100), 1 px white points, and the
    image as the script saves ``glReadPixels`` output: bottom row first."""
    yaw = view / views * math.pi * 2.0 + math.radians(30.0) + math.radians(jitter_degrees)
    rot = np.array([[math.cos(yaw), 0.0, math.sin(yaw)], [0.0, 1.0, 0.0], [-math.sin(yaw), 0.0, math.cos(yaw)]])
    eye = -(rot @ np.array([1.0, 0.0, 0.0])) * 4.0
    mvp = (_perspective(math.radians(45.0), 1.0, 1.0, 100.0) @ _look_at(eye, np.zeros(3), rot[:, 1])).astype(np.float32)
    pts = np.asarray(points, dtype=np.float32)
    clip = np.c_[pts, np.ones(len(pts), np.float32)] @ mvp.T
    w = clip[:, 3]
    inside = np.all(np.abs(clip[:, :3]) <= w[:, None], axis=1)
    window = (clip[inside, :2] / w[inside, None] + np.float32(1.0)) * np.float32(0.5 * size)
    cols, rows_gl = np.floor(window[:, 0]).astype(int), np.floor(window[:, 1]).astype(int)
    ok = (cols >= 0) & (cols < size) & (rows_gl >= 0) & (rows_gl < size)
    img = np.zeros((size, size), dtype=np.uint8)
    img[rows_gl[ok], cols[ok]] = 255
    return img
