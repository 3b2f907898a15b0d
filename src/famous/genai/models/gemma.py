"""Gemma 1, 2 and 3 (text).

Shared: zero-centered RMSNorm (scale ``1 + w``), embeddings scaled by ``sqrt(hidden)``,
GeGLU (tanh GELU), tied LM head. Gemma 2 adds post-norms around attention and the
feed-forward, ``query_pre_attn_scalar``, attention- and final-logit soft-capping, and
alternating sliding-window layers. Gemma 3 adds q/k norms, five sliding layers per full one,
and a separate RoPE base for the sliding layers.
"""

from __future__ import annotations

from typing import Any

from famous.genai.config import ModelConfig, NormConfig
from famous.genai.hf_config import rope_from_hf
from famous.genai.models import Family
from famous.genai.models._common import decoder_config, hf_decoder_weight_map
from famous.genai.weight_map import WeightMap


def _layer_types(hf: dict[str, Any]) -> list[str]:
    n = hf["num_hidden_layers"]
    if hf.get("layer_types"):
        return list(hf["layer_types"])
    if hf["model_type"] == "gemma2":
        return ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n)]
    if hf["model_type"] == "gemma3_text":
        p = int(hf.get("sliding_window_pattern") or hf.get("_sliding_window_pattern") or 6)
        return ["sliding_attention" if (i + 1) % p else "full_attention" for i in range(n)]
    return ["full_attention"] * n


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    mt = hf["model_type"]
    hf = {**hf, "layer_types": _layer_types(hf)}
    norm = NormConfig("rms", float(hf.get("rms_norm_eps", 1e-6)), zero_centered=True)
    scalar = hf.get("query_pre_attn_scalar")
    rope_for = None
    if mt == "gemma3_text":
        rp = hf.get("rope_parameters") or {}
        if "sliding_attention" in rp:
            rope_for = {t: rope_from_hf(hf, t) for t in ("sliding_attention", "full_attention")}
        else:
            local = {
                **hf,
                "rope_theta": hf.get("rope_local_base_freq", 10000.0),
                "rope_scaling": None,
            }
            rope_for = {
                "sliding_attention": rope_from_hf(local),
                "full_attention": rope_from_hf(hf),
            }
    bias = bool(hf.get("attention_bias", False))
    return decoder_config(
        hf,
        qkv_bias=bias,
        o_bias=bias,
        norm=norm,
        qk_norm=norm if mt == "gemma3_text" else None,
        post_norms=mt != "gemma",
        attn_scale=float(scalar) ** -0.5 if scalar and mt != "gemma" else None,
        window_for={"sliding_attention": hf.get("sliding_window")},
        rope_for=rope_for,
        embedding_scale=float(hf["hidden_size"]) ** 0.5,
        activation=hf.get("hidden_activation") or "gelu_pytorch_tanh",
        tie_default=True,
    )


def weight_map(cfg: ModelConfig) -> WeightMap:
    if cfg.model_type == "gemma":
        return hf_decoder_weight_map(cfg)
    return hf_decoder_weight_map(cfg, ffn_norm_name="pre_feedforward_layernorm")


_SMALL = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "vocab_size": 256,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-6,
    "hidden_activation": "gelu_pytorch_tanh",
    "tie_word_embeddings": True,
    "bos_token_id": 2,
    "eos_token_id": 1,
    "pad_token_id": 0,
}

_REAL = {  # Gemma 3 270M widths (head_dim 256, one kv head), a few layers, smaller vocab
    "hidden_size": 640,
    "intermediate_size": 2048,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "head_dim": 256,
    "vocab_size": 8192,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "hidden_activation": "gelu_pytorch_tanh",
    "tie_word_embeddings": True,
    "bos_token_id": 2,
    "eos_token_id": 1,
    "pad_token_id": 0,
}

FAMILY = Family(
    name="gemma",
    model_types=("gemma", "gemma2", "gemma3_text"),
    config_from_hf=config_from_hf,
    weight_map=weight_map,
    fake_hf_configs={
        "gemma": {**_SMALL, "model_type": "gemma", "architectures": ["GemmaForCausalLM"]},
        "gemma2": {
            **_SMALL,
            "model_type": "gemma2",
            "architectures": ["Gemma2ForCausalLM"],
            "query_pre_attn_scalar": 16,
            "attn_logit_softcapping": 50.0,
            "final_logit_softcapping": 30.0,
            "sliding_window": 16,
            "layer_types": ["sliding_attention", "full_attention"],
        },
        "gemma3_text": {
            **_SMALL,
            "model_type": "gemma3_text",
            "architectures": ["Gemma3ForCausalLM"],
            "query_pre_attn_scalar": 16,
            "sliding_window": 16,
            "layer_types": ["sliding_attention", "full_attention"],
            "rope_parameters": {
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
            },
        },
    },
    realistic_hf_configs={
        "gemma": {
            **_REAL,
            "model_type": "gemma",
            "architectures": ["GemmaForCausalLM"],
            "num_hidden_layers": 2,
        },
        "gemma2": {
            **_REAL,
            "model_type": "gemma2",
            "architectures": ["Gemma2ForCausalLM"],
            "num_hidden_layers": 2,
            "query_pre_attn_scalar": 256,
            "attn_logit_softcapping": 50.0,
            "final_logit_softcapping": 30.0,
            "sliding_window": 48,
            "layer_types": ["sliding_attention", "full_attention"],
        },
        "gemma3_text": {
            **_REAL,
            "model_type": "gemma3_text",
            "architectures": ["Gemma3ForCausalLM"],
            "num_hidden_layers": 2,
            "query_pre_attn_scalar": 256,
            "sliding_window": 48,
            "layer_types": ["sliding_attention", "full_attention"],
            "rope_parameters": {
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                "full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
            },
        },
    },
)
