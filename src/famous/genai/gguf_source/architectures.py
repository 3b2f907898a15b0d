"""What a GGUF architecture is in Hub terms: its ``config.json`` and its tensor names.

A GGUF names its architecture (``general.architecture``) and keeps the hyper-parameters
under that prefix (``llama.block_count`` …). famous turns them into the ``config.json``
fields its families already read, and each GGUF tensor name into the Hub name the family's
weight map expects, so a GGUF loads through the same weight maps as safetensors.

Two layout differences are undone per tensor (``Fix``):

* ``unpermute``: llama.cpp runs the ``llama`` architecture with interleaved-pair RoPE, so
  its converter re-orders each q/k head's rows from the Hub's half-split layout to
  interleaved pairs; famous puts them back (``permute_rope``).
* ``minus_one``: Gemma's converter stores each RMSNorm weight as ``1 + w``; the Hub stores
  ``w`` (famous's zero-centered norm adds the one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from famous.genai.errors import CheckpointError, UnsupportedModelError
from famous.genai.gguf_source.family_config import gemma_fields, phi3_fields
from famous.genai.gguf_source.rope_freqs import llama3_rope_scaling

Fix = Literal["unpermute_q", "unpermute_k", "minus_one"]

# GGUF block tensor → Hub tensor (the part after ``blk.N.`` / ``model.layers.N.``)
_BLOCK = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GLOBAL = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
# Gemma 2 / 3 name their four block norms after where they sit
_GEMMA_NORMS = {
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
}
# Phi-3 stores q/k/v and gate/up fused, as the Hub does
_PHI3_FUSED = {"attn_qkv": "self_attn.qkv_proj", "ffn_up": "mlp.gate_up_proj"}


@dataclass(frozen=True)
class Architecture:
    """One GGUF architecture famous reads."""

    gguf_name: str
    model_type: str  # the Hub's model_type, which picks famous's family
    activation: str = "silu"
    unpermute_qk: bool = False
    norm_minus_one: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # fixed config.json fields
    blocks: dict[str, str] = field(default_factory=dict)  # block names beyond _BLOCK's

    def block_name(self, part: str) -> str | None:
        return self.blocks.get(part) or _BLOCK.get(part)


ARCHITECTURES = {
    a.gguf_name: a
    for a in (
        Architecture("llama", "llama", unpermute_qk=True),  # rope_freqs: Llama 3 scaling
        Architecture("qwen2", "qwen2"),
        Architecture("qwen3", "qwen3"),
        Architecture(
            "gemma",
            "gemma",
            activation="gelu_pytorch_tanh",
            norm_minus_one=True,
        ),
        Architecture(
            "gemma2",
            "gemma2",
            activation="gelu_pytorch_tanh",
            norm_minus_one=True,
            blocks=_GEMMA_NORMS,
        ),
        Architecture(
            "gemma3",
            "gemma3_text",
            activation="gelu_pytorch_tanh",
            norm_minus_one=True,
            blocks=_GEMMA_NORMS,
        ),
        Architecture("phi3", "phi3", blocks=_PHI3_FUSED),
    )
}


def architecture(name: str, file: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise UnsupportedModelError(
            f"{file}: GGUF architecture {name!r} is not one famous loads "
            f"(supported: {', '.join(sorted(ARCHITECTURES))}); llama.cpp can serve it"
        )
    return ARCHITECTURES[name]


def _need(meta: dict[str, Any], key: str, file: str) -> Any:
    if key not in meta:
        raise CheckpointError(f"{file}: GGUF metadata lacks {key!r}")
    return meta[key]


def hf_config(
    arch: Architecture,
    meta: dict[str, Any],
    tensors: dict[str, tuple[int, ...]],
    file: str,
    rope_freqs: list[float] | None = None,
    factors: dict[str, list[float]] | None = None,
) -> dict[str, Any]:
    """The ``config.json`` a Hub checkpoint of these weights would carry (``rope_freqs``:
    the values of that tensor, where the file has one; ``factors``: Phi-3's LongRoPE
    tensors by name)."""
    p = f"{arch.gguf_name}."
    heads = int(_need(meta, p + "attention.head_count", file))
    hidden = int(_need(meta, p + "embedding_length", file))
    head_dim = int(meta.get(p + "attention.key_length") or hidden // heads)
    cfg: dict[str, Any] = {
        "model_type": arch.model_type,
        "hidden_size": hidden,
        "intermediate_size": int(_need(meta, p + "feed_forward_length", file)),
        "num_hidden_layers": int(_need(meta, p + "block_count", file)),
        "num_attention_heads": heads,
        "num_key_value_heads": int(meta.get(p + "attention.head_count_kv") or heads),
        "head_dim": head_dim,
        "rms_norm_eps": float(meta.get(p + "attention.layer_norm_rms_epsilon", 1e-6)),
        "rope_theta": float(meta.get(p + "rope.freq_base", 10000.0)),
        "max_position_embeddings": int(meta.get(p + "context_length", 2048)),
        "vocab_size": int(_need(tensors, "token_embd.weight", file)[0]),
        "hidden_act": arch.activation,
        "tie_word_embeddings": "output.weight" not in tensors,
        "bos_token_id": meta.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": meta.get("tokenizer.ggml.eos_token_id"),
        "pad_token_id": meta.get("tokenizer.ggml.padding_token_id"),
        "attention_bias": "blk.0.attn_q.bias" in tensors,
        **arch.extra,
    }
    rot = meta.get(p + "rope.dimension_count")
    if rot and int(rot) != head_dim:
        cfg["partial_rotary_factor"] = int(rot) / head_dim
    scaling = meta.get(p + "rope.scaling.type")
    if rope_freqs is not None:
        found = llama3_rope_scaling(rope_freqs, cfg["rope_theta"], int(rot or head_dim), file)
        if found:
            cfg["rope_scaling"] = found
    elif scaling == "linear":
        factor = float(meta.get(p + "rope.scaling.factor", 1.0))
        cfg["rope_scaling"] = {"rope_type": "linear", "factor": factor}
    elif scaling not in (None, "none"):
        raise UnsupportedModelError(
            f"{file}: RoPE scaling {scaling!r} is not one famous reads from a GGUF "
            "(supported: none, linear)"
        )
    if arch.gguf_name in ("gemma2", "gemma3"):
        cfg.update(gemma_fields(arch.gguf_name, meta, cfg, file))
    elif arch.gguf_name == "phi3":
        cfg.update(phi3_fields(meta, cfg, factors or {}, file))
    return cfg


_BLOCK_RE = re.compile(r"^blk\.(\d+)\.([a-z_0-9]+)\.(weight|bias)$")
_GLOBAL_RE = re.compile(r"^([a-z_]+)\.(weight|bias)$")


def hub_name(arch: Architecture, gguf_name: str) -> tuple[str, Fix | None] | None:
    """The Hub name of a GGUF tensor and the fix it needs; None when famous has no name."""
    m = _BLOCK_RE.match(gguf_name)
    if m:
        i, part, kind = m.groups()
        hub = arch.block_name(part)
        if hub is None:
            return None
        fix: Fix | None = None
        if arch.unpermute_qk and part in ("attn_q", "attn_k"):
            fix = "unpermute_q" if part == "attn_q" else "unpermute_k"
        elif arch.norm_minus_one and part.endswith("norm"):
            fix = "minus_one"
        return f"model.layers.{i}.{hub}.{kind}", fix
    m = _GLOBAL_RE.match(gguf_name)
    if m and m.group(1) in _GLOBAL:
        part, kind = m.groups()
        fix = "minus_one" if arch.norm_minus_one and part == "output_norm" else None
        return f"{_GLOBAL[part]}.{kind}", fix
    return None
