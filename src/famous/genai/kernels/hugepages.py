"""Decoding weights moved into transparent huge pages (Linux).

Decoding streams every weight once per token. With 4 KiB pages the CPU's prefetchers stop
at every page boundary and the TLB misses every 4 KiB; an anonymous mapping advised
``MADV_HUGEPAGE`` is backed by 2 MiB pages, and the GEMVs stream about 10 % faster
(measured here with the same kernel on both kinds of memory). Each group of weights (a
block's projections, the embedding) gets one mapping, so the memory goes back as soon as
the group's weights are dropped; only whole 2 MiB pages inside a mapping are advised, so
nothing is wasted on partly used huge pages. Where the platform has no THP, nothing moves.
"""

from __future__ import annotations

import ctypes
import mmap
import weakref
from collections.abc import Sequence

import torch

HUGE_PAGE = 2 << 20
_ALIGN = 64  # every tensor starts on a cache line
_moved: set[int] = set()  # ids of live parameters already in huge pages (tensors' == is
# element-wise, so a WeakSet cannot hold them)


def available() -> bool:
    return hasattr(mmap, "MADV_HUGEPAGE")


def _aligned(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def move_to_huge_pages(groups: Sequence[Sequence[torch.nn.Parameter]]) -> int:
    """Copy each group of parameters into one huge-page mapping (``param.data`` is swapped,
    so every module keeps using its own parameter). Groups under 2 MiB stay where they are.
    Returns the bytes moved."""
    if not available():
        return 0
    moved = 0
    for group in groups:
        todo = list({id(p): p for p in group if id(p) not in _moved}.values())
        sizes = [_aligned(p.numel() * p.element_size()) for p in todo]
        total = sum(sizes)
        if total < HUGE_PAGE:
            continue
        # private: shared anonymous memory is shmem, which THP does not back by default
        buf = mmap.mmap(-1, total + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        view = ctypes.c_char.from_buffer(buf)
        start = -ctypes.addressof(view) % HUGE_PAGE
        del view  # release the buffer export
        buf.madvise(mmap.MADV_HUGEPAGE, start, total // HUGE_PAGE * HUGE_PAGE)
        offset = start
        with torch.no_grad():
            for p, size in zip(todo, sizes, strict=True):
                t = torch.frombuffer(buf, dtype=p.dtype, count=p.numel(), offset=offset)
                t = t.view(p.shape)
                t.copy_(p.data)
                p.data = t  # the tensor keeps the mapping alive
                _moved.add(id(p))
                weakref.finalize(p, _moved.discard, id(p))
                offset += size
        moved += total
    return moved
