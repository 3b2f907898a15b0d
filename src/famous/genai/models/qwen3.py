"""Qwen3 (dense): a Llama with an RMSNorm on each query and key head, explicit head_dim."""

from __future__ import annotations

from typing import Any

from famous.genai.config import ModelConfig, NormConfig
from famous.genai.models import Family
from famous.genai.models._common import decoder_config, hf_decoder_weight_map
from famous.genai.weight_map import WeightMap


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    bias = bool(hf.get("attention_bias", False))
    window = hf.get("sliding_window") if hf.get("use_sliding_window") else None
    return decoder_config(
        hf,
        qkv_bias=bias,
        o_bias=bias,
        qk_norm=NormConfig("rms", float(hf.get("rms_norm_eps", 1e-6))),
        window_for={"sliding_attention": window},
    )


def weight_map(cfg: ModelConfig) -> WeightMap:
    return hf_decoder_weight_map(cfg)


FAMILY = Family(
    name="qwen3",
    model_types=("qwen3",),
    config_from_hf=config_from_hf,
    weight_map=weight_map,
    fake_hf_configs={
        "qwen3": {
            "model_type": "qwen3",
            "architectures": ["Qwen3ForCausalLM"],
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 32,
            "vocab_size": 256,
            "max_position_embeddings": 512,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0,
            "tie_word_embeddings": True,
            "hidden_act": "silu",
            "bos_token_id": 1,
            "eos_token_id": 2,
        },
    },
    realistic_hf_configs={
        # Qwen3-0.6B widths, 2 of its 28 layers
        "qwen3": {
            "model_type": "qwen3",
            "architectures": ["Qwen3ForCausalLM"],
            "hidden_size": 1024,
            "intermediate_size": 3072,
            "num_hidden_layers": 2,
            "num_attention_heads": 16,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "vocab_size": 8192,
            "max_position_embeddings": 40960,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0,
            "tie_word_embeddings": True,
            "hidden_act": "silu",
            "bos_token_id": 1,
            "eos_token_id": 2,
        },
    },
)
