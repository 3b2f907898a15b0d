"""Samplers: greedy, temperature, top-k, top-p, min-p, repetition penalty, seeded."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class SamplingParams:
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 → greedy
    top_k: int = 0  # 0 → off
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


def apply_repetition_penalty(
    logits: torch.Tensor, seen: torch.Tensor, penalty: float
) -> torch.Tensor:
    """CTRL-style: logits of tokens already present are divided (positive) or multiplied
    (negative) by ``penalty``. logits: [B, V]; seen: [B, N] token ids."""
    if penalty == 1.0 or seen.numel() == 0:
        return logits
    picked = logits.gather(1, seen)
    picked = torch.where(picked > 0, picked / penalty, picked * penalty)
    return logits.scatter(1, seen, picked)


def filter_logits(
    logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0
) -> torch.Tensor:
    """Masks (to -inf) what top-k, top-p (nucleus) and min-p exclude. logits: [B, V]."""
    neg = torch.finfo(logits.dtype).min
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, neg)
    if min_p > 0.0:
        probs = logits.softmax(-1)
        floor = probs.max(-1, keepdim=True).values * min_p
        logits = logits.masked_fill(probs < floor, neg)
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        # drop a token when the tokens ranked above it already reach top_p (keep at least one)
        drop = (cum - sorted_logits.softmax(-1)) >= top_p
        drop[..., 0] = False
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), neg)
    return logits


class Sampler:
    """Picks the next token per row from [B, V] logits; deterministic for a given seed."""

    def __init__(self, params: SamplingParams) -> None:
        self.p = params
        self.gen = torch.Generator()
        if params.seed is not None:
            self.gen.manual_seed(params.seed)
        else:
            self.gen.seed()

    def __call__(self, logits: torch.Tensor, seen: torch.Tensor | None = None) -> torch.Tensor:
        logits = logits.float()
        if seen is not None:
            logits = apply_repetition_penalty(logits, seen, self.p.repetition_penalty)
        if self.p.greedy:
            return logits.argmax(-1)
        logits = filter_logits(
            logits / self.p.temperature, self.p.top_k, self.p.top_p, self.p.min_p
        )
        probs = logits.softmax(-1)
        return torch.multinomial(probs, 1, generator=self.gen).squeeze(-1)
