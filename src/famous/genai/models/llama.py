"""Llama 2 / 3 / 3.1 / 3.2, SmolLM2, TinyLlama and Mistral.

The reference decoder: RMSNorm, SwiGLU, RoPE (Llama 3 frequency scaling where set), GQA.
Mistral is the same network with a sliding window on every layer.
"""

from __future__ import annotations

from typing import Any

from famous.genai.config import ModelConfig
from famous.genai.models import Family
from famous.genai.models._common import TINY_DECODER, decoder_config, hf_decoder_weight_map
from famous.genai.weight_map import WeightMap


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    bias = bool(hf.get("attention_bias", False))
    window = hf.get("sliding_window") if hf["model_type"] == "mistral" else None
    return decoder_config(
        hf,
        qkv_bias=bias,
        o_bias=bias,
        window_for={"full_attention": window},
    )


def weight_map(cfg: ModelConfig) -> WeightMap:
    return hf_decoder_weight_map(cfg)


_SMALL = {
    **TINY_DECODER,
    "rms_norm_eps": 1e-5,
}

FAMILY = Family(
    name="llama",
    model_types=("llama", "mistral"),
    config_from_hf=config_from_hf,
    weight_map=weight_map,
    fake_hf_configs={
        # Llama 3.2-like: tied embeddings, llama3 RoPE scaling
        "llama": {
            **_SMALL,
            "model_type": "llama",
            "architectures": ["LlamaForCausalLM"],
            "tie_word_embeddings": True,
            "rope_theta": 500000.0,
            "rope_scaling": {
                "rope_type": "llama3",
                "factor": 32.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
        },
        "mistral": {
            **_SMALL,
            "model_type": "mistral",
            "architectures": ["MistralForCausalLM"],
            "sliding_window": 16,
            "head_dim": 16,
        },
    },
    realistic_hf_configs={
        # SmolLM2-135M widths, 2 of its 30 layers, a smaller vocabulary
        "llama": {
            "model_type": "llama",
            "architectures": ["LlamaForCausalLM"],
            "hidden_size": 576,
            "intermediate_size": 1536,
            "num_hidden_layers": 2,
            "num_attention_heads": 9,
            "num_key_value_heads": 3,
            "vocab_size": 8192,
            "max_position_embeddings": 8192,
            "rms_norm_eps": 1e-5,
            "rope_theta": 100000.0,
            "tie_word_embeddings": True,
            "hidden_act": "silu",
            "bos_token_id": 1,
            "eos_token_id": 2,
        },
        # Mistral-style GQA with a window shorter than the test sequence
        "mistral": {
            "model_type": "mistral",
            "architectures": ["MistralForCausalLM"],
            "hidden_size": 512,
            "intermediate_size": 1408,
            "num_hidden_layers": 2,
            "num_attention_heads": 8,
            "num_key_value_heads": 2,
            "head_dim": 64,
            "vocab_size": 8192,
            "max_position_embeddings": 4096,
            "sliding_window": 48,
            "rms_norm_eps": 1e-5,
            "rope_theta": 1000000.0,
            "hidden_act": "silu",
            "bos_token_id": 1,
            "eos_token_id": 2,
        },
    },
)
