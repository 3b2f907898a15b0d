"""One decoding step of a ``DecoderModel`` through famous's CPU kernels.

Per block: RMSNorm fused into the q|k|v GEMV → one attention call (q/k norm, RoPE, cache
write, grouped-query attention) → output GEMV with the residual added in the same pass →
RMSNorm fused into the gate|up GEMV → activation fused into the down GEMV, plus the
residual. Five calls a block instead of about sixty PyTorch ops.

The model's own parameters are used: a ``DecodePlan`` collects references to them once, so
a step does no ``nn.Module`` attribute lookups, and moves the streamed weights into huge
pages (``hugepages.py``) without changing a value. Any module or parameter
registered anywhere (a quantizer swapping a ``Linear``, say) makes every plan stale, and
the next step re-checks the model.

A model qualifies when it runs on the CPU in fp32 or bf16 with plain ``nn.Linear`` /
``nn.Embedding`` weights or weight-only quantized ones the quantized GEMV streams (int8 per
output channel, int4 in blocks of a multiple of 32: ``QuantLinear`` / ``QuantEmbedding``
of ``famous.genai.quantize``, read in their stored layout; their GEMVs quantize the input
to int8 blocks unless ``FAMOUS_QUANT_ACTIVATIONS=exact``, see ``int8_activations``), RMS
norms and no ring (sliding-window) caches, and bf16 attention has no soft-cap; otherwise
``decode`` runs the model's module path. The caller chooses: ``decode`` is the kernels'
entry point (the pipeline's decoding loop uses it); ``DecoderModel.forward`` itself is
always the module path. The kernels read the model through its public parts only
(``layout``, ``embed_tokens``, ``rope_tables``, ``soft_cap`` and its modules).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from famous.genai.kernels import (
    Q_I4_BLK,
    Q_I8_ROW,
    CpuKernels,
    QuantMatrix,
    cpu_kernels,
    int8_activations,
)
from famous.genai.kernels.hugepages import move_to_huge_pages
from famous.genai.layers.norm import RMSNorm
from famous.genai.layers.transformer import Block, DecoderModel
from famous.genai.quantize.modules import QuantEmbedding, QuantizedWeight, QuantLinear

if TYPE_CHECKING:
    from famous.genai.layers.kv_cache import KVCache

Norm = tuple[torch.Tensor, float, bool]  # (weight, eps, zero_centered)
Weight = torch.Tensor | QuantMatrix
Proj = tuple[Weight, torch.Tensor | None]  # (weight, bias)

# Bumped by every module / parameter / buffer registration in the process once a plan exists:
# the hooks are installed by the first plan built (never at import), and never removed.
_generation = 0
_watching = False


def _registered(*_: object) -> None:
    global _generation
    _generation += 1


def _watch_registrations() -> None:
    global _watching
    if not _watching:
        _watching = True
        nn.modules.module.register_module_module_registration_hook(_registered)
        nn.modules.module.register_module_parameter_registration_hook(_registered)
        nn.modules.module.register_module_buffer_registration_hook(_registered)


@dataclass(frozen=True)
class LayerPlan:
    attn_norm: Norm
    qkv: Proj
    o: Proj
    q_norm: torch.Tensor | None
    k_norm: torch.Tensor | None
    qk_eps: float
    qk_zero_centered: bool
    attn_post_norm: Norm | None
    heads: int
    kv_heads: int
    head_dim: int
    scale: float
    softcap: float | None
    window: int | None
    rope: int
    ffn_norm: Norm
    gate_up: Proj
    down: Proj
    activation: tuple[str, bool]  # (name, gated)
    ffn_post_norm: Norm | None


@dataclass(frozen=True)
class DecodePlan:
    kernels: CpuKernels
    dtype: torch.dtype
    layers: tuple[LayerPlan, ...]
    final_norm: Norm
    head: Weight


# PyTorch's CPU flash attention splits longer key ranges into blocks per query length
_GROUPED_SDPA_MAX = 256

# model → ((generation, dtype, kernels), plan or None when the model does not qualify)
_plans: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def plan_for(
    model: DecoderModel, tokens: torch.Tensor, kv_cache: KVCache | None = None, pos: int = 0
) -> DecodePlan | None:
    """The model's decode plan if this one-token, one-row step can use the kernels. With a
    cache, it must also be one the kernels can write slot ``pos`` of (else the module path
    runs, and reports what is wrong with it)."""
    if tokens.shape != (1, 1) or tokens.device.type != "cpu":
        return None
    kernels = cpu_kernels()
    if kernels is None:
        return None
    _watch_registrations()
    embed = model.embed  # a quantized table's .weight would dequantize it: ask its dtype
    dtype = embed.qweight.out_dtype if type(embed) is QuantEmbedding else embed.weight.dtype
    key = (_generation, dtype, kernels, int8_activations())
    cached = _plans.get(model)
    if cached is None or cached[0] != key:
        cached = (key, _build_plan(model, kernels, dtype, key[3]))
        _plans[model] = cached
    plan = cached[1]
    if plan is not None and kv_cache is not None and not _cache_fits(plan, kv_cache, pos):
        return None
    return plan


# id(buffer) → (dtype, kv_heads, head_dim, slots) of live KV-cache buffers already checked:
# a step then costs a dictionary lookup per buffer instead of a dozen tensor queries
_checked: dict[int, tuple] = {}


def _cache_fits(plan: DecodePlan, kv_cache: KVCache, pos: int) -> bool:
    """The kernels write raw memory: every buffer must be [1, kv_heads, slots > pos,
    head_dim], contiguous, on the CPU, in the model's dtype."""
    if len(kv_cache) != len(plan.layers):
        return False
    for layer, pair in zip(plan.layers, kv_cache, strict=True):
        for buf in pair:
            seen = _checked.get(id(buf))
            if seen is None:
                if not (
                    buf.device.type == "cpu"
                    and buf.dim() == 4
                    and buf.shape[0] == 1
                    and buf.is_contiguous()
                ):
                    return False
                seen = (buf.dtype, buf.shape[1], buf.shape[3], buf.shape[2])
                _checked[id(buf)] = seen
                weakref.finalize(buf, _checked.pop, id(buf), None)
            if seen[:3] != (plan.dtype, layer.kv_heads, layer.head_dim) or seen[3] <= pos:
                return False
    return True


def _plain(t: torch.Tensor | None, dtype: torch.dtype) -> bool:
    """A tensor the kernels can read as raw memory of the model's dtype: not a tensor
    subclass (torchao's quantized tensors say float32 and contiguous, but their
    ``data_ptr`` is not the float matrix they stand for)."""
    return t is None or (
        type(t) in _PLAIN_TYPES
        and t.layout == torch.strided
        and t.dtype == dtype
        and t.device.type == "cpu"
        and t.is_contiguous()
    )


_PLAIN_TYPES = (torch.Tensor, nn.Parameter)


def _quant_matrix(
    qw: QuantizedWeight, dtype: torch.dtype, int8_act: bool = False
) -> QuantMatrix | None:
    """The quantized weight as the GEMV streams it, if its scheme is one the kernels have
    (int8 per channel, int4 in blocks of 32 or a multiple) and it dequantizes to dtype;
    ``int8_act``: its GEMV quantizes the input to int8 (``int8_activations``)."""
    spec = qw.spec
    if qw.out_dtype != dtype or spec.activations != "none" or len(qw.shape) != 2:
        return None
    if spec.dtype == "int8" and spec.granularity == "channel":
        kind, block = Q_I8_ROW, 1
    elif spec.dtype == "int4" and int(spec.block_size) % 32 == 0:
        kind, block = Q_I4_BLK, int(spec.block_size)
    else:
        return None
    if not all(_plain(t, t.dtype) for t in (qw.data, qw.scale)):
        return None
    return QuantMatrix(qw.data, qw.scale, kind, block, qw.shape, int8_act)


def _linear(m: object, dtype: torch.dtype, int8_act: bool) -> Proj | None:
    if type(m) is QuantLinear:
        qm = _quant_matrix(m.qweight, dtype, int8_act)
        return (qm, m.bias) if qm is not None and _plain(m.bias, dtype) else None
    ok = type(m) is nn.Linear and _plain(m.weight, dtype) and _plain(m.bias, dtype)
    return (m.weight, m.bias) if ok else None


def _streamed(w: Weight) -> list[torch.Tensor]:
    """The tensors a GEMV of w reads (moved into huge pages)."""
    return [w.data, w.scale] if isinstance(w, QuantMatrix) else [w]


def _norm(m: object | None, dtype: torch.dtype) -> Norm | None:
    ok = type(m) is RMSNorm and _plain(m.weight, dtype)
    return (m.weight, m.eps, m.zero_centered) if ok else None


class _Ineligible(Exception):
    pass


def _need(value):
    if value is None:
        raise _Ineligible
    return value


def _optional_norm(m: object | None, dtype: torch.dtype) -> Norm | None:
    return None if m is None else _need(_norm(m, dtype))


def _layer_plan(
    model: DecoderModel, i: int, block: Block, dtype: torch.dtype, int8_act: bool
) -> LayerPlan:
    a, ffn = block.attn, block.ffn
    if a.n_heads % a.n_kv or (a.softcap is not None and dtype != torch.float32):
        raise _Ineligible
    c = model.cfg.blocks[i]
    # what the kernels do not implement: experts, NoPE, whole-projection q/k norm, scaling
    if c.moe or not c.attention.use_rope or c.attention.qk_norm_full or c.residual_scale:
        raise _Ineligible
    if c.attention.sinks:
        raise _Ineligible
    q_norm, k_norm = _optional_norm(a.q_norm, dtype), _optional_norm(a.k_norm, dtype)
    return LayerPlan(
        attn_norm=_need(_norm(block.attn_norm, dtype)),
        qkv=_need(_linear(a.qkv, dtype, int8_act)),
        o=_need(_linear(a.o, dtype, int8_act)),
        q_norm=None if q_norm is None else q_norm[0],
        k_norm=None if k_norm is None else k_norm[0],
        qk_eps=0.0 if q_norm is None else q_norm[1],
        qk_zero_centered=q_norm is not None and q_norm[2],
        attn_post_norm=_optional_norm(block.attn_post_norm, dtype),
        heads=a.n_heads,
        kv_heads=a.n_kv,
        head_dim=a.head_dim,
        scale=a.scale,
        softcap=a.softcap,
        window=model.layout[i].window,
        rope=model.layout[i].rope,
        ffn_norm=_need(_norm(block.ffn_norm, dtype)),
        gate_up=_need(_linear(ffn.gate_up, dtype, int8_act)),
        down=_need(_linear(ffn.down, dtype, int8_act)),
        activation=(model.cfg.blocks[i].feed_forward.activation, ffn.gated),
        ffn_post_norm=_optional_norm(block.ffn_post_norm, dtype),
    )


def _build_plan(
    model: DecoderModel, kernels: CpuKernels, dtype: torch.dtype, int8_act: bool
) -> DecodePlan | None:
    if kernels.dtype_code(dtype) is None:
        return None
    embed = model.embed
    if type(embed) is QuantEmbedding:
        tied: Weight | None = _quant_matrix(embed.qweight, dtype, int8_act)
    elif type(embed) is nn.Embedding and _plain(embed.weight, dtype):
        tied = embed.weight
    else:
        return None
    if any(lay.ring is not None for lay in model.layout):
        return None
    try:
        layers = tuple(
            _layer_plan(model, i, b, dtype, int8_act) for i, b in enumerate(model.layers)
        )
        lm_head = (
            None if model.lm_head is None else _need(_linear(model.lm_head, dtype, int8_act))[0]
        )
        head = _need(tied) if lm_head is None else lm_head
        final_norm = _need(_norm(model.norm, dtype))
    except _Ineligible:
        return None
    weights = [[lay.qkv[0], lay.o[0], lay.gate_up[0], lay.down[0]] for lay in layers]
    groups = [[t for w in ws for t in _streamed(w)] for ws in weights]
    move_to_huge_pages([*groups, _streamed(head)])
    return DecodePlan(kernels, dtype, layers, final_norm, head)


# ------------------------------------------------------------------------------ the step


def _attention(
    k: CpuKernels,
    layer: LayerPlan,
    qkv: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    cache: tuple[torch.Tensor, torch.Tensor],
    pos: int,
) -> torch.Tensor:
    start = 0 if layer.window is None else max(0, pos + 1 - layer.window)
    # bf16 attends with PyTorch's SDPA, as the module path does, so rounding is identical
    exact_sdpa = qkv.dtype == torch.bfloat16
    out = k.attention_decode(
        qkv,
        cos,
        sin,
        layer.q_norm,
        layer.k_norm,
        layer.qk_eps,
        layer.qk_zero_centered,
        cache[0],
        cache[1],
        pos,
        start,
        layer.heads,
        layer.kv_heads,
        layer.head_dim,
        layer.scale,
        layer.softcap,
        attend=not exact_sdpa,
    )
    if not exact_sdpa:
        return out
    keys, values = cache[0][:, :, start : pos + 1], cache[1][:, :, start : pos + 1]
    if pos + 1 - start <= _GROUPED_SDPA_MAX:
        # the query heads of one kv head as rows of one query: the same numbers as
        # grouped-query SDPA (checked up to this length), a third of the time
        q = out.view(1, layer.kv_heads, layer.heads // layer.kv_heads, layer.head_dim)
        return F.scaled_dot_product_attention(q, keys, values, scale=layer.scale).view(-1)
    q = out.view(1, layer.heads, 1, layer.head_dim)
    gqa = layer.kv_heads != layer.heads
    return F.scaled_dot_product_attention(q, keys, values, scale=layer.scale, enable_gqa=gqa).view(
        -1
    )


def _project_add(
    k: CpuKernels,
    x: torch.Tensor,
    h: torch.Tensor,
    proj: Proj,
    post_norm: Norm | None,
    activation: tuple[str, bool] | None = None,
) -> torch.Tensor:
    """``x + post_norm(proj(act(h)))``; without a post-norm the add happens in the GEMV."""
    if post_norm is None:
        return k.linear(h, *proj, residual=x, activation=activation)
    return x + k.rms_norm(k.linear(h, *proj, activation=activation), *post_norm)


def decode_step(
    plan: DecodePlan,
    x: torch.Tensor,
    input_pos: torch.Tensor,
    kv_cache: KVCache,
    tables: list[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, KVCache]:
    """One embedded token ``x`` ([1, 1, hidden]) at cache slot ``input_pos[0]``; updates
    ``kv_cache`` in place and returns logits [1, 1, vocab] (before the final soft-cap)."""
    k = plan.kernels
    pos = int(input_pos[0])
    x = x.reshape(-1)
    for layer, cache in zip(plan.layers, kv_cache, strict=True):
        cos, sin = tables[layer.rope]
        qkv = k.linear(x, *layer.qkv, norm=layer.attn_norm)
        attended = _attention(k, layer, qkv, cos, sin, cache, pos)
        x = _project_add(k, x, attended, layer.o, layer.attn_post_norm)
        h = k.linear(x, *layer.gate_up, norm=layer.ffn_norm)
        x = _project_add(k, x, h, layer.down, layer.ffn_post_norm, layer.activation)
    return k.linear(x, plan.head, norm=plan.final_norm).reshape(1, 1, -1), kv_cache


def decode(
    model: DecoderModel, tokens: torch.Tensor, input_pos: torch.Tensor, kv_cache: KVCache
) -> tuple[torch.Tensor, KVCache]:
    """One eager decoding step of ``tokens`` [B, 1] at cache slot ``input_pos[0]``, updating
    ``kv_cache`` in place: ``model(tokens, input_pos, kv_cache, end=pos + 1, inplace=True)``,
    through the kernels when this step qualifies (one row, a cache they can write, not
    while tracing), else through the model's modules."""
    pos = int(input_pos[0])
    plan = None
    if tokens.shape[1] == 1 and not torch.compiler.is_compiling():
        plan = plan_for(model, tokens, kv_cache, pos)
    if plan is None:
        return model(tokens, input_pos, kv_cache, end=pos + 1, inplace=True)
    x = model.embed_tokens(tokens)
    logits, cache = decode_step(plan, x, input_pos, kv_cache, model.rope_tables(input_pos, x.dtype))
    return model.soft_cap(logits), cache
