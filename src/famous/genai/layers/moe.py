"""Mixture of experts: a router, top-k selection, experts stored stacked, optional shared expert.

Options: router and expert biases, gpt-oss's clamped SwiGLU.

Expert weights are two stacked tensors, ``gate_up`` [num_experts, 2 · intermediate, hidden]
([gate; up] on dim 1, as ``FeedForward.gate_up``) and ``down`` [num_experts, hidden,
intermediate], the layout llama.cpp's ``ffn_*_exps`` tensors have too.

Two ways to run the chosen experts, the same numbers either way:

- few (token, expert) pairs (decoding): gather just the chosen experts' weights and run
  one batched matmul over the pairs, so a step reads top_k experts, not all of them;
- many pairs (a prompt): sort the pairs by expert and run each expert that was chosen
  once over all its tokens (one loop over the experts that got tokens, never per token).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from famous.genai.config import FeedForwardConfig, MoEConfig
from famous.genai.layers.feed_forward import FeedForward, activation_fn


class MixtureOfExperts(nn.Module):
    def __init__(self, hidden_size: int, cfg: MoEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        e, i = cfg.num_experts, cfg.intermediate_size
        self.router = nn.Linear(hidden_size, e, bias=cfg.router_bias)
        self.gate_up = nn.Parameter(torch.empty(e, 2 * i, hidden_size))
        self.down = nn.Parameter(torch.empty(e, hidden_size, i))
        self.gate_up_bias = nn.Parameter(torch.empty(e, 2 * i)) if cfg.expert_bias else None
        self.down_bias = nn.Parameter(torch.empty(e, hidden_size)) if cfg.expert_bias else None
        self.act = activation_fn(cfg.activation)
        self.shared = (
            FeedForward(
                hidden_size, FeedForwardConfig(cfg.shared_intermediate_size, cfg.activation)
            )
            if cfg.shared_intermediate_size
            else None
        )
        self.shared_gate = nn.Linear(hidden_size, 1, bias=False) if cfg.shared_gate else None

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [N, hidden] → (weights [N, top_k], fp32, expert ids [N, top_k]).

        The probabilities are computed in fp32, as every reference does, and stay fp32: the
        experts' outputs are weighted and summed in fp32, rounded to x's dtype once."""
        logits = self.router(x)
        k = self.cfg.top_k
        if self.cfg.routing == "softmax_topk":
            weights, experts = torch.softmax(logits.float(), dim=-1).topk(k, dim=-1)
            if self.cfg.normalize_top_k:
                weights = weights / weights.sum(dim=-1, keepdim=True)
        else:
            top, experts = logits.topk(k, dim=-1)
            weights = torch.softmax(top.float(), dim=-1)
        return weights, experts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        weights, experts = self.route(x)
        if experts.numel() <= self.cfg.num_experts:
            out = self._gathered(x, weights, experts)
        else:
            out = self._grouped(x, weights, experts)
        if self.shared is not None:
            s = self.shared(x)
            if self.shared_gate is not None:
                s = torch.sigmoid(self.shared_gate(x)) * s
            out = out + s
        return out.reshape(shape)

    def _expert_act(self, h: torch.Tensor) -> torch.Tensor:
        gate, up = h.split(self.cfg.intermediate_size, dim=-1)
        limit = self.cfg.swiglu_limit
        if limit is None:
            return self.act(gate) * up
        gate, up = gate.clamp(max=limit), up.clamp(-limit, limit)
        return (up + 1) * (gate * torch.sigmoid(gate * self.cfg.swiglu_alpha))

    def _gathered(
        self, x: torch.Tensor, weights: torch.Tensor, experts: torch.Tensor
    ) -> torch.Tensor:
        """Each (token, slot) pair through its own gathered expert: [N·k] small matmuls."""
        n, k = experts.shape
        chosen = experts.reshape(-1)
        xs = x.repeat_interleave(k, dim=0).unsqueeze(-1)  # [N·k, hidden, 1]
        h = torch.bmm(self.gate_up[chosen], xs).squeeze(-1)
        if self.gate_up_bias is not None:
            h = h + self.gate_up_bias[chosen]
        y = torch.bmm(self.down[chosen], self._expert_act(h).unsqueeze(-1)).squeeze(-1)
        if self.down_bias is not None:
            y = y + self.down_bias[chosen]  # [N·k, hidden]
        return (y.view(n, k, -1).float() * weights.unsqueeze(-1)).sum(dim=1).to(x.dtype)

    def _grouped(
        self, x: torch.Tensor, weights: torch.Tensor, experts: torch.Tensor
    ) -> torch.Tensor:
        """Pairs sorted by expert; each chosen expert runs once over its tokens."""
        k = experts.shape[1]
        flat = experts.reshape(-1)
        order = flat.argsort(stable=True)
        counts = torch.bincount(flat, minlength=self.cfg.num_experts).tolist()
        pair_weights = weights.reshape(-1)
        out = torch.zeros_like(x, dtype=torch.float32)
        start = 0
        for e, count in enumerate(counts):
            if count == 0:
                continue
            pairs = order[start : start + count]
            start += count
            tokens = pairs // k
            h = self._expert_act(F.linear(x[tokens], self.gate_up[e], _row(self.gate_up_bias, e)))
            y = F.linear(h, self.down[e], _row(self.down_bias, e))
            out.index_add_(0, tokens, y.float() * pair_weights[pairs, None])
        return out.to(x.dtype)


def _row(bias: torch.Tensor | None, e: int) -> torch.Tensor | None:
    return None if bias is None else bias[e]
