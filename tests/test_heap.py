"""fdsl.datasets.builder._heap: freed part arrays are reused inside a shard task, and given back after."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from fdsl.datasets.builder import _heap

PART = 64 * 2**20  # above glibc's largest mmap threshold (32 MiB): mmap'd afresh by default


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]


def _mmapped_blocks():
    libc = _heap._glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        pytest.skip("needs glibc >= 2.33 (mallinfo2)")
    libc.mallinfo2.restype = MallInfo2
    return lambda: libc.mallinfo2().hblks


def test_parts_come_from_the_heap_inside_the_block_and_from_mmap_after() -> None:
    blocks = _mmapped_blocks()
    with _heap.reuse_freed_memory():
        before = blocks()
        first = np.empty(PART, np.uint8)
        first.fill(1)
        address = first.ctypes.data
        del first
        second = np.empty(PART, np.uint8)
        assert blocks() == before  # heap memory, not a fresh mmap that page-faults again
        assert second.ctypes.data == address  # the same pages as the freed part
        del second
    before = blocks()
    third = np.empty(PART, np.uint8)
    assert blocks() == before + 1  # glibc's default again once the task is over
    del third


def test_the_block_is_transparent_to_errors() -> None:
    with pytest.raises(KeyError), _heap.reuse_freed_memory():
        raise KeyError("x")
    with _heap.reuse_freed_memory():
        assert np.ones(10).sum() == 10
