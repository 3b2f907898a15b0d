"""``with_composite_ops(model)``: route famous's model through the composite ops.

The layer files stay untouched. ``RMSNorm`` and ``Attention`` instances get a subclass
(``__class__`` swap: the same parameters, no copy) whose forward calls ``famous::rms_norm``
and ``famous::sdpa``, and whose KV-cache writes (``Attention._write_cache``) are
``famous::kv_cache_update``. Models without the transform keep the original code path.
"""

from __future__ import annotations

import torch
from torch import nn

from famous.genai.layers.attention import Attention
from famous.genai.layers.norm import RMSNorm
from famous.genai.ops import composite as ops


class CompositeRMSNorm(RMSNorm):
    """RMSNorm as one ``famous::rms_norm`` node."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.famous.rms_norm(x, self.weight, self.eps, self.zero_centered)


class CompositeAttention(Attention):
    """Attention whose SDPA is ``famous::sdpa`` and whose cache writes are
    ``famous::kv_cache_update`` (the projections, RoPE and ring logic are the layer's)."""

    def _write_cache(self, buf, index, value, inplace):
        if inplace:
            torch.ops.famous.kv_cache_update_(buf, index, value)
            return buf
        return torch.ops.famous.kv_cache_update(buf, index, value)

    def _attend(self, q, k, v, mask):
        return torch.ops.famous.sdpa(q, k, v, mask, float(self.scale), self.softcap)


_SWAPS: tuple[tuple[type[nn.Module], type[nn.Module]], ...] = (
    (RMSNorm, CompositeRMSNorm),
    (Attention, CompositeAttention),
)


def with_composite_ops(model: nn.Module) -> nn.Module:
    """Swap ``model``'s RMSNorm and Attention modules (in place) for their composite
    versions and return ``model``. Outputs are unchanged; ``torch.export`` then shows one
    ``famous.sdpa`` / ``famous.rms_norm`` / ``famous.kv_cache_update`` node per use."""
    for module in model.modules():
        for base, composite in _SWAPS:
            if type(module) is base:
                module.__class__ = composite
    return model


def without_composite_ops(model: nn.Module) -> nn.Module:
    """Undo ``with_composite_ops`` (in place)."""
    for module in model.modules():
        for base, composite in _SWAPS:
            if type(module) is composite:
                module.__class__ = base
    return model


def has_composite_ops(model: nn.Module) -> bool:
    return any(isinstance(m, CompositeRMSNorm | CompositeAttention) for m in model.modules())


__all__ = [
    "CompositeAttention",
    "CompositeRMSNorm",
    "has_composite_ops",
    "ops",
    "with_composite_ops",
    "without_composite_ops",
]
