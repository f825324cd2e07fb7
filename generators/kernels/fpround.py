"""Floating-point multiply and add that are never fused into an FMA, on the CPU and on the GPU.

The kernels that the CPU and the GPU share (``fdsl.generators.kernels.*_image``, and the
arithmetic of ``ifs2d`` and ``perlin`` they call) write every product as ``mul(a, b)`` and every
sum of a product as ``add(a, b)``:

- in Python (and so in numba's CUDA simulator, where kernels run as Python) they are ``a * b`` and
  ``a + b``: IEEE float64/float32 operations, never fused;
- in CPU ``@njit`` code this module's overloads compile them to plain ``fmul``/``fadd``, which
  LLVM does not contract without fastmath, so the CPU kernels keep their bytes and their speed;
- in CUDA code ``fdsl.generators.cuda.rounding`` overloads them with libdevice's ``dmul_rn`` /
  ``dadd_rn`` (``fmul_rn`` / ``fadd_rn`` for float32). NVVM contracts a plain ``a * b + c`` into
  ``fma.rn`` even without fastmath (one rounding instead of two: other bits than the CPU's), and
  ptxas may fuse a plain ``mul.f64`` with a following add; the explicitly rounded forms are never
  fused. That registration needs numba-cuda, so it happens only when the CUDA kernels load.

Subtractions and divisions are left plain: nothing fuses with them once no bare product is left.
"""

from __future__ import annotations

from numba.extending import overload


def mul(a, b):
    """``a * b`` rounded once, never fused with a following add."""
    return a * b


def add(a, b):
    """``a + b`` rounded once, never fused with a preceding product."""
    return a + b


@overload(mul, target="cpu", inline="always")
def _mul_cpu(a, b):
    return lambda a, b: a * b


@overload(add, target="cpu", inline="always")
def _add_cpu(a, b):
    return lambda a, b: a + b
