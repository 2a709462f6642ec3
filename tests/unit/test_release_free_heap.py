"""`_core.release_free_heap`: the allocator's free memory inside its arenas goes back to the kernel (the recorder
calls it on a cadence so a long recording's RSS counts what it uses, not what glibc kept after frees)."""

from __future__ import annotations

import platform

import pytest

from fastmeter import _core
from fastmeter.meter import rss_bytes

BLOCK = 64 * 1024  # below glibc's mmap threshold: served from the heap, where a free leaves a hole


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_free_holes_in_the_heap_leave_rss() -> None:
    # Every other block stays alive, so the freed ones are holes the heap cannot shrink past.
    blocks = [bytearray(BLOCK) for _ in range(2000)]
    for b in blocks:
        b[::4096] = b"\x01" * len(b[::4096])  # resident
    holes = blocks[::2]
    del blocks[::2]
    freed = len(holes) * BLOCK
    del holes
    before = rss_bytes()
    assert _core.release_free_heap()
    after = rss_bytes()
    assert before - after >= freed * 0.8, (before, after, freed)
    assert all(b[0] == 1 for b in blocks)  # the live blocks are untouched
