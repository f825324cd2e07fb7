"""CUDA overloads of ``fdsl.generators.kernels.fpround``'s ``mul`` and ``add``: libdevice's
explicitly rounded ``dmul_rn`` / ``dadd_rn`` (``fmul_rn`` / ``fadd_rn`` for float32), which NVVM
never contracts into an FMA and ptxas never fuses, so the GPU rounds exactly as the CPU does.

Chosen when this module is imported, from ``numba.config.ENABLE_CUDASIM``: in numba's CUDA
simulator kernels run as Python, libdevice functions are stubs that return None, and ``mul`` /
``add`` run as the plain Python functions (IEEE, never fused), so nothing is registered there.
"""

from __future__ import annotations

import numba

from fdsl.generators.kernels.fpround import add, mul

SIMULATED = bool(numba.config.ENABLE_CUDASIM)

if not SIMULATED:
    from numba import types
    from numba.cuda import libdevice
    from numba.cuda.extending import overload

    def _both_float32(a, b) -> bool:
        return a == types.float32 and b == types.float32

    @overload(mul)
    def _mul_cuda(a, b):
        if _both_float32(a, b):
            return lambda a, b: libdevice.fmul_rn(a, b)
        return lambda a, b: libdevice.dmul_rn(a, b)

    @overload(add)
    def _add_cuda(a, b):
        if _both_float32(a, b):
            return lambda a, b: libdevice.fadd_rn(a, b)
        return lambda a, b: libdevice.dadd_rn(a, b)
