"""The GGUF parts of the families beyond the Llama-shaped core: mixture-of-experts tensors and
counts (``qwen3moe``; Mixtral is llama.cpp's ``llama`` with experts), Granite's multipliers,
and the checks that refuse a model llama.cpp's graph for its architecture would compute
differently — a clear error instead of a file that loads and then runs wrong.

What llama.cpp assumes (its ``src/models/*.cpp``): ``qwen3moe`` and ``llama`` route every
block through experts with softmax → top-k → renormalize and SiLU experts, no shared
expert; ``smollm3`` makes every 4th layer NoPE (``n_no_rope_layer_step = 4``), whatever
config.json says. ``gemma2`` always soft-caps attention and final logits, ties its head to
the embedding, and scales queries by ``head_dim ** -0.5`` (``(hidden / heads) ** -0.5`` at
the 27B's 46 layers; ``gemma3``: 62 layers) whatever ``query_pre_attn_scalar`` says;
``gemma3`` caps no attention logits and runs its sliding layers with an unscaled RoPE
(``rope.freq_base_swa``); ``phi3`` reads a sliding window and then disables it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from famous.genai.config import ModelConfig
from famous.genai.errors import GenAIError

_EXPERT = re.compile(
    r"^(?P<head>.*\.layers\.\d+\.(?:mlp|block_sparse_moe)\.experts)\.(?P<e>\d+)\.(?P<proj>\w+)\.weight$"
)


class FamilyExportError(GenAIError, ValueError):
    """A model whose architecture llama.cpp would run differently from the checkpoint."""


def expert_groups(names: Iterable[str]) -> dict[str, list[str]]:
    """Per-expert tensor names → ``{"….experts.<proj>.weight": names in expert order}``.

    The merged name is the one ``gguf``'s tensor map knows (``ffn_gate_exps`` …); llama.cpp
    wants each projection of a block as one [num_experts, out, in] tensor."""
    found: dict[str, dict[int, str]] = {}
    for name in names:
        m = _EXPERT.match(name)
        if m:
            merged = f"{m['head']}.{m['proj']}.weight"
            found.setdefault(merged, {})[int(m["e"])] = name
    groups = {}
    for merged, by_expert in found.items():
        if sorted(by_expert) != list(range(len(by_expert))):
            raise FamilyExportError(f"{merged}: experts {sorted(by_expert)} are not 0..n-1")
        groups[merged] = [by_expert[e] for e in range(len(by_expert))]
    return groups


def check_exportable(model_type: str, cfg: ModelConfig) -> None:
    """Refuse what llama.cpp's graph for this architecture does not compute."""
    moe = [b.moe for b in cfg.blocks]
    if model_type == "gpt_oss":
        _check_gpt_oss(cfg)
    elif model_type in ("gemma2", "gemma3_text"):
        _check_gemma(model_type, cfg)
    elif model_type == "qwen2_moe":
        _check_qwen2_moe(cfg)
    elif any(moe):
        _refuse_dense_blocks(model_type, cfg)
        m = moe[0]
        assert m is not None
        if m.routing != "softmax_topk" or not m.normalize_top_k:
            raise FamilyExportError(
                f"{model_type}: the top-k expert weights are not renormalized "
                "(norm_topk_prob is false) but llama.cpp renormalizes them for this "
                "architecture; GGUF export refused"
            )
        if m.shared_intermediate_size or m.router_bias or m.activation != "silu":
            raise FamilyExportError(
                f"{model_type}: shared experts, router biases or a non-SiLU expert "
                "activation are not what llama.cpp runs for this architecture"
            )
    if model_type == "smollm3":
        rope = [b.attention.use_rope for b in cfg.blocks]
        llama_cpp = [(i + 1) % 4 != 0 for i in range(len(rope))]
        if rope != llama_cpp:
            raise FamilyExportError(
                f"smollm3: no_rope_layers {[int(r) for r in rope]} differ from what llama.cpp "
                f"runs (every 4th layer NoPE: {[int(r) for r in llama_cpp]}); "
                "GGUF export refused"
            )


def _check_gpt_oss(cfg: ModelConfig) -> None:
    """llama.cpp's gpt-oss graph: experts in every block with its fixed clamped SwiGLU
    (alpha 1.702, limit 7), sliding-window layers first in each pair, an untied head."""
    m = cfg.blocks[0].moe
    if any(b.moe != m for b in cfg.blocks) or m is None:
        raise FamilyExportError("gpt_oss: every block must have the same experts")
    if (m.swiglu_limit, m.swiglu_alpha) != (7.0, 1.702):
        raise FamilyExportError(
            f"gpt_oss: swiglu_limit {m.swiglu_limit} / swiglu_alpha {m.swiglu_alpha} differ "
            "from llama.cpp's fixed 7.0 / 1.702; GGUF export refused"
        )
    sliding = [b.attention.sliding_window is not None for b in cfg.blocks]
    if sliding != [i % 2 == 0 for i in range(len(sliding))]:
        raise FamilyExportError(
            f"gpt_oss: layer types {sliding} (True: sliding) are not llama.cpp's "
            "alternating pattern starting with a sliding layer; GGUF export refused"
        )
    if cfg.tie_word_embeddings:
        raise FamilyExportError("gpt_oss: llama.cpp needs a separate output.weight (untied)")


def _refuse_dense_blocks(model_type: str, cfg: ModelConfig) -> None:
    dense = [i for i, b in enumerate(cfg.blocks) if b.moe is None]
    if dense:
        raise FamilyExportError(
            f"{model_type}: blocks {dense} are dense (mlp_only_layers / decoder_sparse_step) "
            "but llama.cpp routes every block of this architecture through experts; GGUF "
            "export refused"
        )


def _check_qwen2_moe(cfg: ModelConfig) -> None:
    """llama.cpp's qwen2moe graph: experts and one sigmoid-gated shared expert in every
    block, softmax → top-k never renormalized, SiLU, an untied head."""
    _refuse_dense_blocks("qwen2_moe", cfg)
    m = cfg.blocks[0].moe
    assert m is not None
    if m.normalize_top_k:
        raise FamilyExportError(
            "qwen2_moe: norm_topk_prob is true but llama.cpp's qwen2moe never renormalizes "
            "the top-k expert weights; GGUF export refused"
        )
    if not (m.shared_intermediate_size and m.shared_gate) or m.router_bias:
        raise FamilyExportError(
            "qwen2_moe: llama.cpp's qwen2moe needs one gated shared expert per block and no "
            "router bias; GGUF export refused"
        )
    if m.activation != "silu" or cfg.tie_word_embeddings:
        raise FamilyExportError(
            "qwen2_moe: llama.cpp's qwen2moe runs SiLU experts and reads a separate output "
            "head (tie_word_embeddings false); GGUF export refused"
        )


def _check_gemma(model_type: str, cfg: ModelConfig) -> None:
    """What llama.cpp's gemma2 / gemma3 graphs fix: one window, the caps, GeGLU (tanh)."""
    attn = [b.attention for b in cfg.blocks]
    windows = {a.sliding_window for a in attn} - {None}
    if len(windows) > 1:
        raise FamilyExportError(
            f"{model_type}: sliding windows {sorted(windows)} differ between layers; "
            "llama.cpp has one window per model"
        )
    if any(b.feed_forward.activation != "gelu_tanh" for b in cfg.blocks):
        raise FamilyExportError(
            f"{model_type}: hidden_activation is not gelu_pytorch_tanh, the GELU llama.cpp "
            "runs for this architecture; GGUF export refused"
        )
    caps = {a.logit_softcapping for a in attn}
    if model_type == "gemma2":
        if None in caps or cfg.final_logit_softcapping is None:
            raise FamilyExportError(
                "gemma2: attn_logit_softcapping and final_logit_softcapping must both be "
                "set: llama.cpp's gemma2 graph always soft-caps both (50 and 30 when the "
                "GGUF names none); GGUF export refused"
            )
        if not cfg.tie_word_embeddings:
            raise FamilyExportError(
                "gemma2: llama.cpp's gemma2 reads its output head from token_embd; a model "
                "with a separate lm_head (tie_word_embeddings false) is refused"
            )
        return
    if caps != {None}:
        raise FamilyExportError(
            "gemma3_text: attn_logit_softcapping is set but llama.cpp's gemma3 graph never "
            "soft-caps attention logits; GGUF export refused"
        )
    local = {a.rope for a in attn if a.sliding_window is not None}
    if any(r.rope_type != "default" for r in local) or len(local) > 1:
        raise FamilyExportError(
            "gemma3_text: the sliding layers' RoPE is scaled, but llama.cpp runs them with "
            "rope.freq_base_swa alone (no scaling); GGUF export refused"
        )


def llama_cpp_query_scale(cfg: ModelConfig) -> float:
    """The query scale llama.cpp's gemma2 / gemma3 graphs apply (they ignore
    ``query_pre_attn_scalar``): ``(hidden / heads) ** -0.5`` for the 27B layer counts."""
    a0 = cfg.blocks[0].attention
    big = {"gemma2": 46, "gemma3_text": 62}.get(cfg.model_type) == cfg.num_hidden_layers
    return (cfg.hidden_size / a0.num_attention_heads if big else a0.head_dim) ** -0.5


def query_scale_fold(cfg: ModelConfig) -> float | None:
    """The factor that, folded into the query projection (Gemma 2) or the query norm's
    weight (Gemma 3: a norm would undo it in the projection), makes llama.cpp's fixed query
    scale the checkpoint's own: exact, as RoPE and the norm are linear in that weight.
    None where nothing needs folding."""
    if cfg.model_type not in ("gemma2", "gemma3_text"):
        return None
    c = cfg.blocks[0].attention.softmax_scale / llama_cpp_query_scale(cfg)
    return None if abs(c - 1.0) < 1e-7 else c


def gemma_metadata(writer: Any, cfg: ModelConfig) -> None:
    """Gemma 2 / 3's sliding window (one flag per layer), the local RoPE base and the caps."""
    attn = [b.attention for b in cfg.blocks]
    window = next((a.sliding_window for a in attn if a.sliding_window is not None), None)
    if window is not None:
        writer.add_sliding_window(window)
        local = next(a.rope for a in attn if a.sliding_window is not None)
        writer.add_rope_freq_base_swa(local.rope_theta)
    writer.add_sliding_window_pattern([a.sliding_window is not None for a in attn])
    if attn[0].logit_softcapping is not None:
        writer.add_attn_logit_softcapping(attn[0].logit_softcapping)
    if cfg.final_logit_softcapping is not None:
        writer.add_final_logit_softcapping(cfg.final_logit_softcapping)


def write_family_metadata(writer: Any, model_type: str, cfg: ModelConfig) -> None:
    """Expert counts, Granite's multipliers and Gemma's windows, under llama.cpp's keys."""
    b0 = cfg.blocks[0]
    if b0.moe is not None:
        writer.add_expert_count(b0.moe.num_experts)
        writer.add_expert_used_count(b0.moe.top_k)
        if model_type in ("qwen3_moe", "qwen2_moe"):
            writer.add_expert_feed_forward_length(b0.moe.intermediate_size)
        if model_type == "qwen2_moe" and b0.moe.shared_intermediate_size:
            writer.add_expert_shared_feed_forward_length(b0.moe.shared_intermediate_size)
    if model_type == "granite":
        writer.add_embedding_scale(cfg.embedding_scale or 1.0)
        writer.add_residual_scale(b0.residual_scale or 1.0)
        writer.add_attention_scale(b0.attention.softmax_scale)
        writer.add_logit_scale(cfg.logits_scaling or 1.0)
    if model_type in ("gemma2", "gemma3_text"):
        gemma_metadata(writer, cfg)


# ------------------------------------------------------------------------------ gpt-oss

# transform name → what it does to the checkpoint array (numpy order)
FUSED_TRANSFORMS = ("experts_gate", "experts_up", "experts_transpose", "bias_gate", "bias_up")


def fused_expert_tensors(name: str, shape: tuple[int, ...]) -> list[tuple[str, tuple, str]] | None:
    """gpt-oss stores each block's experts stacked: ``experts.gate_up_proj`` [E, in, 2I] with
    gate and up interleaved on the last dim, ``experts.down_proj`` [E, I, out], and their
    biases. → ``(name gguf's tensor map knows, shape, transform)`` per llama.cpp tensor:
    gate and up split apart and each weight transposed to [E, out, in]."""
    head, sep, tail = name.rpartition(".experts.")
    if not sep:
        return None
    e = f"{head}.experts."
    if tail == "gate_up_proj":
        n, d_in, two_i = shape
        out = (n, two_i // 2, d_in)
        return [
            (f"{e}gate_proj.weight", out, "experts_gate"),
            (f"{e}up_proj.weight", out, "experts_up"),
        ]
    if tail == "gate_up_proj_bias":
        n, two_i = shape
        return [
            (f"{e}gate_proj.bias", (n, two_i // 2), "bias_gate"),
            (f"{e}up_proj.bias", (n, two_i // 2), "bias_up"),
        ]
    if tail == "down_proj":
        n, i, d_out = shape
        return [(f"{e}down_proj.weight", (n, d_out, i), "experts_transpose")]
    if tail == "down_proj_bias":
        return [(f"{e}down_proj.bias", shape, "")]
    return None


def apply_fused(transform: str, arr: Any) -> Any:
    import numpy as np

    if transform in ("experts_gate", "experts_up", "experts_transpose"):
        arr = arr.swapaxes(-1, -2)
    if transform in ("experts_gate", "bias_gate"):
        arr = arr[:, 0::2]
    elif transform in ("experts_up", "bias_up"):
        arr = arr[:, 1::2]
    return np.ascontiguousarray(arr)


def gpt_oss_metadata(writer: Any, cfg: ModelConfig) -> list[str]:
    """Sliding window, expert width and YaRN under llama.cpp's keys; returns warnings."""
    import gguf

    a0 = cfg.blocks[0].attention
    window = next(b.attention.sliding_window for b in cfg.blocks if b.attention.sliding_window)
    writer.add_sliding_window(window)
    writer.add_expert_feed_forward_length(cfg.blocks[0].moe.intermediate_size)
    rope = a0.rope
    warnings = []
    if rope.rope_type == "yarn":
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(rope.factor)
        writer.add_rope_scaling_orig_ctx_len(rope.original_max_position_embeddings)
        writer.add_rope_scaling_yarn_beta_fast(rope.beta_fast)
        writer.add_rope_scaling_yarn_beta_slow(rope.beta_slow)
        if not rope.truncate:
            warnings.append(
                "YaRN with truncate=false: llama.cpp always rounds the correction range to "
                "whole dimensions, so its RoPE differs slightly from transformers' here"
            )
    return warnings
