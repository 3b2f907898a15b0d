"""The external KV cache: a tuple of (k, v) buffers, one pair per layer.

Each buffer is ``[batch, num_key_value_heads, slots, head_dim]``, preallocated. A full layer
has ``max_seq_len`` slots and stores position ``p`` in slot ``p``. A sliding-window layer
whose window is shorter than ``max_seq_len`` has a ring of ``window`` slots and stores
``p`` in slot ``p % window``. The model takes the cache as an input and returns the updated
cache (functional, exportable); eager decoding may update the same buffers in place.
"""

from __future__ import annotations

import torch

from famous.genai.config import ModelConfig

KVCache = tuple[tuple[torch.Tensor, torch.Tensor], ...]


def cache_kinds(cfg: ModelConfig, max_seq_len: int) -> list[int | None]:
    """Per layer: the ring size, or None for a full (position-indexed) cache."""
    kinds: list[int | None] = []
    for block in cfg.blocks:
        w = block.attention.sliding_window
        kinds.append(w if w is not None and w < max_seq_len else None)
    return kinds


def init_kv_cache(
    cfg: ModelConfig,
    batch_size: int,
    max_seq_len: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> KVCache:
    layers = []
    for block, ring in zip(cfg.blocks, cache_kinds(cfg, max_seq_len), strict=True):
        a = block.attention
        slots = ring if ring is not None else max_seq_len
        shape = (batch_size, a.num_key_value_heads, slots, a.head_dim)
        layers.append(
            (
                torch.zeros(shape, dtype=dtype, device=device),
                torch.zeros(shape, dtype=dtype, device=device),
            )
        )
    return tuple(layers)


def cache_capacity(kv_cache: KVCache, kinds: list[int | None]) -> int:
    """The longest sequence the cache can hold (the slot count of a full layer)."""
    for (k, _), ring in zip(kv_cache, kinds, strict=True):
        if ring is None:
            return k.shape[2]
    return 1 << 62  # every layer is a ring: unbounded
