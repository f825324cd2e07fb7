"""The CUDA kernels compile for an H100 (sm_90) and round as the CPU kernels do; the
counter-based streams they share with the CPU are seeding's streams.

Compiling to PTX needs no GPU, only numba-cuda and the NVVM/NVRTC pip packages (the ``test``
extra). NVVM contracts ``a * b + c`` into ``fma.rn`` even without fastmath, and ptxas may fuse a
bare ``mul.f64`` with a following add: either rounds once where the CPU rounds twice. So no
kernel may hold an ``fma`` nor a float product without an explicit rounding mode (``mul.rn``):
with no bare product left, no add or subtraction has anything to fuse with.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types
from unittest import mock

import numpy as np
import pytest

from fdsl.generators.kernels import counter, ifs3d_image, rcdb_image
from fdsl.generators.seeding import stream_key

SM_90 = (9, 0)


def compile_ptx(kernel, signature: str) -> str:
    """PTX of ``kernel`` for sm_90. numba-cuda asks the current device for the compute
    capability of the device functions a kernel calls; with no GPU here it is told sm_90."""
    from numba import cuda
    from numba.cuda import dispatcher

    fake = types.SimpleNamespace(compute_capability=SM_90)
    with mock.patch.object(dispatcher, "get_current_device", lambda: fake):
        ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=SM_90)
    return ptx


def float_ops(ptx: str) -> set[str]:
    return set(re.findall(r"\b(?:fma|mul|add|sub|div)\.[a-z.]*f(?:32|64)\b", ptx))


def _kernels():
    from fdsl.generators.cuda.kernels import SIGNATURES

    return SIGNATURES


@pytest.mark.parametrize("name", ["fractaldb", "exfractaldb", "exfractaldb_valid", "rcdb", "linedb"])
def test_kernel_compiles_for_sm90_without_fused_or_unrounded_products(name):
    kernel, signature = _kernels()[name]
    ptx = compile_ptx(kernel, signature)
    assert ".target sm_90" in ptx
    ops = float_ops(ptx)
    assert not {op for op in ops if op.startswith("fma")}, ops
    assert not {op for op in ops if op.startswith("mul.") and ".rn." not in op}, ops
    if name != "linedb":  # LineDB is integer-only; the others must have their products rounded
        assert "mul.rn.f64" in ops


def test_the_checks_see_a_plain_multiply_add():
    """A plain ``x * a + b`` does compile to an FMA: the test above is not blind to it."""
    from numba import cuda

    def plain(out, x):
        out[0] = x[0] * x[1] + x[2]

    ptx, _ = cuda.compile_ptx(plain, "void(float64[::1], float64[::1])", cc=SM_90)
    assert any(op.startswith("fma.rn.f64") for op in float_ops(ptx))


def test_local_array_sizes_match_the_bodies():
    from fdsl.generators.cuda import kernels

    assert kernels.SYSTEM_SHAPE == (ifs3d_image.MAX_MAPS, ifs3d_image.NUM_PARAMS)
    assert kernels.FRAME == ifs3d_image.FRAME
    assert kernels.MAX_VERTICES == rcdb_image.MAX_VERTICES


def test_stream_keys_and_draws_are_seedings():
    assert int(counter.key3(np.uint64(7), 3, 2)) == stream_key(7, 3, 2)
    assert int(counter.key4(np.uint64(2**40 + 3), 2, 5, 9)) == stream_key(2**40 + 3, 2, 5, 9)
    assert int(counter.key5(np.uint64(0), 4, 1, 24, 9)) == stream_key(0, 4, 1, 24, 9)
    # draw i = splitmix64's finaliser of key + (i + 1) * golden (worked out for key 0, i 0:
    # the finaliser of the golden ratio constant)
    assert int(counter.draw(np.uint64(0), 0)) == 0xE220A8397B1DCDAF
    key = counter.key4(np.uint64(1), 2, 3, 4)
    draws = np.array([int(counter.draw(key, i)) for i in range(2000)], dtype=np.uint64)
    assert counter.uniform(key, 5) == float(draws[5] >> np.uint64(11)) * 2.0**-53
    assert counter.below(key, 6, 101) == (int(draws[6]) >> 32) * 101 >> 32
    assert counter.byte(key, 7) == int(draws[7]) >> 56
    values = [counter.below(key, i, 10) for i in range(2000)]
    assert sorted(set(values)) == list(range(10))


def test_a_cold_cpu_compile_first_does_not_change_the_cuda_rounding(tmp_path):
    """With an empty Numba cache, a CPU compilation of the shared bodies in the same process comes
    before the CUDA one (as in a full test run on a fresh clone). The CUDA kernels must still get
    libdevice's rounded products: two per-target overloads of one function once let numba-cuda
    pick the CPU form there."""
    code = (
        "import re, types\n"
        "from unittest import mock\n"
        "import numpy as np\n"
        "from numba import cuda\n"
        "from numba.cuda import dispatcher\n"
        "from fdsl.generators.kernels import perlin\n"
        "perlin.pnoise1(np.linspace(0.0, 9.0, 7))\n"  # CPU compile first, cold cache
        "from fdsl.generators.cuda.kernels import SIGNATURES\n"
        "kernel, signature = SIGNATURES['rcdb']\n"
        "fake = types.SimpleNamespace(compute_capability=(9, 0))\n"
        "with mock.patch.object(dispatcher, 'get_current_device', lambda: fake):\n"
        "    ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=(9, 0))\n"
        "ops = set(re.findall(r'\\b(?:fma|mul)\\.[a-z.]*f(?:32|64)\\b', ptx))\n"
        "assert 'mul.rn.f64' in ops and not any(o.startswith('fma') for o in ops), ops\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=600)  # a hang guard only
    assert proc.returncode == 0, proc.stderr[-3000:]
