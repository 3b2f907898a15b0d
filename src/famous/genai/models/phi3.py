"""Phi-3 / Phi-3.5 (mini): q/k/v and gate/up are stored fused; optional partial rotary,
LongRoPE for the 128k variants, a sliding window on every layer."""

from __future__ import annotations

from typing import Any

from famous.genai.config import ModelConfig
from famous.genai.models import Family
from famous.genai.models._common import TINY_DECODER, decoder_config, hf_decoder_weight_map
from famous.genai.weight_map import WeightMap


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    # transformers' Phi3Config defaults the pretraining length to 4096 and lets it win over
    # rope_scaling's own original_max_position_embeddings
    hf = {"original_max_position_embeddings": 4096, **hf}
    return decoder_config(hf, window_for={"full_attention": hf.get("sliding_window")})


def weight_map(cfg: ModelConfig) -> WeightMap:
    return hf_decoder_weight_map(cfg, fused_qkv=True, fused_gate_up=True)


FAMILY = Family(
    name="phi3",
    model_types=("phi3",),
    config_from_hf=config_from_hf,
    weight_map=weight_map,
    fake_hf_configs={
        "phi3": {
            "model_type": "phi3",
            "architectures": ["Phi3ForCausalLM"],
            **TINY_DECODER,
            "original_max_position_embeddings": 512,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "partial_rotary_factor": 0.5,
            "sliding_window": 24,
            "tie_word_embeddings": False,
            "pad_token_id": 0,
        },
    },
    realistic_hf_configs={
        # Phi-3-mini's head size (96) and layout at a reduced width
        "phi3": {
            "model_type": "phi3",
            "architectures": ["Phi3ForCausalLM"],
            "hidden_size": 768,
            "intermediate_size": 2048,
            "num_hidden_layers": 2,
            "num_attention_heads": 8,
            "num_key_value_heads": 8,
            "vocab_size": 8192,
            "max_position_embeddings": 4096,
            "original_max_position_embeddings": 4096,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "sliding_window": 2047,
            "tie_word_embeddings": False,
            "hidden_act": "silu",
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 0,
        },
    },
)
