"""numba-cuda kernels of the four generators and their launch on torch's CUDA stream.

Importing this package imports numba-cuda (``pip install 'fdsl[gpu]'``); ``fdsl.generators.device``
imports it only for ``device="cuda"`` (and asks numba whether a device is there), nothing else in
``fdsl.generators`` does. ``rounding`` says whether kernels run in numba's simulator (the
shared kernels' ``mul`` / ``add`` round as libdevice on CUDA by themselves: ``kernels.fpround``);
``kernels`` holds one ``@cuda.jit`` kernel per generator (one thread per image,
the per-image bodies shared with the CPU); ``launch`` runs them into torch tensors.
"""
