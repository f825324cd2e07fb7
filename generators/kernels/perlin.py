"""1-D gradient (Perlin) noise in Numba: exact, deterministic, no global state.

The lattice scheme follows the one RCDB's official code gets from the ``noise`` package
(``pnoise1`` with one octave): a 256-entry permutation picks a gradient code ``h`` per lattice
point, the gradient is ``(h & 7) + 1`` or ``-1`` when ``h & 8``, the two gradient ramps are blended
with the quintic fade ``6t^5 - 15t^4 + 10t^3`` and the result is scaled by 0.4. Our permutation is
our own (a splitmix64-driven Fisher-Yates shuffle with a fixed key), so values differ from the
``noise`` package point by point but have the same distribution; which is what RCDB's contours
depend on. Properties: zero at every integer, continuous (C2) everywhere, periodic with period 256.
"""

from __future__ import annotations

import numba
import numpy as np

_MASK64 = (1 << 64) - 1
PERMUTATION_KEY = 0x5EED_F0D5_1CDB


def _splitmix64(state: int) -> tuple[int, int]:
    state = (state + 0x9E3779B97F4A7C15) & _MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return state, z ^ (z >> 31)


def make_permutation(key: int = PERMUTATION_KEY) -> np.ndarray:
    """A permutation of 0..255 fixed by ``key`` (independent of the NumPy version), doubled so that
    ``perm[i + 1]`` never needs wrapping. Returns int64 [512]."""
    perm = list(range(256))
    state = key
    for i in range(255, 0, -1):
        state, z = _splitmix64(state)
        j = z % (i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return np.array(perm + perm, dtype=np.int64)


PERM = make_permutation()


@numba.njit(cache=True, inline="always")
def _gradient(code: int, offset: float) -> float:
    slope = -1.0 if code & 8 else float((code & 7) + 1)
    return slope * offset


@numba.njit(cache=True)
def _noise1(x: float, perm: np.ndarray) -> float:
    cell = np.floor(x)
    t = x - cell
    i = int(cell) & 255
    fade = t * t * t * (t * (t * 6.0 - 15.0) + 10.0)
    left = _gradient(perm[i], t)
    right = _gradient(perm[i + 1], t - 1.0)
    return (left + fade * (right - left)) * 0.4


@numba.njit(cache=True)
def _noise1_array(xs: np.ndarray, perm: np.ndarray, out: np.ndarray) -> None:
    flat_in = xs.ravel()
    flat_out = out.ravel()
    for k in range(flat_in.size):
        flat_out[k] = _noise1(flat_in[k], perm)


def perlin1(xs: np.ndarray | float) -> np.ndarray:
    """1-D Perlin noise of ``xs`` (any shape, float64); returns float64 of the same shape.

    Roughly in [-1.2, 1.2] and mostly in [-0.4, 0.4] (as ``noise.pnoise1``); exactly 0 at integers.
    """
    arr = np.ascontiguousarray(xs, dtype=np.float64)
    out = np.empty_like(arr)
    _noise1_array(arr.reshape(-1), PERM, out.reshape(-1))
    return out


def perlin1_python(x: float, perm: np.ndarray = PERM) -> float:
    """The same noise in plain Python (for reference ports and tests)."""
    cell = float(np.floor(x))
    t = x - cell
    i = int(cell) & 255

    def grad(code: int, offset: float) -> float:
        return (-1.0 if code & 8 else float((code & 7) + 1)) * offset

    fade = t * t * t * (t * (t * 6.0 - 15.0) + 10.0)
    left, right = grad(int(perm[i]), t), grad(int(perm[i + 1]), t - 1.0)
    return (left + fade * (right - left)) * 0.4
