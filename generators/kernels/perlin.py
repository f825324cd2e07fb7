"""1-D gradient (Perlin) noise equal to the ``noise`` package's ``pnoise1``, for RCDB.

RCDB's official ``make_rcdb.py`` calls ``noise.pnoise1(u)`` (a C extension) with u ~ U(0, 1e4)
and the default arguments. That function is Ken Perlin's gradient noise in one dimension, written
here from the published algorithm (Perlin, "Improving Noise", SIGGRAPH 2002, and its reference
permutation table):

- the lattice cell of x is ``i = floor(x)``, wrapped with C's ``%`` by ``repeat`` and then to
  0..255, shifted by ``base``; the right neighbour wraps likewise from ``i + 1``;
- the permutation entry h of a lattice point gives the gradient ``(h & 7) + 1``, or ``-1`` when
  ``h & 8``; each end contributes gradient times the offset from it (t and t - 1);
- the two are blended with the quintic fade ``6t^5 - 15t^4 + 10t^3`` and scaled by 0.4;
- with ``octaves`` > 1 the octaves (x times lacunarity^k, repeat times lacunarity^k truncated,
  amplitude persistence^k) are summed and divided by the sum of the amplitudes.

The C code takes x, persistence and lacunarity as C ``float`` and computes in single precision,
so this does the same with float32 arithmetic (the rounding of x to float32 alone moves values by
up to 1e-3 for x near 1e4). Products go through ``fpround.mul`` / ``add`` so that the CUDA build
of the same code (RCDB's GPU kernel) rounds each of them as the CPU does. ``pnoise1_jit`` is the scalar Numba function for kernels;
``pnoise1`` the vectorised wrapper. No global state; zero at every integer.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from fdsl.generators.kernels.fpround import add, mul

# Ken Perlin's permutation of 0..255 (the reference implementation's table), doubled so that an
# index (i & 255) + base with base <= 256 never needs wrapping.
_PERLIN_TABLE = (
    151, 160, 137, 91, 90, 15, 131, 13, 201, 95, 96, 53, 194, 233, 7, 225, 140, 36, 103, 30, 69,
    142, 8, 99, 37, 240, 21, 10, 23, 190, 6, 148, 247, 120, 234, 75, 0, 26, 197, 62, 94, 252, 219,
    203, 117, 35, 11, 32, 57, 177, 33, 88, 237, 149, 56, 87, 174, 20, 125, 136, 171, 168, 68, 175,
    74, 165, 71, 134, 139, 48, 27, 166, 77, 146, 158, 231, 83, 111, 229, 122, 60, 211, 133, 230,
    220, 105, 92, 41, 55, 46, 245, 40, 244, 102, 143, 54, 65, 25, 63, 161, 1, 216, 80, 73, 209, 76,
    132, 187, 208, 89, 18, 169, 200, 196, 135, 130, 116, 188, 159, 86, 164, 100, 109, 198, 173,
    186, 3, 64, 52, 217, 226, 250, 124, 123, 5, 202, 38, 147, 118, 126, 255, 82, 85, 212, 207, 206,
    59, 227, 47, 16, 58, 17, 182, 189, 28, 42, 223, 183, 170, 213, 119, 248, 152, 2, 44, 154, 163,
    70, 221, 153, 101, 155, 167, 43, 172, 9, 129, 22, 39, 253, 19, 98, 108, 110, 79, 113, 224, 232,
    178, 185, 112, 104, 218, 246, 97, 228, 251, 34, 242, 193, 238, 210, 144, 12, 191, 179, 162, 241,
    81, 51, 145, 235, 249, 14, 239, 107, 49, 192, 214, 31, 181, 199, 106, 157, 184,
    84, 204, 176, 115, 121, 50, 45, 127, 4, 150, 254, 138, 236, 205, 93, 222, 114, 67, 29, 24, 72,
    243, 141, 128, 195, 78, 66, 215, 61, 156, 180,
)
PERM = np.array(_PERLIN_TABLE + _PERLIN_TABLE, dtype=np.int64)
MAX_BASE = 256

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)
_F6 = np.float32(6.0)
_F10 = np.float32(10.0)
_F15 = np.float32(15.0)
_SCALE = np.float32(0.4)


@numba.njit(cache=True, inline="always")
def _c_mod(a, b):
    """C's ``a % b`` for ints (the sign follows ``a``), unlike Python's."""
    r = abs(a) % abs(b)
    return -r if a < 0 else r


@numba.njit(cache=True, inline="always")
def _grad(h, t):
    g = np.float32(-1.0) if h & 8 else np.float32((h & 7) + 1)
    return mul(g, t)


@numba.njit(cache=True)
def _noise1(x, repeat, base):
    """One octave at float32 ``x``; float32."""
    # math.floor, not np.floor, which CUDA lacks (equal for |x| < 2**63; an int on the CPU, a
    # float on CUDA, hence the cast).
    lattice = np.int64(math.floor(x))
    cell = np.float32(lattice)
    i = _c_mod(lattice, repeat)
    ii = _c_mod(i + 1, repeat)
    i = (i & 255) + base
    ii = (ii & 255) + base
    t = np.float32(x - cell)
    fade = mul(mul(mul(t, t), t), add(mul(t, mul(t, _F6) - _F15), _F10))
    left = _grad(PERM[i], t)
    right = _grad(PERM[ii], np.float32(t - _F1))
    return mul(add(left, mul(fade, right - left)), _SCALE)


@numba.njit(cache=True)
def pnoise1_jit(x, octaves=1, persistence=0.5, lacunarity=2.0, repeat=1024, base=0):
    """``noise.pnoise1`` for one float ``x`` (Numba-callable; arguments as the package's, already
    checked: octaves >= 1, repeat >= 1, 0 <= base <= 256). Returns a float64."""
    xf = np.float32(x)
    if octaves == 1:
        return np.float64(_noise1(xf, repeat, base))
    pers = np.float32(persistence)
    lac = np.float32(lacunarity)
    freq = _F1
    amp = _F1
    top = _F0
    total = _F0
    for _ in range(octaves):
        octave_repeat = np.int64(np.float32(mul(np.float32(repeat), freq)))
        total = add(total, mul(_noise1(np.float32(mul(xf, freq)), octave_repeat, base), amp))
        top = add(top, amp)
        freq = mul(freq, lac)
        amp = mul(amp, pers)
    return np.float64(np.float32(total / top))


@numba.njit(cache=True)
def _pnoise1_array(xs, octaves, persistence, lacunarity, repeat, base, out):
    for k in range(xs.size):
        out[k] = pnoise1_jit(xs[k], octaves, persistence, lacunarity, repeat, base)


def _check(octaves: int, repeat: int, base: int) -> None:
    if octaves < 1:
        raise ValueError(f"octaves must be >= 1, got {octaves}")
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    if not 0 <= base <= MAX_BASE:
        raise ValueError(f"base must be in 0..{MAX_BASE}, got {base}")


def pnoise1(x: np.ndarray | float, octaves: int = 1, persistence: float = 0.5, lacunarity: float = 2.0,
            repeat: int = 1024, base: int = 0) -> np.ndarray | float:
    """``noise.pnoise1`` of every element of ``x`` (any shape); float64 of the same shape, or a
    float for a scalar. Equal to the C package's values (float32 arithmetic, widened).

    Values lie in about [-0.8, 0.8] for one octave and are 0 at every integer.
    """
    _check(octaves, repeat, base)
    arr = np.asarray(x, dtype=np.float64)
    flat = np.ascontiguousarray(arr).reshape(-1)
    out = np.empty(flat.shape, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        _pnoise1_array(flat, int(octaves), float(persistence), float(lacunarity), int(repeat), int(base), out)
    if arr.ndim == 0:
        return float(out[0])
    return out.reshape(arr.shape)
