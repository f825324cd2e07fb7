"""The built-in procedural mesh set: the nine classes of the viewpoint study, made of primitives.

Each class is a seeded family: ``build_model(name, index, seed)`` draws proportions, part counts,
optional parts and colours from ``np.random.default_rng([seed, PROCEDURAL_TAG, class, index])``,
so model ``index`` is the same whatever else is rendered. Axes follow ShapeNet v2: +Y up, the
object's front faces -Z (a chair's back is at +Z, a car drives towards -Z, a laptop screen faces
-Z). Sizes are in arbitrary units; the renderer normalises every model to the unit sphere.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable, Sequence

import numpy as np
import trimesh

from fdsl.errors import FdslError
from fdsl.render.renderer import MeshPart
from fdsl.render.shapenet import SYNSETS, ModelRef

PROCEDURAL_TAG = 0x5EED_3D
DEFAULT_MODELS_PER_CLASS = 100
MAX_MODELS_PER_CLASS = 1_000_000  # a model reference each is listed up front
CLASSES = ("bench", "bicycle", "camera", "car", "chair", "hat", "helmet", "laptop", "sofa")

Color = tuple[float, float, float, float]


# --------------------------------------------------------------------------- primitives


def _part(mesh: trimesh.Trimesh, color: Color, smooth: bool = False) -> MeshPart:
    normals = np.asarray(mesh.vertex_normals, np.float32) if smooth else None
    return MeshPart(np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int64),
                    color, normals)


def box(size, center, color: Color) -> MeshPart:
    """An axis-aligned box of extents ``size`` (x, y, z) centred at ``center``."""
    return _part(trimesh.creation.box(extents=size, transform=trimesh.transformations.translation_matrix(center)), color)


def tube(p0, p1, radius: float, color: Color, sections: int = 14) -> MeshPart:
    """A cylinder between points ``p0`` and ``p1``."""
    mesh = trimesh.creation.cylinder(radius=radius, segment=[p0, p1], sections=sections)
    return _part(mesh, color)


def ring(center, axis: str, major: float, minor: float, color: Color) -> MeshPart:
    """A torus centred at ``center`` whose hole points along ``axis`` ("x", "y" or "z")."""
    rotate = {"z": np.eye(4),
              "x": trimesh.transformations.rotation_matrix(math.pi / 2, [0, 1, 0]),
              "y": trimesh.transformations.rotation_matrix(math.pi / 2, [1, 0, 0])}[axis]
    transform = trimesh.transformations.translation_matrix(center) @ rotate
    return _part(trimesh.creation.torus(major, minor, 36, 12, transform=transform), color, smooth=True)


def sphere_patch(radius: float, keep: Callable[[np.ndarray], np.ndarray], color: Color,
                 center=(0.0, 0.0, 0.0), scale=(1.0, 1.0, 1.0), rows: int = 24, cols: int = 48) -> MeshPart:
    """A one-sided patch of a (scaled) sphere: the grid faces whose centre direction ``keep``
    accepts (``keep`` maps unit vectors float [n,3] to bool [n])."""
    theta = np.linspace(0.0, math.pi, rows + 1)
    phi = np.linspace(0.0, 2 * math.pi, cols + 1)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    unit = np.stack([np.sin(t) * np.sin(p), np.cos(t), -np.sin(t) * np.cos(p)], axis=-1).reshape(-1, 3)
    idx = np.arange((rows + 1) * (cols + 1)).reshape(rows + 1, cols + 1)
    a, b, c, d = (corner.ravel() for corner in (idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]))
    centres = (unit[a] + unit[b] + unit[c] + unit[d]) / 4  # whole grid cells, so edges stay clean
    kept = keep(centres / np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12))
    faces = np.concatenate([np.stack([a, c, b], -1)[kept], np.stack([b, c, d], -1)[kept]])
    vertices = unit * radius * np.asarray(scale) + np.asarray(center)
    return MeshPart(vertices.astype(np.float32), faces, color, unit.astype(np.float32))


def hull(points, color: Color) -> MeshPart:
    """The convex hull of ``points`` (e.g. a tapered car cabin)."""
    return _part(trimesh.convex.convex_hull(np.asarray(points, np.float64)), color)


def _color(rng: np.random.Generator, saturation=(0.35, 0.8), value=(0.45, 0.9)) -> Color:
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(*saturation), rng.uniform(*value))
    return (r, g, b, 1.0)


def _grey(level: float) -> Color:
    return (level, level, level, 1.0)


def _wood_or_metal(rng: np.random.Generator) -> Color:
    if rng.uniform() < 0.5:
        r, g, b = colorsys.hsv_to_rgb(rng.uniform(0.05, 0.11), rng.uniform(0.4, 0.7), rng.uniform(0.35, 0.75))
        return (r, g, b, 1.0)
    return _grey(rng.uniform(0.15, 0.6))


# --------------------------------------------------------------------------- the nine families


def _legs(rng, width, depth, height, color, square: bool, inset: float = 0.05) -> list[MeshPart]:
    thickness = rng.uniform(0.03, 0.06)
    parts = []
    for sx in (-1, 1):
        for sz in (-1, 1):
            x, z = sx * (width / 2 - inset), sz * (depth / 2 - inset)
            if square:
                parts.append(box([thickness, height, thickness], [x, height / 2, z], color))
            else:
                parts.append(tube([x, 0, z], [x, height, z], thickness / 2, color))
    return parts


def chair(rng: np.random.Generator) -> list[MeshPart]:
    width, depth = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.55)
    seat_h, seat_t = rng.uniform(0.4, 0.5), rng.uniform(0.04, 0.09)
    back_h = rng.uniform(0.35, 0.65)
    body, frame = _color(rng), _wood_or_metal(rng)
    parts = [box([width, seat_t, depth], [0, seat_h, 0], body)]
    back_z = depth / 2 - 0.03
    if rng.uniform() < 0.3:  # slatted back
        slats = int(rng.integers(3, 6))
        for k in range(slats):
            x = (k / (slats - 1) - 0.5) * width * 0.8
            parts.append(box([0.04, back_h, 0.03], [x, seat_h + back_h / 2, back_z], frame))
        parts.append(box([width, 0.07, 0.04], [0, seat_h + back_h, back_z], frame))
    else:
        parts.append(box([width, back_h, 0.05], [0, seat_h + back_h / 2 + seat_t / 2, back_z], body))
    if rng.uniform() < 0.3:  # office swivel base
        parts.append(tube([0, 0.08, 0], [0, seat_h, 0], 0.03, frame))
        for k in range(5):
            a = 2 * math.pi * k / 5
            parts.append(tube([0, 0.08, 0], [0.3 * math.sin(a), 0.03, 0.3 * math.cos(a)], 0.02, frame))
    else:
        parts += _legs(rng, width, depth, seat_h, frame, square=rng.uniform() < 0.5)
    if rng.uniform() < 0.35:  # armrests
        for sx in (-1, 1):
            parts.append(box([0.05, 0.04, depth * 0.9], [sx * width / 2, seat_h + 0.22, 0], frame))
            parts.append(box([0.04, 0.22, 0.04], [sx * width / 2, seat_h + 0.11, -depth * 0.3], frame))
    return parts


def sofa(rng: np.random.Generator) -> list[MeshPart]:
    seats = int(rng.integers(1, 4))
    width = seats * rng.uniform(0.55, 0.7)
    depth, base_h = rng.uniform(0.8, 1.0), rng.uniform(0.25, 0.35)
    back_h, arm_w, arm_h = rng.uniform(0.35, 0.55), rng.uniform(0.1, 0.22), rng.uniform(0.15, 0.3)
    fabric = _color(rng, saturation=(0.2, 0.6), value=(0.35, 0.8))
    cushion = tuple(min(1.0, c * 1.12) for c in fabric[:3]) + (1.0,)
    leg_h = rng.uniform(0.0, 0.12)
    parts = [box([width + 2 * arm_w, base_h, depth], [0, leg_h + base_h / 2, 0], fabric),
             box([width + 2 * arm_w, back_h, 0.2], [0, leg_h + base_h + back_h / 2, depth / 2 - 0.1], fabric)]
    for sx in (-1, 1):
        parts.append(box([arm_w, arm_h, depth], [sx * (width + arm_w) / 2, leg_h + base_h + arm_h / 2, 0], fabric))
    seat_w = width / seats
    for k in range(seats):
        x = -width / 2 + seat_w * (k + 0.5)
        parts.append(box([seat_w * 0.97, 0.1, depth - 0.22], [x, leg_h + base_h + 0.05, -0.1], cushion))
    if leg_h > 0.03:
        parts += _legs(rng, width + 2 * arm_w, depth, leg_h, _grey(0.15), square=True)
    return parts


def bench(rng: np.random.Generator) -> list[MeshPart]:
    length, depth = rng.uniform(1.2, 2.2), rng.uniform(0.35, 0.55)
    seat_h = rng.uniform(0.4, 0.5)
    wood, metal = _wood_or_metal(rng), _grey(rng.uniform(0.1, 0.4))
    parts = []
    slats = int(rng.integers(1, 5))
    for k in range(slats):
        z = (k + 0.5) / slats * depth - depth / 2
        parts.append(box([length, 0.05, depth / slats * 0.85], [0, seat_h, z], wood))
    supports = 2 if length < 1.7 else 3
    for k in range(supports):
        x = (k / (supports - 1) - 0.5) * (length - 0.15)
        if rng.uniform() < 0.5:  # side panel
            parts.append(box([0.06, seat_h, depth * 0.9], [x, seat_h / 2, 0], metal))
        else:
            for sz in (-1, 1):
                parts.append(box([0.06, seat_h, 0.06], [x, seat_h / 2, sz * depth * 0.4], metal))
    if rng.uniform() < 0.7:  # backrest
        back_h = rng.uniform(0.25, 0.45)
        for k in range(int(rng.integers(1, 4))):
            parts.append(box([length, 0.08, 0.04], [0, seat_h + 0.12 + k * back_h / 3, depth / 2 + 0.02], wood))
        for k in range(supports):
            x = (k / (supports - 1) - 0.5) * (length - 0.15)
            parts.append(box([0.05, back_h + 0.1, 0.05], [x, seat_h + back_h / 2, depth / 2 + 0.05], metal))
    return parts


def bicycle(rng: np.random.Generator) -> list[MeshPart]:
    r = rng.uniform(0.3, 0.36)
    base = rng.uniform(0.95, 1.15)
    tyre, frame = _grey(0.1), _color(rng, value=(0.5, 0.95))
    rear, front = np.array([0, r, base / 2]), np.array([0, r, -base / 2])
    bracket = np.array([0, r - 0.05, base / 2 - rng.uniform(0.38, 0.45)])
    seat = np.array([0, r + rng.uniform(0.5, 0.62), base / 2 - rng.uniform(0.22, 0.3)])
    head = np.array([0, r + rng.uniform(0.5, 0.6), -base / 2 + rng.uniform(0.12, 0.2)])
    t = rng.uniform(0.018, 0.03)
    parts = [ring(rear, "x", r, 0.025, tyre), ring(front, "x", r, 0.025, tyre),
             tube(rear, bracket, t, frame), tube(rear, seat, t, frame), tube(bracket, seat, t, frame),
             tube(bracket, head, t, frame), tube(seat + [0, -0.05, 0], head, t, frame),
             tube(head, front, t, frame),
             tube(seat, seat + [0, 0.1, 0.02], 0.015, _grey(0.6)),
             box([0.1, 0.04, 0.22], seat + [0, 0.12, 0.02], _grey(0.12)),
             tube(head, head + [0, 0.12, 0.03], 0.018, frame)]
    bar = head + [0, 0.12, 0.03]
    half = rng.uniform(0.2, 0.3)
    parts.append(tube(bar + [-half, 0, 0], bar + [half, 0, 0], 0.015, _grey(0.2)))
    spokes = int(rng.integers(0, 9))
    for hub in (rear, front):
        parts.append(tube(hub + [-0.04, 0, 0], hub + [0.04, 0, 0], 0.03, _grey(0.5)))
        for k in range(spokes):
            a = math.pi * k / max(1, spokes)
            d = np.array([0, math.sin(a), math.cos(a)]) * r
            parts.append(tube(hub - d, hub + d, 0.005, _grey(0.7), sections=6))
    if rng.uniform() < 0.3:  # basket
        parts.append(box([0.3, 0.18, 0.22], front + [0, 0.55, -0.12], _wood_or_metal(rng)))
    return parts


def camera(rng: np.random.Generator) -> list[MeshPart]:
    w, h, d = rng.uniform(0.9, 1.4), rng.uniform(0.6, 0.85), rng.uniform(0.35, 0.6)
    body, dark = _color(rng, saturation=(0.0, 0.35), value=(0.1, 0.85)), _grey(rng.uniform(0.05, 0.2))
    lens_r, lens_l = rng.uniform(0.18, 0.3), rng.uniform(0.1, 0.6)
    lens_x = rng.uniform(-0.1, 0.15) * w
    parts = [box([w, h, d], [0, h / 2, 0], body),
             tube([lens_x, h * 0.45, -d / 2], [lens_x, h * 0.45, -d / 2 - lens_l], lens_r, dark, sections=32),
             ring([lens_x, h * 0.45, -d / 2 - lens_l], "z", lens_r * 0.85, lens_r * 0.15, _grey(0.3))]
    if rng.uniform() < 0.6:  # SLR prism hump
        parts.append(box([w * 0.3, h * 0.25, d * 0.8], [lens_x, h * 1.1, 0], body))
    parts.append(tube([w * 0.3, h, 0], [w * 0.3, h + 0.06, 0], 0.05, _grey(0.6)))
    if rng.uniform() < 0.6:  # hand grip
        parts.append(box([w * 0.18, h * 0.9, d * 0.4], [-w * 0.42, h * 0.47, -d * 0.6], dark))
    if rng.uniform() < 0.4:  # flash
        parts.append(box([w * 0.2, h * 0.12, d * 0.2], [w * 0.3, h * 0.85, -d / 2 - 0.02], _grey(0.9)))
    return parts


def car(rng: np.random.Generator) -> list[MeshPart]:
    length, width = rng.uniform(3.6, 4.8), rng.uniform(1.6, 1.9)
    body_h, clearance = rng.uniform(0.5, 0.75), rng.uniform(0.15, 0.3)
    cabin_h = rng.uniform(0.45, 0.7)
    paint, glass, tyre = _color(rng, value=(0.4, 0.95)), (0.15, 0.2, 0.28, 1.0), _grey(0.08)
    wheel_r = rng.uniform(0.3, 0.38)
    top = clearance + body_h
    parts = [box([width, body_h, length], [0, clearance + body_h / 2, 0], paint)]
    cabin_front, cabin_back = -length * rng.uniform(0.05, 0.2), length * rng.uniform(0.25, 0.45)
    slope = rng.uniform(0.25, 0.55)
    half = width / 2 * 0.95
    roof_front = cabin_front + slope * cabin_h * 1.5
    roof_back = cabin_back - rng.uniform(0.1, 0.5) * cabin_h
    points = [[sx * half, top, cabin_front] for sx in (-1, 1)] + [[sx * half, top, cabin_back] for sx in (-1, 1)]
    points += [[sx * half * 0.9, top + cabin_h, z] for sx in (-1, 1) for z in (roof_front, roof_back)]
    parts.append(hull(points, glass))
    parts.append(box([width * 0.86, 0.04, roof_back - roof_front], [0, top + cabin_h + 0.01, (roof_front + roof_back) / 2], paint))
    axle = length / 2 - rng.uniform(0.6, 0.9)
    for sz in (-1, 1):
        for sx in (-1, 1):
            x, z = sx * (width / 2 - 0.1), sz * axle
            parts.append(tube([x - 0.12, wheel_r, z], [x + 0.12, wheel_r, z], wheel_r, tyre, sections=24))
    for sx in (-1, 1):  # headlights at the front (-Z)
        parts.append(box([0.3, 0.12, 0.04], [sx * width * 0.32, clearance + body_h * 0.7, -length / 2 - 0.01], _grey(0.95)))
    if rng.uniform() < 0.25:  # rear spoiler
        parts.append(box([width * 0.9, 0.04, 0.25], [0, top + 0.2, length / 2 - 0.15], paint))
    return parts


def laptop(rng: np.random.Generator) -> list[MeshPart]:
    w, d, t = rng.uniform(1.2, 1.5), rng.uniform(0.8, 1.0), rng.uniform(0.03, 0.06)
    shell = _color(rng, saturation=(0.0, 0.25), value=(0.2, 0.85))
    angle = math.radians(rng.uniform(95, 130))  # lid opening from the base
    parts = [box([w, t, d], [0, t / 2, 0], shell),
             box([w * 0.85, 0.006, d * 0.45], [0, t + 0.003, -d * 0.05 + d * 0.05], _grey(0.1)),
             box([w * 0.3, 0.006, d * 0.22], [0, t + 0.003, -d * 0.35], _grey(0.3))]
    hinge = np.array([0.0, t, d / 2])
    lid = trimesh.creation.box(extents=[w, d, t * 0.6], transform=trimesh.transformations.translation_matrix([0, d / 2, -t * 0.3]))
    screen = trimesh.creation.box(extents=[w * 0.9, d * 0.85, 0.004],
                                  transform=trimesh.transformations.translation_matrix([0, d / 2, -t * 0.6 - 0.002]))
    tilt = trimesh.transformations.rotation_matrix(angle - math.pi / 2, [1, 0, 0])
    place = trimesh.transformations.translation_matrix(hinge) @ tilt
    for mesh, color in ((lid, shell), (screen, (0.1, 0.15, 0.3, 1.0))):
        mesh.apply_transform(place)
        parts.append(_part(mesh, color))
    return parts


def helmet(rng: np.random.Generator) -> list[MeshPart]:
    scale = (rng.uniform(0.85, 0.95), rng.uniform(0.85, 1.0), rng.uniform(1.0, 1.2))
    shell = _color(rng, value=(0.5, 0.95))
    full_face = rng.uniform() < 0.45
    if full_face:  # motorbike: reaches the chin, with a face opening in front
        top, bottom = rng.uniform(0.15, 0.35), rng.uniform(-0.4, -0.25)

        def keep(u: np.ndarray) -> np.ndarray:
            opening = (u[:, 2] < -0.4) & (u[:, 1] < top) & (u[:, 1] > bottom) & (np.abs(u[:, 0]) < 0.65)
            return (u[:, 1] > -0.6) & ~opening
    else:  # bicycle / ski: a dome that stops around the ears
        rim = rng.uniform(-0.2, 0.05)

        def keep(u: np.ndarray) -> np.ndarray:
            return u[:, 1] > rim + 0.25 * np.clip(-u[:, 2], 0, 1)  # higher at the forehead

    parts = [sphere_patch(1.0, keep, shell, scale=scale),
             sphere_patch(0.95, keep, _grey(0.15), scale=scale)]  # inner liner
    if full_face and rng.uniform() < 0.7:  # tinted visor over the opening
        parts.append(sphere_patch(1.02, lambda u: (u[:, 2] < -0.35) & (u[:, 1] < top + 0.05) & (u[:, 1] > bottom * 0.3)
                                  & (np.abs(u[:, 0]) < 0.72), (0.08, 0.1, 0.14, 1.0), scale=scale))
    if not full_face:
        vents = int(rng.integers(0, 5))
        for k in range(vents):  # dark vent strips running front to back
            x = (k - (vents - 1) / 2) * 0.22
            parts.append(sphere_patch(1.01, lambda u, x=x: (np.abs(u[:, 0] - x) < 0.05) & (u[:, 1] > 0.35),
                                      _grey(0.1), scale=scale, rows=48, cols=96))
        if rng.uniform() < 0.5:  # peak over the forehead
            parts.append(_brim(0.25, 0.7, 0.1, shell, steps=16))
            parts[-1].vertices = (parts[-1].vertices * np.float32(0.95) + np.float32([0, rim + 0.3, 0])).astype(np.float32)
    return parts


def _brim(length: float, width: float, droop: float, color: Color, steps: int = 24) -> MeshPart:
    """A cap's front brim: a sheet from the front half of the unit circle out to an ellipse."""
    t = np.linspace(0.0, math.pi, steps + 1)
    inner = np.stack([np.cos(t), np.zeros_like(t), -np.sin(t)], axis=1)
    outer = np.stack([width * np.cos(t), -droop * np.sin(t), -np.sin(t) * (1 + length)], axis=1)
    vertices = np.concatenate([inner, outer])
    i, o = np.arange(steps), np.arange(steps) + steps + 1
    faces = np.concatenate([np.stack([i, o, i + 1], 1), np.stack([i + 1, o, o + 1], 1)])
    return MeshPart(vertices.astype(np.float32), faces, color)


def hat(rng: np.random.Generator) -> list[MeshPart]:
    cloth = _color(rng, saturation=(0.2, 0.85), value=(0.25, 0.9))
    if rng.uniform() < 0.6:  # baseball cap: dome + front brim (ShapeNet's "cap")
        dome = sphere_patch(1.0, lambda u: u[:, 1] > 0.0, cloth, scale=(1.0, rng.uniform(0.7, 1.0), 1.1))
        brim = _brim(rng.uniform(0.6, 0.9), rng.uniform(1.0, 1.15), rng.uniform(0.05, 0.25), cloth)
        button = sphere_patch(0.07, lambda u: np.ones(len(u), bool), cloth, center=(0, dome.vertices[:, 1].max(), 0))
        return [dome, brim, button]
    crown_h = rng.uniform(0.5, 1.3)  # fedora / top hat: crown + wide brim + band
    top_r, base_r = rng.uniform(0.55, 0.75), 0.75
    profile = np.array([[0.0, crown_h], [top_r, crown_h], [base_r, 0.0]])
    crown = trimesh.creation.revolve(profile, sections=48)
    crown.apply_transform(trimesh.transformations.rotation_matrix(-math.pi / 2, [1, 0, 0]))
    brim_r = rng.uniform(1.1, 1.6)
    brim = trimesh.creation.annulus(r_min=0.7, r_max=brim_r, height=0.03, sections=48)
    brim.apply_transform(trimesh.transformations.rotation_matrix(-math.pi / 2, [1, 0, 0]))
    band = trimesh.creation.cylinder(radius=base_r * 0.98, height=0.15, sections=48,
                                     transform=trimesh.transformations.rotation_matrix(-math.pi / 2, [1, 0, 0]))
    band.apply_translation([0, 0.1, 0])
    return [_part(crown, cloth), _part(brim, cloth), _part(band, _color(rng, value=(0.1, 0.4)))]


FAMILIES: dict[str, Callable[[np.random.Generator], list[MeshPart]]] = {
    "bench": bench, "bicycle": bicycle, "camera": camera, "car": car, "chair": chair, "hat": hat,
    "helmet": helmet, "laptop": laptop, "sofa": sofa}


def build_model(class_name: str, index: int, seed: int) -> list[MeshPart]:
    """Model ``index`` of ``class_name``'s family (un-normalised parts, +Y up, -Z front)."""
    if class_name not in FAMILIES:
        raise ValueError(f"no procedural family for class {class_name!r}; known: {', '.join(CLASSES)}")
    rng = np.random.default_rng([seed, PROCEDURAL_TAG, CLASSES.index(class_name), index])
    return FAMILIES[class_name](rng)


# --------------------------------------------------------------------------- model selection


def procedural_models(classes: Sequence[str], models_per_class: int) -> tuple[list[str], list[str], list[ModelRef]]:
    """(class names, synsets, model refs) of the built-in procedural set."""
    if not 0 < models_per_class <= MAX_MODELS_PER_CLASS:
        raise FdslError(f"--models-per-class must be between 1 and {MAX_MODELS_PER_CLASS} for the "
                        f"procedural set, got {models_per_class}")
    synset_to_name = {v: k for k, v in SYNSETS.items() if k in CLASSES}
    names = []
    for raw in classes:
        key = raw.strip().lower()
        key = {"cap": "hat"}.get(synset_to_name.get(key, key), synset_to_name.get(key, key))
        if key not in CLASSES:
            raise FdslError(f"unknown class {raw!r} for the procedural set; choose from "
                            f"{', '.join(CLASSES)} (or pass --shapenet-root)")
        if key in names:
            raise FdslError(f"class {key!r} is given twice in --classes")
        names.append(key)
    synsets = [SYNSETS[n] for n in names]
    refs = [ModelRef(label, synsets[label], f"{name}-{i:04d}", f"procedural:{name}:{i}")
            for label, name in enumerate(names) for i in range(models_per_class)]
    return names, synsets, refs
