"""Feed-forward: gated (SwiGLU / GeGLU, gate and up fused in one matmul) or plain."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from famous.genai.config import Activation, FeedForwardConfig


def activation_fn(name: Activation):
    if name == "silu":
        return F.silu
    if name == "gelu_tanh":
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "gelu":
        return F.gelu
    if name == "relu":
        return F.relu
    raise ValueError(f"unknown activation {name!r}")


class FeedForward(nn.Module):
    """Gated: ``down(act(gate(x)) * up(x))`` with ``gate_up`` = [gate; up] stacked on the
    output dim (one matmul reads both). Plain: ``down(act(up(x)))``."""

    def __init__(self, hidden_size: int, cfg: FeedForwardConfig) -> None:
        super().__init__()
        self.gated = cfg.gated
        self.intermediate_size = cfg.intermediate_size
        width = 2 * cfg.intermediate_size if cfg.gated else cfg.intermediate_size
        self.gate_up = nn.Linear(hidden_size, width, bias=cfg.bias)
        self.down = nn.Linear(cfg.intermediate_size, hidden_size, bias=cfg.bias)
        self.act = activation_fn(cfg.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.gate_up(x)
        if self.gated:
            gate, up = h.split(self.intermediate_size, dim=-1)
            h = self.act(gate) * up
        else:
            h = self.act(h)
        return self.down(h)
