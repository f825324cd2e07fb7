"""splitmix64, the one 64-bit mixer behind fdsl's counter-based random streams.

``mix64`` is splitmix64's finaliser; ``stream_key`` folds (seed, tag, ids...) into the 64-bit key
of an independent stream. The Numba kernels (``fdsl.generators.kernels.ifs2d``) apply the same
finaliser to ``key + (i + 1) * GOLDEN`` with these constants, so point ``i`` of a stream never
depends on the points drawn before it.
"""

from __future__ import annotations

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
MUL1 = 0xBF58476D1CE4E5B9
MUL2 = 0x94D049BB133111EB


def mix64(z: int) -> int:
    """splitmix64's finaliser on a Python int (wrapping at 64 bits)."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * MUL1) & MASK64
    z = ((z ^ (z >> 27)) * MUL2) & MASK64
    return z ^ (z >> 31)


def stream_key(seed: int, tag: int, *ids: int) -> int:
    """64-bit key of the random stream for ``(seed, tag, *ids)`` (e.g. class, variant, render)."""
    key = 0
    for value in (seed, tag, *ids):
        key = mix64((key ^ (value & MASK64)) + GOLDEN)
    return key
