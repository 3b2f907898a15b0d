"""Rotary position embedding: default, linear, dynamic-NTK, Llama-3, YaRN and LongRoPE scaling,
full or partial rotary dimensions."""

from __future__ import annotations

import math

import torch
from torch import nn

from famous.genai.config import RopeConfig, longrope_attention_factor


def inverse_frequencies(
    rope: RopeConfig, head_dim: int, max_position_embeddings: int
) -> tuple[torch.Tensor, float]:
    """Per-pair rotation frequencies (fp32) for sequences within the original length, and
    the cos/sin multiplier ("attention factor"). ``dynamic`` and ``longrope`` change their
    frequencies with the current length: ``RotaryEmbedding`` does that per call."""
    dim = rotary_dim(rope, head_dim)
    exponents = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
    attention_factor = 1.0
    inv_freq = 1.0 / (rope.rope_theta**exponents)
    if rope.rope_type == "linear":
        inv_freq = inv_freq / rope.factor
    elif rope.rope_type == "llama3":
        inv_freq = _llama3_scaling(inv_freq, rope)
    elif rope.rope_type == "yarn":
        inv_freq, attention_factor = _yarn(rope, dim)
    elif rope.rope_type == "longrope":
        inv_freq = 1.0 / (_factors(rope.short_factor) * rope.rope_theta**exponents)
        attention_factor = longrope_attention_factor(rope, max_position_embeddings)
    return inv_freq, attention_factor


def rotary_dim(rope: RopeConfig, head_dim: int) -> int:
    return int(head_dim * rope.partial_rotary_factor)


def _factors(values: tuple[float, ...] | None) -> torch.Tensor:
    if values is None:
        raise ValueError("longrope needs short_factor and long_factor")
    return torch.tensor(values, dtype=torch.float32)


def _yarn(rope: RopeConfig, dim: int) -> tuple[torch.Tensor, float]:
    """YaRN: frequencies that turn fewer than ``beta_slow`` times over the original context
    are divided by ``factor``, those turning more than ``beta_fast`` times are kept, a linear
    ramp (over pair indices) blends the band between; cos/sin gain 0.1·ln(factor) + 1."""
    orig = rope.original_max_position_embeddings
    if orig is None:
        raise ValueError("yarn needs original_max_position_embeddings")

    def pair_index(rotations: float) -> float:  # the pair that turns `rotations` times
        return dim * math.log(orig / (rotations * 2 * math.pi)) / (2 * math.log(rope.rope_theta))

    low, high = pair_index(rope.beta_fast), pair_index(rope.beta_slow)
    if rope.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    keep = 1 - ramp  # 1: extrapolate (keep the frequency), 0: interpolate (divide by factor)
    wavelength_base = rope.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim)
    scaled = 1.0 / (rope.factor * wavelength_base) * (1 - keep) + 1.0 / wavelength_base * keep
    gain = rope.attention_factor
    if gain is None:
        gain = 0.1 * math.log(rope.factor) + 1.0 if rope.factor > 1 else 1.0
    return scaled, float(gain)


def _llama3_scaling(inv_freq: torch.Tensor, rope: RopeConfig) -> torch.Tensor:
    """Llama 3.1+: long wavelengths are slowed by ``factor``, short ones kept, the band in
    between interpolated smoothly."""
    old_ctx = rope.original_max_position_embeddings or 8192
    wavelen = 2 * math.pi / inv_freq
    low_wavelen = old_ctx / rope.low_freq_factor  # longer than this: fully scaled
    high_wavelen = old_ctx / rope.high_freq_factor  # shorter than this: untouched
    scaled = torch.where(wavelen > low_wavelen, inv_freq / rope.factor, inv_freq)
    t = (old_ctx / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor)
    blended = (1 - t) * scaled / rope.factor + t * scaled
    in_band = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(in_band, blended, scaled)


class RotaryEmbedding(nn.Module):
    """Turns positions into (cos, sin) tables, computed in fp32 then cast to the model dtype.

    ``dynamic`` and ``longrope`` depend on the length of the sequence so far, as in
    transformers: ``max(positions) + 1`` of each call (of each row of a batch, so a row
    sees what it would see alone). Keys cached by earlier calls keep their rotation.
    """

    def __init__(
        self, rope: RopeConfig, head_dim: int, max_position_embeddings: int, max_seq_len: int
    ) -> None:
        super().__init__()
        self.args = (rope, head_dim, max_position_embeddings, max_seq_len)
        self.rope = rope
        self.max_position_embeddings = max_position_embeddings
        inv_freq, self.attention_factor = inverse_frequencies(
            rope, head_dim, max_position_embeddings
        )
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        dim = rotary_dim(rope, head_dim)
        self.dim = dim
        self.original_length = rope.original_max_position_embeddings or max_position_embeddings
        exponents = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
        if rope.rope_type == "longrope":
            long_inv = 1.0 / (_factors(rope.long_factor) * rope.rope_theta**exponents)
            self.register_buffer("long_inv_freq", long_inv, persistent=False)
        if rope.rope_type == "dynamic":
            self.register_buffer("exponents", exponents, persistent=False)

    def long_context_from(self) -> int | None:
        """The length past which this table switches to other frequencies for good
        (longrope's long factors), making keys cached before stale; None if it never does."""
        return self.original_length if self.rope.rope_type == "longrope" else None

    def frequencies(self, positions: torch.Tensor) -> torch.Tensor:
        """The inverse frequencies for this call: [rd/2], or [.., 1, rd/2] when they
        depend on the length ``max(positions) + 1``."""
        kind = self.rope.rope_type
        if kind not in ("dynamic", "longrope"):
            return self.inv_freq
        seq_len = (positions.amax(-1, keepdim=True) + 1).unsqueeze(-1)
        if kind == "longrope":
            return torch.where(seq_len > self.original_length, self.long_inv_freq, self.inv_freq)
        mpe, f = self.max_position_embeddings, self.rope.factor
        length = seq_len.clamp_min(mpe).float()
        base = self.rope.rope_theta * ((f * length / mpe) - (f - 1)) ** (self.dim / (self.dim - 2))
        return 1.0 / (base**self.exponents)

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """positions: [T] or [B, T] → cos, sin of shape [T, rd] or [B, 1, T, rd]."""
        freqs = positions.float().unsqueeze(-1) * self.frequencies(positions)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        if self.attention_factor != 1.0:
            cos, sin = cos * self.attention_factor, sin * self.attention_factor
        if positions.dim() == 2:
            cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        return cos.to(dtype), sin.to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [B, H, T, D]; rotates the first ``cos.shape[-1]`` dims (partial rotary keeps the rest)."""
    rd = cos.shape[-1]
    if rd == x.shape[-1]:
        return x * cos + _rotate_half(x) * sin
    rot, rest = x[..., :rd], x[..., rd:]
    return torch.cat((rot * cos + _rotate_half(rot) * sin, rest), dim=-1)
