"""RMSNorm (fp32 compute; plain or zero-centered) and LayerNorm."""

from __future__ import annotations

import torch
from torch import nn

from famous.genai.config import NormConfig


class RMSNorm(nn.Module):
    """Root-mean-square norm computed in fp32.

    Plain (Llama): the normalized value is cast back to the input dtype, then scaled by
    ``weight``. Zero-centered (Gemma): the weight stores ``w`` and the scale ``1 + w`` is
    applied in fp32 before the cast. The two orders round differently in bf16, so each
    variant follows its reference exactly.
    """

    def __init__(self, dim: int, eps: float = 1e-6, zero_centered: bool = False) -> None:
        super().__init__()
        self.eps = eps
        self.zero_centered = zero_centered
        self.weight = nn.Parameter(torch.zeros(dim) if zero_centered else torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.zero_centered:
            return (h * (1.0 + self.weight.float())).to(dtype)
        return self.weight * h.to(dtype)


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 and cast back (stable for bf16 activations)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        return nn.functional.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).to(
            x.dtype
        )


def make_norm(cfg: NormConfig, dim: int) -> nn.Module:
    if cfg.kind == "rms":
        return RMSNorm(dim, cfg.eps, cfg.zero_centered)
    return LayerNorm(dim, eps=cfg.eps, bias=cfg.bias)
