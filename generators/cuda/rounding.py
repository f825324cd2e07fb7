"""Whether the CUDA kernels run in numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``).

The rounding itself (libdevice's ``dmul_rn`` / ``dadd_rn`` on CUDA, plain ``fmul`` / ``fadd`` on
the CPU) is one definition in ``fdsl.generators.kernels.fpround`` whose code generation asks the
target it compiles for. In the simulator kernels run as Python and call the compiled CPU bodies,
so they round as the CPU does.
"""

from __future__ import annotations

import numba

SIMULATED = bool(numba.config.ENABLE_CUDASIM)
