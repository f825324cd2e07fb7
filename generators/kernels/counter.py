"""Counter-based random streams shared by the CPU and the GPU kernels (splitmix64).

A stream is a 64-bit key folded from (seed, tag, ids...) exactly as
``fdsl.generators.seeding.stream_key`` folds it; draw ``i`` of stream ``key`` is splitmix64's
finaliser of ``key + (i + 1) * GOLDEN``. A draw therefore depends only on (key, i): a GPU thread
computes any draw of its image without the draws before it, and the CPU and the GPU compute the
same bits. Every function here is ``@njit`` and uses only 64-bit integer arithmetic, so the same
code compiles for the CPU and for CUDA.

Values from a draw ``h``:

- ``uniform``: ``(h >> 11) * 2**-53``, a float64 in [0, 1) (NumPy's ``random()`` recipe);
- ``below(n)``: ``((h >> 32) * n) >> 32``, an integer in [0, n) for 1 <= n < 2**32 (Lemire's
  multiply-shift on the top 32 bits; its bias is below n / 2**32);
- ``byte``: ``h >> 56``, an integer in [0, 256).
"""

from __future__ import annotations

import numba
import numpy as np

from fdsl.generators.kernels.fpround import mul
from fdsl.generators.seeding import GOLDEN, MUL1, MUL2

# Every operand uint64: Numba turns uint64 mixed with a plain int into float64.
_G, _M1, _M2, _ONE, _ZERO = (np.uint64(v) for v in (GOLDEN, MUL1, MUL2, 1, 0))
_S11, _S27, _S30, _S31, _S32, _S56 = (np.uint64(v) for v in (11, 27, 30, 31, 32, 56))  # shifts
_INV53 = 1.0 / 9007199254740992.0  # 2**-53


@numba.njit(cache=True, inline="always")
def mix64(z):
    """splitmix64's finaliser of the uint64 ``z``."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@numba.njit(cache=True, inline="always")
def draw(key, i):
    """Draw ``i`` (a non-negative integer) of stream ``key`` (uint64): a uint64."""
    return mix64(key + (np.uint64(i) + _ONE) * _G)


@numba.njit(cache=True, inline="always")
def fold(key, value):
    """One step of ``seeding.stream_key``: the key after folding in the id ``value`` (>= 0)."""
    return mix64((key ^ np.uint64(value)) + _G)


@numba.njit(cache=True)
def key3(seed, tag, a):
    """``seeding.stream_key(seed, tag, a)``."""
    return fold(fold(fold(_ZERO, seed), tag), a)


@numba.njit(cache=True)
def key4(seed, tag, a, b):
    """``seeding.stream_key(seed, tag, a, b)``."""
    return fold(key3(seed, tag, a), b)


@numba.njit(cache=True)
def key5(seed, tag, a, b, c):
    """``seeding.stream_key(seed, tag, a, b, c)``."""
    return fold(key4(seed, tag, a, b), c)


@numba.njit(cache=True, inline="always")
def uniform(key, i):
    """Draw ``i`` of ``key`` as a float64 in [0, 1)."""
    return mul(np.float64(draw(key, i) >> _S11), _INV53)


@numba.njit(cache=True, inline="always")
def below(key, i, n):
    """Draw ``i`` of ``key`` as an int64 in [0, n), 1 <= n < 2**32."""
    return np.int64(((draw(key, i) >> _S32) * np.uint64(n)) >> _S32)


@numba.njit(cache=True, inline="always")
def byte(key, i):
    """Draw ``i`` of ``key`` as an int64 in [0, 256)."""
    return np.int64(draw(key, i) >> _S56)


@numba.njit(cache=True)
def uniforms(key, count, out):
    """``out[:count]`` = draws 0..count-1 of ``key`` as uniforms (float64 [>= count])."""
    for i in range(count):
        out[i] = uniform(key, i)
