"""Where the CUDA kernels' arrays live and how they launch: torch's CUDA memory and stream.

On a GPU every array is a torch CUDA tensor seen by numba through ``__cuda_array_interface__``
(no copy, ``sync=False``: everything runs on torch's current stream, wrapped with
``cuda.external_stream``, so generation queues behind the work already on that stream and the
training step queues behind it, with no device-wide synchronisation). Class tables are copied to
the device once; each batch copies only its item indices (and small per-image tables) there.

In numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) there is no CUDA torch: arrays are NumPy
arrays handed to the simulator and the images come back as a CPU tensor.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import cuda

from fdsl.generators.cuda import rounding
from fdsl.generators.cuda.kernels import THREADS

SIMULATED = rounding.SIMULATED


class DeviceArrays:
    """Allocates and copies on the device and launches on torch's current CUDA stream."""

    def __init__(self) -> None:
        import torch

        self._torch = torch
        if SIMULATED:
            self.stream = cuda.default_stream()
        else:
            self.stream = cuda.external_stream(torch.cuda.current_stream().cuda_stream)

    def refresh_stream(self) -> None:
        """Follow torch's current stream (it may change between batches)."""
        if not SIMULATED:
            self.stream = cuda.external_stream(self._torch.cuda.current_stream().cuda_stream)

    def table(self, array: np.ndarray) -> Any:
        """A device copy of ``array``, made once (class tables)."""
        array = np.ascontiguousarray(array)
        if SIMULATED:
            return cuda.to_device(array, stream=self.stream)
        tensor = self._torch.from_numpy(array).to("cuda")
        return _Held(tensor, cuda.as_cuda_array(tensor, sync=False))

    def upload(self, array: np.ndarray) -> Any:
        """A device copy of a batch's small input (item indices, cameras), queued on the stream:
        from pinned memory, so the host does not wait for the work already queued (a copy from
        pageable memory would), and torch keeps the pinned buffer until the copy is done."""
        array = np.ascontiguousarray(array)
        if SIMULATED:
            return cuda.to_device(array, stream=self.stream)
        tensor = self._torch.from_numpy(array).pin_memory().to("cuda", non_blocking=True)
        return _Held(tensor, cuda.as_cuda_array(tensor, sync=False))

    def output(self, shape: tuple[int, ...], fill: int) -> tuple[Any, Any]:
        """(handle, device view) of a uint8 array of ``shape`` filled with ``fill``."""
        if SIMULATED:
            host = np.full(shape, fill, np.uint8)
            return host, cuda.to_device(host, stream=self.stream)
        tensor = self._torch.full(shape, fill, dtype=self._torch.uint8, device="cuda")
        return tensor, cuda.as_cuda_array(tensor, sync=False)

    def result(self, handle: Any, view: Any) -> Any:
        """The images as a torch tensor: the CUDA tensor itself, or (simulator) a CPU copy."""
        if SIMULATED:
            return self._torch.from_numpy(view.copy_to_host(stream=self.stream))
        return handle

    def launch(self, kernel: Any, count: int, *args: Any) -> None:
        """``kernel`` over ``count`` threads (one per image) on the current stream."""
        if count:
            blocks = math.ceil(count / THREADS)
            kernel[blocks, THREADS, self.stream](*(_device(a) for a in args))


class _Held:
    """A numba view of a torch tensor that keeps the tensor (its memory) alive."""

    def __init__(self, tensor: Any, view: Any) -> None:
        self.tensor, self.view = tensor, view


def _device(arg: Any) -> Any:
    return arg.view if isinstance(arg, _Held) else arg
