"""Composite-op boundaries: SDPA, RMSNorm and the KV-cache update as ``torch.library``
custom ops (``famous::sdpa``, ``famous::rms_norm``, ``famous::kv_cache_update``) that stay
single nodes through ``torch.export``, and ``with_composite_ops(model)`` that routes a
famous model through them.

Importing this package imports torch and registers the ops.
"""

from __future__ import annotations

from famous.genai.ops.composite import (
    composite_ops,
    decompositions,
    kv_cache_update,
    rms_norm,
    sdpa,
)
from famous.genai.ops.transform import (
    CompositeAttention,
    CompositeRMSNorm,
    has_composite_ops,
    with_composite_ops,
    without_composite_ops,
)

__all__ = [
    "CompositeAttention",
    "CompositeRMSNorm",
    "composite_ops",
    "decompositions",
    "has_composite_ops",
    "kv_cache_update",
    "rms_norm",
    "sdpa",
    "with_composite_ops",
    "without_composite_ops",
]
