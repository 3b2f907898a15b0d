"""Qwen2 / Qwen2.5: a Llama with biases on the q/k/v projections (none on o)."""

from __future__ import annotations

from typing import Any

from famous.genai.config import ModelConfig
from famous.genai.models import Family
from famous.genai.models._common import (
    TINY_DECODER,
    decoder_config,
    hf_decoder_weight_map,
    layer_types,
)
from famous.genai.weight_map import WeightMap


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    if not hf.get("layer_types") and hf.get("use_sliding_window"):
        first = int(hf.get("max_window_layers", 0))
        hf = {
            **hf,
            "layer_types": [
                "sliding_attention" if i >= first else "full_attention"
                for i in range(hf["num_hidden_layers"])
            ],
        }
    window = hf.get("sliding_window") if "sliding_attention" in layer_types(hf) else None
    return decoder_config(hf, qkv_bias=True, window_for={"sliding_attention": window})


def weight_map(cfg: ModelConfig) -> WeightMap:
    return hf_decoder_weight_map(cfg)


FAMILY = Family(
    name="qwen2",
    model_types=("qwen2",),
    config_from_hf=config_from_hf,
    weight_map=weight_map,
    fake_hf_configs={
        "qwen2": {
            "model_type": "qwen2",
            "architectures": ["Qwen2ForCausalLM"],
            **TINY_DECODER,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0,
            "tie_word_embeddings": False,
        },
    },
    realistic_hf_configs={
        # Qwen2.5-0.5B widths, 2 of its 24 layers
        "qwen2": {
            "model_type": "qwen2",
            "architectures": ["Qwen2ForCausalLM"],
            "hidden_size": 896,
            "intermediate_size": 4864,
            "num_hidden_layers": 2,
            "num_attention_heads": 14,
            "num_key_value_heads": 2,
            "vocab_size": 8192,
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0,
            "tie_word_embeddings": True,
            "hidden_act": "silu",
            "bos_token_id": 1,
            "eos_token_id": 2,
        },
    },
)
