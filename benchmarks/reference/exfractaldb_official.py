"""Plain-Python/NumPy port of the official ExFractalDB scripts, for benchmarks and tests.

Ported from ``masora1030/CVPR2022-Pretrained-ViT-PyTorch`` (docs/FIDELITY.md lists the commits):
``3dfractal_render/IteratedFunctionSystem.py`` (``calculate``), ``3dfractal_render/code/
category_search.py`` (the search: ``min_max``, ``centoroid``, the variance test) and
``3dfractal_render/instance.py``, operation for operation, with the same quirks:

- ``calculate(iteration)`` draws ``iteration`` uniforms but iterates ``iteration - 1`` times from
  the origin, which it does not store: ``point_num`` 10,000 gives 9,999 points;
- a map is the first whose running probability sum reaches the draw; when rounding leaves the
  draw above the last sum, no map is chosen and the previous point is stored again (at the first
  step the script fails);
- ``centoroid`` divides the coordinate sums by ``point_num`` (10,000), not by the 9,999 points;
- the acceptance checks NaN on y only, then the three population variances.

Random numbers are not the script's (it seeds nothing): ``sample_candidate`` re-implements fdsl's
candidate stream from its definition (``default_rng([seed, 1, k])``: the map count, the maps, then
the uniforms of its cloud), so that the port and fdsl judge the same candidates and tests can
see each documented difference. ``render_view`` is what the OpenGL pass computes for 1 px points,
in NumPy (glm-style ``lookAt`` and ``perspective``: fovy 45, near 1, far 100; pixel = floor of the
window coordinate; top row first); ``ring_render`` is the released ``render.py``'s ring of views.
"""

from __future__ import annotations

import math

import numpy as np

POINT_NUM = 10_000  # --point_num of category_search.py and instance.py
NORMALIZE = 1.0  # --normalize


def sample_candidate(seed: int, k: int) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    """Candidate ``k`` of fdsl's stream: (params float64 [N, 12], probs [N], the stream, which goes on
    with the candidate's cloud). Probabilities as category_search.py: |det| summed map by map."""
    rng = np.random.default_rng([seed, 1, k])
    n = int(rng.integers(2, 8))
    params = rng.uniform(-1.0, 1.0, (n, 12))
    dets = [abs(np.linalg.det(np.array(row[:9], dtype=float).reshape(3, 3))) for row in params]
    total = 0.0
    for det in dets:
        total += det
    return params, np.array([det / total for det in dets]), rng


def calculate(params: np.ndarray, probs: np.ndarray, rand: np.ndarray) -> np.ndarray:
    """``ifs_function.calculate(len(rand))`` with the draws ``rand``: params float64 [N, 12] (a..l,
    already weighted), probs [N] -> points float64 [3, len(rand) - 1] (rows x, y, z)."""
    functions = [dict(zip("abcdefghijkl", row, strict=True)) for row in np.asarray(params, float).tolist()]
    select_function, temp_proba = [], 0.0
    for proba in np.asarray(probs, float).tolist():
        temp_proba += proba
        select_function.append(temp_proba)
    prev_x = prev_y = prev_z = 0.0
    next_x = next_y = next_z = None
    xs, ys, zs = [], [], []
    for i in range(len(rand) - 1):
        for j in range(len(select_function)):
            if rand[i] <= select_function[j]:
                f = functions[j]
                next_x = prev_x * f["a"] + prev_y * f["b"] + prev_z * f["c"] + f["j"]
                next_y = prev_x * f["d"] + prev_y * f["e"] + prev_z * f["f"] + f["k"]
                next_z = prev_x * f["g"] + prev_y * f["h"] + prev_z * f["i"] + f["l"]
                break
        if next_x is None:
            raise UnboundLocalError("the official calculate fails: no map chosen at its first step")
        xs.append(next_x), ys.append(next_y), zs.append(next_z)
        prev_x, prev_y, prev_z = next_x, next_y, next_z
    return np.array((xs, ys, zs), dtype=float)


def min_max(x: np.ndarray) -> np.ndarray:
    """``min_max(args, x, axis=None)``: every coordinate jointly to [-normalize, normalize]."""
    lo = x.min(axis=None, keepdims=True)
    hi = x.max(axis=None, keepdims=True)
    return ((x - lo) / (hi - lo)) * (NORMALIZE - (-NORMALIZE)) - NORMALIZE


def centoroid(point: np.ndarray, point_num: int = POINT_NUM) -> np.ndarray:
    """``centoroid``: each row minus its sum (Python's ``sum``) divided by ``point_num``."""
    centre = [sum(point[0]) / point_num, sum(point[1]) / point_num, sum(point[2]) / point_num]
    return np.array([(point[axis] - centre[axis]).tolist() for axis in range(3)])


def normalized_cloud(params: np.ndarray, probs: np.ndarray, rand: np.ndarray,
                     point_num: int = POINT_NUM) -> np.ndarray:
    """calculate -> min_max -> centoroid, as both scripts do: float64 [3, len(rand) - 1]."""
    with np.errstate(all="ignore"):
        return centoroid(min_max(calculate(params, probs, rand)), point_num)


def accepted(point: np.ndarray, variance: float) -> bool:
    """category_search.py's test of a normalised cloud [3, n]: no NaN in y, then each population
    variance above ``variance``."""
    with np.errstate(all="ignore"):
        var_point = np.var(point, axis=1)
    arr = np.isnan(point).any(axis=1)
    return (not arr[1]) and var_point[0] > variance and var_point[1] > variance and var_point[2] > variance


def search(seed: int, classes: int, point_num: int = POINT_NUM, variance: float = 0.05) -> list[int]:
    """Indices k of the first ``classes`` candidates of fdsl's stream that category_search.py
    accepts (``calculate(point_num)`` on the candidate's next ``point_num`` uniforms)."""
    found, k = [], 0
    while len(found) < classes:
        params, probs, rng = sample_candidate(seed, k)
        if accepted(normalized_cloud(params, probs, rng.random(point_num), point_num), variance):
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
                   point_num: int = POINT_NUM) -> np.ndarray | None:
    """The released ``instance.py`` for one row of the weights table: parameters times ``weights``,
    ``calculate(point_num)`` on ``point_num`` draws of ``rng``, min_max, centoroid; float64
    [point_num - 1, 3] as written to the PLY, or None where it writes none (NaN in y)."""
    point = normalized_cloud(np.asarray(params, float) * weights, probs, rng.random(point_num), point_num)
    return None if np.isnan(point).any(axis=1)[1] else point.T


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
