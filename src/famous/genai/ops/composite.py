"""The composite ops: ``famous::sdpa``, ``famous::rms_norm`` and ``famous::kv_cache_update``.

Each is a ``torch.library.custom_op`` whose reference implementation computes exactly what
famous's eager layers compute, plus a fake (meta) implementation, so ``torch.export`` keeps
each one as a single graph node a runtime can map to a fused kernel (or decompose with
``decompositions()`` when it has none).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NAMESPACE = "famous"


# ---------------------------------------------------------------------------- SDPA


@torch.library.custom_op(f"{NAMESPACE}::sdpa", mutates_args=())
def sdpa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    scale: float,
    softcap: float | None = None,
) -> torch.Tensor:
    """Scaled dot-product attention with grouped kv heads.

    q: [B, H, T, D]; k, v: [B, Hkv, S, D] with ``H % Hkv == 0``; mask: [T, S] or
    [B, 1, T, S] booleans (True = visible) or None; ``softcap``: tanh logit soft-capping.
    """
    return sdpa_reference(q, k, v, mask, scale, softcap)


def sdpa_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    scale: float,
    softcap: float | None = None,
) -> torch.Tensor:
    """Plain-ATen SDPA; the same two paths as ``famous.genai.layers.attention`` so the
    results are bit-identical to the eager model (fused kernel for prompts and half
    precision, explicit grouped scores for fp32 single-token decode and soft-capping)."""
    n_kv = k.shape[1]
    if softcap is None and (q.shape[2] > 1 or q.dtype != torch.float32):
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, scale=scale, enable_gqa=n_kv != q.shape[1]
        )
    bsz, h, t, d = q.shape
    g = h // n_kv
    qg = q.reshape(bsz, n_kv, g * t, d)
    scores = torch.matmul(qg, k.transpose(-1, -2)) * scale
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if mask is not None:
        m = mask.repeat(g, 1) if mask.dim() == 2 else mask.repeat(1, 1, g, 1)
        scores = scores.masked_fill(~m, float("-inf"))
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    return torch.matmul(probs, v).reshape(bsz, h, t, v.shape[-1])


@sdpa.register_fake
def _sdpa_fake(q, k, v, mask, scale, softcap=None):
    return q.new_empty((*q.shape[:-1], v.shape[-1]))


# ---------------------------------------------------------------------------- RMSNorm


@torch.library.custom_op(f"{NAMESPACE}::rms_norm", mutates_args=())
def rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float, zero_centered: bool = False
) -> torch.Tensor:
    """RMSNorm over the last dim, computed in fp32 (plain: ``w * norm(x).to(dtype)``;
    zero-centered: ``(norm(x) * (1 + w)).to(dtype)``)."""
    return rms_norm_reference(x, weight, eps, zero_centered)


def rms_norm_reference(
    x: torch.Tensor, weight: torch.Tensor, eps: float, zero_centered: bool = False
) -> torch.Tensor:
    dtype = x.dtype
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    if zero_centered:
        return (h * (1.0 + weight.float())).to(dtype)
    return weight * h.to(dtype)


@rms_norm.register_fake
def _rms_norm_fake(x, weight, eps, zero_centered=False):
    dtype = x.dtype if zero_centered else torch.promote_types(weight.dtype, x.dtype)
    return x.new_empty(x.shape, dtype=dtype)


# ---------------------------------------------------------------------------- KV cache


@torch.library.custom_op(f"{NAMESPACE}::kv_cache_update", mutates_args=())
def kv_cache_update(
    cache: torch.Tensor, input_pos: torch.Tensor, value: torch.Tensor
) -> torch.Tensor:
    """The cache with ``value`` written at slots ``input_pos`` (functional).

    cache: [B, Hkv, S, D]; input_pos: [T] int64 slots; value: [B, Hkv, T, D].
    """
    return kv_cache_update_reference(cache, input_pos, value)


def kv_cache_update_reference(
    cache: torch.Tensor, input_pos: torch.Tensor, value: torch.Tensor
) -> torch.Tensor:
    return cache.index_copy(2, input_pos, value)


@kv_cache_update.register_fake
def _kv_cache_update_fake(cache, input_pos, value):
    return torch.empty_like(cache)


@torch.library.custom_op(f"{NAMESPACE}::kv_cache_update_", mutates_args=("cache",))
def kv_cache_update_(cache: torch.Tensor, input_pos: torch.Tensor, value: torch.Tensor) -> None:
    """In-place variant for eager decoding (the same values as ``kv_cache_update``)."""
    cache.index_copy_(2, input_pos, value)


@kv_cache_update_.register_fake
def _kv_cache_update_inplace_fake(cache, input_pos, value):
    return None


# ---------------------------------------------------------------------------- tables


def composite_ops() -> dict[str, torch._ops.OpOverload]:
    """The functional composite ops by short name (what an exported graph contains)."""
    return {
        "sdpa": torch.ops.famous.sdpa.default,
        "rms_norm": torch.ops.famous.rms_norm.default,
        "kv_cache_update": torch.ops.famous.kv_cache_update.default,
    }


def decompositions() -> dict[torch._ops.OpOverload, object]:
    """A decomposition table for ``ExportedProgram.run_decompositions``: each composite op
    back to its plain-ATen reference (for runtimes without a fused kernel for it)."""
    return {
        torch.ops.famous.sdpa.default: sdpa_reference,
        torch.ops.famous.rms_norm.default: rms_norm_reference,
        torch.ops.famous.kv_cache_update.default: kv_cache_update_reference,
    }
