"""Floating-point multiply and add that are never fused into an FMA, on the CPU and on the GPU.

The kernels that the CPU and the GPU share (``fdsl.generators.kernels.*_image``, and the
arithmetic of ``ifs2d`` and ``perlin`` they call) write every product as ``mul(a, b)`` and every
sum of a product as ``add(a, b)``. Both are Numba intrinsics with one definition for every
target, whose code generation asks which target it compiles for:

- on the CPU (``@njit``, and so in numba's CUDA simulator, whose kernels call the compiled CPU
  bodies) a plain ``fmul`` / ``fadd``, which LLVM does not contract without fastmath, so the CPU
  kernels keep their bytes and their speed;
- on CUDA libdevice's ``__nv_dmul_rn`` / ``__nv_dadd_rn`` (``__nv_fmul_rn`` / ``__nv_fadd_rn``
  when both operands are float32). NVVM contracts a plain ``a * b + c`` into ``fma.rn`` even
  without fastmath (one rounding instead of two: other bits than the CPU's), and ptxas may fuse a
  plain ``mul.f64`` with a following add; the explicitly rounded forms are never fused.

Why intrinsics and not one ``@overload`` per target: numba-cuda reads numba's registry of globals
without looking at an overload's target, so once a CPU compilation had typed ``mul`` (a cold
Numba cache) a CUDA compilation could pick the CPU form. One definition cannot be picked wrongly.

Operands: two float32 give float32; otherwise both are converted to float64 (as NumPy promotes
float32 with float64 or an integer). Subtractions and divisions are left plain: nothing fuses
with them once no bare product is left. Not callable from plain Python.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

# The libdevice functions: operation -> (float64, float32) names.
_LIBDEVICE = {"mul": ("__nv_dmul_rn", "__nv_fmul_rn"), "add": ("__nv_dadd_rn", "__nv_fadd_rn")}


def _result_type(a, b):
    """float32 for two float32 operands, float64 when either is a float; None otherwise."""
    if a == types.float32 and b == types.float32:
        return types.float32
    if isinstance(a, (types.Float, types.Integer)) and isinstance(b, (types.Float, types.Integer)) \
            and (isinstance(a, types.Float) or isinstance(b, types.Float)):
        return types.float64
    return None


def _is_cuda(context) -> bool:
    return "cuda" in type(context).__module__


def _codegen(operation: str, result):
    def codegen(context, builder, signature, args):
        x, y = (context.cast(builder, v, t, result) for v, t in zip(args, signature.args, strict=True))
        if _is_cuda(context):
            name = _LIBDEVICE[operation][result == types.float32]
            value = context.get_value_type(result)
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(value, [value, value]), name)
            return builder.call(fn, [x, y])
        return builder.fmul(x, y) if operation == "mul" else builder.fadd(x, y)

    return codegen


@intrinsic
def mul(typingctx, a, b):
    """``a * b`` rounded once, never fused with a following add."""
    result = _result_type(a, b)
    return None if result is None else (result(a, b), _codegen("mul", result))


@intrinsic
def add(typingctx, a, b):
    """``a + b`` rounded once, never fused with a preceding product."""
    result = _result_type(a, b)
    return None if result is None else (result(a, b), _codegen("add", result))
