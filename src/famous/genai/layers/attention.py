"""Multi-head attention (MHA / GQA / MQA) over the external KV cache.

Options: q/k/v bias, q/k norm (per head or over the whole projection), NoPE layers, logit
soft-capping, attention sinks, sliding window (ring cache).
q, k and v come from one fused projection (one matmul reads all three weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from famous.genai.config import AttentionConfig
from famous.genai.layers.norm import make_norm
from famous.genai.layers.rope import apply_rope


@dataclass(frozen=True)
class AttentionStep:
    """What one model call tells the attention layers of one cache kind.

    ``cos`` / ``sin``: the RoPE tables of the new tokens' positions; ``mask`` ([T, S] or
    [B, 1, T, S], True = visible), built once per call for each cache kind; ``input_pos``
    ([T]): the cache positions of the new tokens; ``ring``: the slots of a sliding-window
    ring cache (None: a full cache); ``end`` (eager only): attend to the first ``end`` slots
    of a full cache instead of all of them; ``inplace``: write into the cache directly.
    """

    cos: torch.Tensor
    sin: torch.Tensor
    mask: torch.Tensor | None
    input_pos: torch.Tensor
    ring: int | None = None
    end: int | None = None
    inplace: bool = False


class Attention(nn.Module):
    def __init__(self, hidden_size: int, cfg: AttentionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads
        self.head_dim = cfg.head_dim
        self.qkv = nn.Linear(hidden_size, cfg.q_size + 2 * cfg.kv_size, bias=cfg.qkv_bias)
        self.o = nn.Linear(cfg.q_size, hidden_size, bias=cfg.o_bias)
        # per head, or (OLMo 2) over the whole projection
        q_dim, k_dim = (cfg.q_size, cfg.kv_size) if cfg.qk_norm_full else (cfg.head_dim,) * 2
        self.q_norm = make_norm(cfg.qk_norm, q_dim) if cfg.qk_norm else None
        self.k_norm = make_norm(cfg.qk_norm, k_dim) if cfg.qk_norm else None
        self.scale = cfg.softmax_scale
        self.softcap = cfg.logit_softcapping
        self.sinks = nn.Parameter(torch.zeros(self.n_heads)) if cfg.sinks else None

    def forward(
        self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor], step: AttentionStep
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x: [B, T, hidden]; returns the output and the (updated) cache."""
        cos, sin, mask, input_pos = step.cos, step.sin, step.mask, step.input_pos
        ring, end, inplace = step.ring, step.end, step.inplace
        bsz, t, _ = x.shape
        q, k, v = self.qkv(x).split([self.cfg.q_size, self.cfg.kv_size, self.cfg.kv_size], dim=-1)
        full_norm = self.q_norm is not None and self.cfg.qk_norm_full
        if full_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q = q.view(bsz, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = k.view(bsz, t, self.n_kv, self.head_dim).transpose(1, 2)
        v = v.view(bsz, t, self.n_kv, self.head_dim).transpose(1, 2)
        if self.q_norm is not None and not full_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.cfg.use_rope:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)

        k_cache, v_cache = cache
        if ring is None:
            k_cache = self._write_cache(k_cache, input_pos, k, inplace)
            v_cache = self._write_cache(v_cache, input_pos, v, inplace)
            keys, values = (
                (k_cache, v_cache) if end is None else (k_cache[:, :, :end], v_cache[:, :, :end])
            )
        else:
            # Attend over [the ring's last ring-1 positions, oldest first ; new keys], then
            # keep the last `ring` new keys in their slots. Chronological order keeps the
            # reduction order of the reference; works for one token or a long prompt alike.
            # Eager calls know how many positions exist before this call and skip the rest.
            n_old = ring - 1 if end is None else min(ring - 1, end - t)
            first = input_pos[:1] - n_old
            # + ring keeps every operand non-negative (positions before 0 are masked):
            # ExecuTorch's remainder keeps the sign of a negative dividend, as C's % does
            order = torch.remainder(first + ring + torch.arange(n_old, device=x.device), ring)
            keys = torch.cat((k_cache.index_select(2, order), k), dim=2)
            values = torch.cat((v_cache.index_select(2, order), v), dim=2)
            keep = min(t, ring)
            slots = input_pos[t - keep :] % ring
            k_cache = self._write_cache(k_cache, slots, k[:, :, t - keep :], inplace)
            v_cache = self._write_cache(v_cache, slots, v[:, :, t - keep :], inplace)

        out = self._attend(q, keys, values, mask)
        out = out.transpose(1, 2).reshape(bsz, t, self.cfg.q_size)
        return self.o(out), (k_cache, v_cache)

    def _write_cache(
        self, buf: torch.Tensor, index: torch.Tensor, value: torch.Tensor, inplace: bool
    ) -> torch.Tensor:
        """Put ``value`` at ``index`` (dim 2) of a cache buffer; a method so that export-time
        subclasses can route it through a composite op."""
        return _write(buf, index, value, inplace)

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        # fp32 single-token decode takes the explicit path below (faster than torch's CPU
        # flash kernel for one query); bf16/fp16 keep SDPA, whose fp32 accumulation the
        # reference shares, so greedy tokens stay identical.
        explicit = self.softcap is not None or self.sinks is not None
        if not explicit and (q.shape[2] > 1 or q.dtype != torch.float32):
            return F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, scale=self.scale, enable_gqa=self.n_kv != self.n_heads
            )
        # Soft-capped logits (Gemma 2) and fp32 decoding compute the scores explicitly. Query
        # heads are grouped
        # by their shared kv head so k and v are never repeated.
        bsz, h, t, d = q.shape
        g = h // self.n_kv
        qg = q.reshape(bsz, self.n_kv, g * t, d)
        scores = torch.matmul(qg, k.transpose(-1, -2)) * self.scale
        if self.softcap is not None:
            scores = torch.tanh(scores / self.softcap) * self.softcap
        if mask is not None:
            # rows of qg are ordered (group, token): tile the [.., T, S] mask per group
            m = mask.repeat(g, 1) if mask.dim() == 2 else mask.repeat(1, 1, g, 1)
            scores = scores.masked_fill(~m, float("-inf"))
        if self.sinks is not None:
            # one extra logit per head takes its share of the softmax and is dropped after
            sink = self.sinks.view(self.n_kv, g, 1).expand(self.n_kv, g, t).reshape(1, -1, g * t, 1)
            scores = torch.cat((scores, sink.to(scores.dtype).expand(bsz, -1, -1, -1)), dim=-1)
            probs = torch.softmax(scores, dim=-1, dtype=torch.float32)[..., :-1].to(q.dtype)
            return torch.matmul(probs, v).reshape(bsz, h, t, d)
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        return torch.matmul(probs, v).reshape(bsz, h, t, d)


def _write(
    buf: torch.Tensor, index: torch.Tensor, value: torch.Tensor, inplace: bool
) -> torch.Tensor:
    if inplace:
        return buf.index_copy_(2, index, value)
    return buf.index_copy(2, index, value)
