"""Building blocks: norms, RoPE, attention with an external KV cache, feed-forward, the decoder.

Each block takes its config dataclass (``famous.genai.config``) and nothing else, so a
family is mostly a function from ``config.json`` to a ``ModelConfig``.
"""

from __future__ import annotations

from famous.genai.layers.attention import Attention
from famous.genai.layers.feed_forward import FeedForward
from famous.genai.layers.kv_cache import KVCache, cache_kinds, init_kv_cache
from famous.genai.layers.moe import MixtureOfExperts
from famous.genai.layers.norm import LayerNorm, RMSNorm, make_norm
from famous.genai.layers.rope import RotaryEmbedding, apply_rope
from famous.genai.layers.transformer import Block, DecoderModel

__all__ = [
    "Attention",
    "Block",
    "DecoderModel",
    "FeedForward",
    "KVCache",
    "LayerNorm",
    "MixtureOfExperts",
    "RMSNorm",
    "RotaryEmbedding",
    "apply_rope",
    "cache_kinds",
    "init_kv_cache",
    "make_norm",
]
