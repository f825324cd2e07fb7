"""ExFractalDB's 3-D models and views from counter-based streams: the kernels the CPU and GPU share.

Model (class, variant) is the class's IFS with every parameter scaled by row ``variant`` of the
instance table; its cloud is ``points`` chaos-game points from the origin, draw ``i`` of the
stream ``(seed, 2, class, variant)`` (``fdsl.generators.kernels.counter``) choosing the map of
point i (first map whose cumulative probability reaches it), every iterate kept. The cloud is
min-max normalised jointly to [-1, 1] and centred per axis, as ``ifs3d.normalize_center`` does,
and diverges when a coordinate is not finite or all are equal.

A GPU thread that draws one view has no room for the cloud, so it runs the orbit three times:
``cloud_frame`` (min and max, then the per-axis sums of the normalised points, added in point
order), then ``render_view`` (the centred points projected). The CPU builds each model's cloud
once with the same functions (``cloud_points``) and projects every view of it. Every product and
sum goes through ``mul`` / ``add``, so both round alike.

View v of a model: its angles come from the stream ``(seed, 3, class, variant, v)`` (random mode:
draws 0, 1, 2 are the height in U(-1, 1), the azimuth in U(0, 2 pi) and the roll in U(-pi, pi);
ring mode: draw 0 is the yaw jitter in U(-pi, pi) degrees) and its camera rows are computed on the
host (``view_cameras``) for both devices, since a device ``sin`` may differ from the host's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numba
import numpy as np

from fdsl.generators.kernels import counter
from fdsl.generators.kernels.fpround import add, mul

TAG_INSTANCE, TAG_VIEW = 2, 3
NUM_PARAMS = 12
MAX_MAPS = 7
CAMERA_DISTANCE = 4.0
Z_NEAR = 1.0
Z_FAR = 100.0
FOVY_DEGREES = 45.0
FOCAL = 1.0 / math.tan(math.radians(FOVY_DEGREES) / 2.0)  # Python's value, frozen into the kernels
RING_START = math.radians(30.0)
FRAME = 5  # lo, scale, mean x, mean y, mean z


@numba.njit(cache=True)
def scale_system(params, weights, n_maps, out):
    """out[:n_maps] = params[:n_maps] * weights: one variant's 12 parameters per map."""
    for j in range(n_maps):
        for p in range(NUM_PARAMS):
            out[j, p] = mul(params[j, p], weights[p])


@numba.njit(cache=True, inline="always")
def _choose(cumulative, n_maps, u):
    m = 0
    while m < n_maps - 1 and u > cumulative[m]:
        m += 1
    return m


@numba.njit(cache=True, inline="always")
def step(system, cumulative, n_maps, key, i, x, y, z):
    """Point i of the orbit from point i - 1 (x, y, z): ``A p + t`` of the map draw i picks."""
    m = _choose(cumulative, n_maps, counter.uniform(key, i))
    s = system[m]
    return (add(add(add(mul(s[0], x), mul(s[1], y)), mul(s[2], z)), s[9]),
            add(add(add(mul(s[3], x), mul(s[4], y)), mul(s[5], z)), s[10]),
            add(add(add(mul(s[6], x), mul(s[7], y)), mul(s[8], z)), s[11]))


@numba.njit(cache=True, inline="always")
def _unit(v, lo, scale):
    """A coordinate min-max normalised to [-1, 1]."""
    return mul(v - lo, scale) - 1.0


@numba.njit(cache=True)
def cloud_frame(system, cumulative, n_maps, key, points, frame):
    """Two orbit passes: frame float64 [5] = (lo, scale, mean x, mean y, mean z) of the cloud;
    False when it diverges (a coordinate not finite, or all equal)."""
    x = 0.0
    y = 0.0
    z = 0.0
    lo = np.inf
    hi = -np.inf
    for i in range(points):
        x, y, z = step(system, cumulative, n_maps, key, i, x, y, z)
        if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(z)):
            return False
        # x, y, z in turn: the CPU's ravel order, so ties of -0.0 and 0.0 resolve alike.
        lo = min(lo, x)
        hi = max(hi, x)
        lo = min(lo, y)
        hi = max(hi, y)
        lo = min(lo, z)
        hi = max(hi, z)
    if not hi > lo:
        return False
    scale = 2.0 / (hi - lo)
    x = 0.0
    y = 0.0
    z = 0.0
    sx = 0.0
    sy = 0.0
    sz = 0.0
    for i in range(points):
        x, y, z = step(system, cumulative, n_maps, key, i, x, y, z)
        sx = add(sx, _unit(x, lo, scale))
        sy = add(sy, _unit(y, lo, scale))
        sz = add(sz, _unit(z, lo, scale))
    frame[0] = lo
    frame[1] = scale
    frame[2] = sx / points
    frame[3] = sy / points
    frame[4] = sz / points
    return True


@numba.njit(cache=True, inline="always")
def pixel_of(x, y, z, cam, height, width):
    """Flat pixel index of a centred point seen by ``cam`` (rows: right and up pre-scaled by focal
    x half the side, back), -1 when clipped; floored window coordinates, row 0 at the top, depth
    clipped to [near, far] as OpenGL does."""
    depth = CAMERA_DISTANCE - add(add(mul(cam[2, 0], x), mul(cam[2, 1], y)), mul(cam[2, 2], z))
    inv = 1.0 / depth
    wx = add(mul(0.5, np.float64(width)), mul(add(add(mul(cam[0, 0], x), mul(cam[0, 1], y)), mul(cam[0, 2], z)), inv))
    wy = mul(0.5, np.float64(height)) - mul(add(add(mul(cam[1, 0], x), mul(cam[1, 1], y)), mul(cam[1, 2], z)), inv)
    if depth >= Z_NEAR and depth <= Z_FAR and wx >= 0.0 and wy >= 0.0 and wx < width and wy < height:
        return np.int64(np.int32(wy)) * width + np.int64(np.int32(wx))
    return np.int64(-1)


@numba.njit(cache=True)
def model_frame(label, variant, seed, points, params, cumulative, n_maps, table, system, frame):
    """Model (label, variant)'s system into ``system`` float64 [7, 12] and its cloud's frame into
    ``frame`` float64 [5]; returns (drawable, map count, stream key). Class tables: params float64
    [C, 7, 12], cumulative float64 [C, 7], n_maps int64 [C]; table float64 [rows, 12]."""
    n = n_maps[label]
    scale_system(params[label], table[variant], n, system)
    key = counter.key4(seed, TAG_INSTANCE, label, variant)
    return cloud_frame(system, cumulative[label], n, key, points, frame), n, key


@numba.njit(cache=True)
def model_valid(label, variant, seed, points, params, cumulative, n_maps, table, system, frame):
    """Whether model (label, variant)'s cloud is drawable (does not diverge)."""
    return model_frame(label, variant, seed, points, params, cumulative, n_maps, table, system, frame)[0]


@numba.njit(cache=True, inline="always")
def _centred(system, cum, n, key, i, x, y, z, frame):
    """Orbit point i (from point i - 1 = x, y, z) and its normalised, centred coordinates."""
    x, y, z = step(system, cum, n, key, i, x, y, z)
    lo = frame[0]
    scale = frame[1]
    return x, y, z, _unit(x, lo, scale) - frame[2], _unit(y, lo, scale) - frame[3], _unit(z, lo, scale) - frame[4]


@numba.njit(cache=True)
def render_view(label, variant, seed, points, params, cumulative, n_maps, table, cam, gl_rows,
                system, frame, img):
    """Project model (label, variant)'s cloud through ``cam`` float64 [3, 3] into ``img`` uint8
    [H, W] (zeroed by the caller), lit points 255, rows bottom first when ``gl_rows`` (the GPU's
    view: the orbit run again instead of stored). system float64 [7, 12] and frame float64 [5] are
    scratch. Returns False (and draws nothing) when the cloud diverges."""
    ok, n, key = model_frame(label, variant, seed, points, params, cumulative, n_maps, table, system, frame)
    if not ok:
        return False
    cum = cumulative[label]
    height, width = img.shape
    x = 0.0
    y = 0.0
    z = 0.0
    for i in range(points):
        x, y, z, cx, cy, cz = _centred(system, cum, n, key, i, x, y, z, frame)
        at = pixel_of(cx, cy, cz, cam, height, width)
        if at >= 0:
            row = at // width
            img[height - 1 - row if gl_rows else row, at % width] = 255
    return True


@numba.njit(cache=True)
def cloud_points(label, variant, seed, points, params, cumulative, n_maps, table, xs, ys, zs):
    """The CPU's model: the normalised, centred cloud into xs, ys, zs float64 [points]; False
    when it diverges. The same passes as ``render_view``."""
    system = np.empty((MAX_MAPS, NUM_PARAMS))
    frame = np.empty(FRAME)
    ok, n, key = model_frame(label, variant, seed, points, params, cumulative, n_maps, table, system, frame)
    if not ok:
        return False
    cum = cumulative[label]
    x = 0.0
    y = 0.0
    z = 0.0
    for i in range(points):
        x, y, z, xs[i], ys[i], zs[i] = _centred(system, cum, n, key, i, x, y, z, frame)
    return True


@numba.njit(cache=True, error_model="numpy")
def project_cloud(xs, ys, zs, cam, gl_rows, img, index):
    """The CPU's view: ``render_view``'s projection of a stored cloud into ``img`` uint8 [H, W]
    (index int64 [>= points] is scratch); returns the lit pixels."""
    height, width = img.shape
    # Indices first, in a loop without stores to the image, which LLVM vectorises.
    for i in range(xs.shape[0]):
        index[i] = pixel_of(xs[i], ys[i], zs[i], cam, height, width)
    for i in range(xs.shape[0]):
        at = index[i]
        if at >= 0:
            row = at // width
            img[height - 1 - row if gl_rows else row, at % width] = 255
    return np.count_nonzero(img)


# --------------------------------------------------------------------------- host only


@numba.njit(cache=True)
def view_angles(seed, label, variant, view, roll, ring, views):
    """(azimuth, elevation, roll) in radians of view ``view`` (of ``views``) of a model (host)."""
    key = counter.key5(seed, TAG_VIEW, label, variant, view)
    if ring:
        jitter = -math.pi + 2.0 * math.pi * counter.uniform(key, 0)
        yaw = view / views * math.pi * 2.0 + RING_START + math.radians(jitter)
        return yaw - math.pi / 2, 0.0, 0.0
    height = -1.0 + 2.0 * counter.uniform(key, 0)
    azimuth = 2.0 * math.pi * counter.uniform(key, 1)
    spin = -math.pi + 2.0 * math.pi * counter.uniform(key, 2)
    return azimuth, math.asin(height), spin if roll else 0.0


@numba.njit(cache=True)
def camera_axes(azimuth, elevation, roll, out):
    """out float64 [3, 3]: rows (right, up, back) of a camera on the +back side looking at the
    origin. Angles in radians; azimuth about +Y from +Z, elevation toward +Y (Y is up as in
    OpenGL), roll turns the image about the viewing axis; the camera sits at distance 4 on back."""
    ca, sa = math.cos(azimuth), math.sin(azimuth)
    ce, se = math.cos(elevation), math.sin(elevation)
    cr, sr = math.cos(roll), math.sin(roll)
    right = (ca, 0.0, -sa)
    up = (-se * sa, ce, -se * ca)
    for a in range(3):
        out[0, a] = cr * right[a] + sr * up[a]
        out[1, a] = -sr * right[a] + cr * up[a]
    out[2, 0] = ce * sa
    out[2, 1] = se
    out[2, 2] = ce * ca


@numba.njit(cache=True)
def scale_axes(cam, height, width):
    """Scale a camera's right and up rows by focal x half the image side (what ``pixel_of`` reads)."""
    sx = FOCAL * 0.5 * width
    sy = FOCAL * 0.5 * height
    for a in range(3):
        cam[0, a] = cam[0, a] * sx
        cam[1, a] = cam[1, a] * sy


@numba.njit(cache=True)
def camera_rows(azimuth, elevation, roll, height, width, out):
    """out float64 [3, 3]: ``camera_axes`` with right and up scaled for ``pixel_of`` (host)."""
    camera_axes(azimuth, elevation, roll, out)
    scale_axes(out, height, width)


@numba.njit(cache=True)
def view_cameras(seed, labels, variants, views_of, roll, ring, views, size, angles, cameras):
    """For image k (model labels[k], variants[k], view views_of[k]): its angles float64 [N, 3]
    and camera rows float64 [N, 3, 3] (host; both devices project with them)."""
    for k in range(labels.shape[0]):
        az, el, rl = view_angles(seed, labels[k], variants[k], views_of[k], roll, ring, views)
        angles[k, 0] = az
        angles[k, 1] = el
        angles[k, 2] = rl
        camera_rows(az, el, rl, size, size, cameras[k])


@numba.njit(cache=True)
def render_models(labels, variants, cameras, seed, points, params, cumulative, n_maps, table,
                  gl_rows, out, lit):
    """The CPU kernel: image k is model (labels[k], variants[k]) seen through cameras[k], into
    out uint8 [N, H, W] (zeroed here); lit int64 [N] gets its lit pixels, -1 when the model's cloud
    diverges. A model's cloud is built once for a run of items of the same model."""
    xs = np.empty(points)
    ys = np.empty(points)
    zs = np.empty(points)
    index = np.empty(points, np.int64)
    out[:] = 0
    ok = False
    for k in range(labels.shape[0]):
        if k == 0 or labels[k] != labels[k - 1] or variants[k] != variants[k - 1]:
            ok = cloud_points(labels[k], variants[k], seed, points, params, cumulative, n_maps,
                              table, xs, ys, zs)
        lit[k] = project_cloud(xs, ys, zs, cameras[k], gl_rows, out[k], index) if ok else -1


def substitute_plan(slot_ok: Sequence[bool], spares: Iterable[int],
                    valid: Callable[[int], bool]) -> dict[int, int | None]:
    """Slot -> the variant drawn instead, for the slots whose cloud diverges (``slot_ok`` False):
    the next unused spare row that ``valid`` accepts (None when none is left), slots in order;
    spares are judged only as far as needed (host)."""
    usable = (int(v) for v in spares if valid(int(v)))
    return {slot: next(usable, None) for slot, ok in enumerate(slot_ok) if not ok}


def class_tables(params: np.ndarray, probs: np.ndarray, num_maps: np.ndarray) -> tuple[np.ndarray, ...]:
    """(params, cumulative probabilities, num_maps int64) of every class as the kernels read them;
    a class's cumulative row is ``np.cumsum`` of its probabilities, as the official's ``cumsum``."""
    cumulative = np.zeros(probs.shape)
    for label, n in enumerate(num_maps):
        cumulative[label, :n] = np.cumsum(probs[label, :n])
    return np.ascontiguousarray(params, np.float64), cumulative, np.asarray(num_maps, np.int64)
