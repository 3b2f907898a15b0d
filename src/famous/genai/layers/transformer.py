"""The decoder-only transformer every family instantiates from its ``ModelConfig``.

``forward(tokens, input_pos, kv_cache) -> (logits, kv_cache)`` is a pure function of its
inputs (exportable with ``torch.export``: prefill_N and decode signatures). Keyword options
are eager-only speedups and must keep their defaults in an exported program.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from famous.genai.config import ModelConfig
from famous.genai.layers.attention import Attention, AttentionStep
from famous.genai.layers.feed_forward import FeedForward
from famous.genai.layers.kv_cache import KVCache, cache_kinds, init_kv_cache
from famous.genai.layers.moe import MixtureOfExperts
from famous.genai.layers.norm import make_norm
from famous.genai.layers.rope import RotaryEmbedding


@dataclass(frozen=True)
class LayerLayout:
    """How block ``i`` of a ``DecoderModel`` reads its inputs (``DecoderModel.layout[i]``).

    ``rope``: its index into ``DecoderModel.ropes``; ``ring``: the slots of its ring
    (sliding-window) cache, None for a full cache; ``window``: its sliding window, if any.
    """

    rope: int
    ring: int | None
    window: int | None


class Block(nn.Module):
    """Pre-norm attention and feed-forward with residuals; Gemma 2/3 add post-norms, OLMo 2
    has post-norms only, Granite scales each sub-layer's output, MoE families route the
    feed-forward through experts."""

    def __init__(self, hidden_size: int, cfg) -> None:
        super().__init__()
        self.attn_norm = _optional_norm(cfg.attn_norm, hidden_size)
        self.attn = Attention(hidden_size, cfg.attention)
        self.attn_post_norm = _optional_norm(cfg.attn_post_norm, hidden_size)
        self.ffn_norm = _optional_norm(cfg.ffn_norm, hidden_size)
        self.ffn = (
            MixtureOfExperts(hidden_size, cfg.moe)
            if cfg.moe is not None
            else FeedForward(hidden_size, cfg.feed_forward)
        )
        self.ffn_post_norm = _optional_norm(cfg.ffn_post_norm, hidden_size)
        self.residual_scale = cfg.residual_scale

    def forward(
        self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor], step: AttentionStep
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        h, cache = self.attn(_apply(self.attn_norm, x), cache, step)
        x = x + self._scaled(_apply(self.attn_post_norm, h))
        h = self.ffn(_apply(self.ffn_norm, x))
        return x + self._scaled(_apply(self.ffn_post_norm, h)), cache

    def _scaled(self, h: torch.Tensor) -> torch.Tensor:
        return h if self.residual_scale is None else h * self.residual_scale


def _optional_norm(cfg, dim: int) -> nn.Module | None:
    return make_norm(cfg, dim) if cfg is not None else None


def _apply(norm: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    return x if norm is None else norm(x)


class DecoderModel(nn.Module):
    """Embedding → blocks → final norm → LM head (tied or separate) → optional soft-cap.

    ``max_seq_len`` fixes the cache capacity (it decides which sliding layers get a ring
    and, for dynamic / long RoPE, the frequencies).
    """

    def __init__(self, cfg: ModelConfig, max_seq_len: int = 4096) -> None:
        super().__init__()
        self.cfg = cfg
        self.max_seq_len = max_seq_len
        self.embed = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg.hidden_size, b) for b in cfg.blocks)
        self.norm = make_norm(cfg.final_norm, cfg.hidden_size)
        self.lm_head = (
            None
            if cfg.tie_word_embeddings
            else nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        )
        # One RoPE table per distinct (rope config, head_dim); Gemma 3 has two.
        self.ropes = nn.ModuleList()
        rope_index: list[int] = []
        seen: dict[tuple, int] = {}
        for b in cfg.blocks:
            key = (b.attention.rope, b.attention.head_dim)
            if key not in seen:
                seen[key] = len(self.ropes)
                self.ropes.append(
                    RotaryEmbedding(
                        b.attention.rope,
                        b.attention.head_dim,
                        cfg.max_position_embeddings,
                        max_seq_len,
                    )
                )
            rope_index.append(seen[key])
        rings = cache_kinds(cfg, max_seq_len)
        self.layout = tuple(
            LayerLayout(rope=r, ring=ring, window=b.attention.sliding_window)
            for r, ring, b in zip(rope_index, rings, cfg.blocks, strict=True)
        )

    def materialize_buffers(self, device: torch.device | str = "cpu") -> None:
        """Recompute the RoPE tables (after building on the meta device and loading)."""
        for i, rope in enumerate(self.ropes):
            self.ropes[i] = RotaryEmbedding(*rope.args).to(device)

    def long_context_from(self) -> int | None:
        """The position at which a RoPE table switches to its long-context frequencies
        (LongRoPE): a generation reaching it re-prefills, as transformers' Phi-3 does, so
        no key keeps its short-context rotation. None when no table switches."""
        points = [p for r in self.ropes if (p := r.long_context_from()) is not None]
        return min(points) if points else None

    # ------------------------------------------------------------------ cache
    def init_cache(self, batch_size: int = 1, dtype: torch.dtype | None = None) -> KVCache:
        dtype = dtype or self.embed.weight.dtype
        return init_kv_cache(
            self.cfg, batch_size, self.max_seq_len, dtype, self.embed.weight.device
        )

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        tokens: torch.Tensor,
        input_pos: torch.Tensor,
        kv_cache: KVCache,
        *,
        pad_lens: torch.Tensor | None = None,
        end: int | None = None,
        inplace: bool = False,
        last_logits_only: bool = False,
    ) -> tuple[torch.Tensor, KVCache]:
        """tokens: [B, T] int64; input_pos: [T] int64 consecutive cache positions.

        Returns logits [B, T, vocab] (or [B, 1, vocab] with ``last_logits_only``) in the
        model dtype, and the updated cache. ``pad_lens`` [B]: left padding per row of a
        batch (those slots are masked and RoPE positions start after them).
        """
        x = self.embed_tokens(tokens)
        rope_pos = (
            input_pos if pad_lens is None else (input_pos[None, :] - pad_lens[:, None]).clamp_min(0)
        )
        tables = self.rope_tables(rope_pos, x.dtype)
        masks: dict[tuple[int | None, int | None], torch.Tensor | None] = {}
        steps: dict[tuple[int, int | None, int | None], AttentionStep] = {}
        new_cache = []
        for i, (layer, lay) in enumerate(zip(self.layers, self.layout, strict=True)):
            kind = (lay.ring, lay.window)
            if kind not in masks:
                masks[kind] = self._mask(
                    input_pos, kv_cache[i][0].shape[2], lay.ring, lay.window, end, pad_lens
                )
            key = (lay.rope, *kind)
            if key not in steps:
                cos, sin = tables[lay.rope]
                steps[key] = AttentionStep(cos, sin, masks[kind], input_pos, lay.ring, end, inplace)
            x, c = layer(x, kv_cache[i], steps[key])
            new_cache.append(c)
        if last_logits_only:
            x = x[:, -1:]
        x = self.norm(x)
        logits = F.linear(x, self.embed.weight if self.lm_head is None else self.lm_head.weight)
        return self.soft_cap(logits), tuple(new_cache)

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, T] → the first block's input [B, T, hidden] (scaled for Gemma)."""
        x = self.embed(tokens)
        if self.cfg.embedding_scale is not None:
            x = x * torch.tensor(self.cfg.embedding_scale, dtype=x.dtype)
        return x

    def rope_tables(
        self, rope_pos: torch.Tensor, dtype: torch.dtype
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(cos, sin) of every RoPE table (``layout[i].rope`` indexes them) at ``rope_pos``."""
        return [rope(rope_pos, dtype) for rope in self.ropes]

    def soft_cap(self, logits: torch.Tensor) -> torch.Tensor:
        """The final logit scaling (Granite) and soft-cap (Gemma 2), or the logits as they are."""
        if self.cfg.logits_scaling is not None:
            logits = logits / self.cfg.logits_scaling
        cap = self.cfg.final_logit_softcapping
        return logits if cap is None else torch.tanh(logits / cap) * cap

    @staticmethod
    def _mask(
        input_pos: torch.Tensor,
        slots: int,
        ring: int | None,
        window: int | None,
        end: int | None,
        pad_lens: torch.Tensor | None,
    ) -> torch.Tensor | None:
        """Visibility [T, S] (or [B, 1, T, S] with padding); True = may attend."""
        q = input_pos[:, None]
        if ring is None:
            t = input_pos.shape[0]
            if end is not None and t == 1 and window is None and pad_lens is None:
                return None  # one new token sees every filled slot
            kpos = torch.arange(slots if end is None else end, device=input_pos.device)
        else:
            # The attention reads the ring's last ring-1 positions before p0, oldest first
            # (negative: never written).
            n_old = ring - 1 if end is None else min(ring - 1, end - input_pos.shape[0])
            old = input_pos[:1] - n_old + torch.arange(n_old, device=input_pos.device)
            kpos = torch.cat((old, input_pos))
        k = kpos[None, :]
        mask = (k <= q) & (k >= 0)
        if window is not None:
            mask = mask & (k > q - window)
        if pad_lens is not None:
            # Padding slots are hidden; a padding query still sees itself so no row is all
            # masked (an all-masked row would put NaN into the cache).
            real = k[None, None] >= pad_lens[:, None, None, None]
            mask = (mask[None, None] & real) | (k == q)[None, None]
        return mask
