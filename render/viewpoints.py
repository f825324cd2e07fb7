"""Camera viewpoints around a model normalised to the unit sphere (+Y up, -Z front).

Angles: azimuth 0 is the front view (camera on the -Z axis looking towards +Z), azimuth grows
towards +X; elevation is the angle above the XZ plane. Poses are camera-to-world matrices in
OpenGL axes (the camera looks down its -Z, +Y up), as pyrender expects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

VIEWPOINTS = ("fibonacci", "grid")
GRID_ELEVATION_RANGE = (-30.0, 60.0)  # degrees; views from far below a model are rarely useful


@dataclass
class Views:
    """n camera views: poses float64 [n,4,4]; azimuth, elevation (degrees) and distance float64 [n]."""

    poses: np.ndarray
    azimuth: np.ndarray
    elevation: np.ndarray
    distance: np.ndarray


def camera_distance(yfov: float, margin: float = 1.05) -> float:
    """Distance at which the unit sphere fits the view cone of vertical field of view ``yfov``
    (radians), with ``margin`` > 1 leaving a thin border."""
    return margin / math.sin(yfov / 2)


def fibonacci_directions(n: int) -> np.ndarray:
    """n nearly uniform unit vectors float64 [n,3] (the Fibonacci / golden-angle spiral)."""
    k = np.arange(n, dtype=np.float64) + 0.5
    y = 1.0 - 2.0 * k / n
    radius = np.sqrt(np.clip(1.0 - y * y, 0.0, 1.0))
    theta = math.pi * (3.0 - math.sqrt(5.0)) * k
    return np.stack([radius * np.cos(theta), y, radius * np.sin(theta)], axis=1)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation matrix float64 [3,3] (QR of a Gaussian matrix, sign-fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def grid_directions(n: int) -> np.ndarray:
    """An azimuth x elevation grid of n unit vectors float64 [n,3], rows = elevations.

    The number of elevation rings is the largest divisor of n not above sqrt(n / 2) (100 views:
    5 rings of 20 azimuths), ring centres evenly spread over GRID_ELEVATION_RANGE.
    """
    rings = max(d for d in range(1, max(1, int(math.sqrt(n / 2))) + 1) if n % d == 0)
    per_ring = n // rings
    low, high = GRID_ELEVATION_RANGE
    elevations = np.radians(low + (np.arange(rings) + 0.5) * (high - low) / rings)
    azimuths = np.radians(np.arange(per_ring) * 360.0 / per_ring)
    el, az = np.meshgrid(elevations, azimuths, indexing="ij")
    return _direction(az.ravel(), el.ravel())


def _direction(azimuth: np.ndarray, elevation: np.ndarray) -> np.ndarray:
    """Unit vectors from the origin towards cameras at (azimuth, elevation) radians."""
    return np.stack([np.cos(elevation) * np.sin(azimuth), np.sin(elevation),
                     -np.cos(elevation) * np.cos(azimuth)], axis=1)


def look_at(eye: np.ndarray, target: np.ndarray | None = None) -> np.ndarray:
    """Camera-to-world pose float64 [4,4] of a camera at ``eye`` looking at ``target`` with +Y up
    (near the poles, where +Y is degenerate, the up vector falls back to -Z, the model's front)."""
    target = np.zeros(3) if target is None else target
    back = eye - target
    back = back / np.linalg.norm(back)
    up = np.array([0.0, 1.0, 0.0]) if abs(back[1]) < 0.999 else np.array([0.0, 0.0, -1.0])
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, np.cross(back, right), back, eye
    return pose


def look_at_origin(eyes: np.ndarray) -> np.ndarray:
    """``look_at`` for many cameras at once: eyes float [n,3] -> poses float64 [n,4,4]."""
    back = eyes / np.linalg.norm(eyes, axis=1, keepdims=True)
    polar = np.abs(back[:, 1]) >= 0.999
    up = np.where(polar[:, None], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0])
    right = np.cross(up, back)
    right /= np.linalg.norm(right, axis=1, keepdims=True)
    poses = np.tile(np.eye(4), (len(eyes), 1, 1))
    poses[:, :3, 0], poses[:, :3, 1], poses[:, :3, 2] = right, np.cross(back, right), back
    poses[:, :3, 3] = eyes
    return poses


def make_views(kind: str, n: int, distance: float, rng: np.random.Generator | None = None) -> Views:
    """n views of ``kind`` (fibonacci: randomly rotated by ``rng`` when given; grid: fixed)."""
    if kind == "fibonacci":
        directions = fibonacci_directions(n)
        if rng is not None:
            directions = directions @ random_rotation(rng).T
    elif kind == "grid":
        directions = grid_directions(n)
    else:
        raise ValueError(f"unknown viewpoints {kind!r}; choose one of {', '.join(VIEWPOINTS)}")
    poses = look_at_origin(directions * distance)
    elevation = np.degrees(np.arcsin(np.clip(directions[:, 1], -1.0, 1.0)))
    azimuth = np.degrees(np.arctan2(directions[:, 0], -directions[:, 2])) % 360.0
    return Views(poses, azimuth, elevation, np.full(n, distance))
