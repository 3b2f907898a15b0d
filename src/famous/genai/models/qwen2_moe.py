"""Qwen1.5-MoE / Qwen2-MoE: Qwen2's attention (q/k/v biases) with routed experts plus one
shared expert that every token goes through, scaled by ``sigmoid(shared_expert_gate(x))``.

Routing: softmax over all experts, the top ``num_experts_per_tok``, renormalized only when
``norm_topk_prob``; dense blocks as in Qwen3-MoE (``mlp_only_layers``,
``decoder_sparse_step``). GGUF: llama.cpp's ``qwen2moe`` (every block sparse, never
renormalized: ``famous.genai.export.gguf_families``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from famous.genai.config import ModelConfig
from famous.genai.models import Family
from famous.genai.models._common import (
    QWEN_EXPERTS,
    TINY_DECODER,
    decoder_config,
    hf_decoder_weight_map,
    moe_weight_map,
    qwen_experts,
    with_sparse_blocks,
)
from famous.genai.weight_map import WeightMap


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    cfg = decoder_config(hf, qkv_bias=bool(hf.get("qkv_bias", True)))
    shared = int(hf["shared_expert_intermediate_size"])
    moe = replace(qwen_experts(hf), shared_intermediate_size=shared, shared_gate=True)
    return with_sparse_blocks(cfg, hf, moe)


def weight_map(cfg: ModelConfig) -> WeightMap:
    return moe_weight_map(
        cfg,
        hf_decoder_weight_map(cfg),
        block="mlp",
        router="gate",
        experts=QWEN_EXPERTS,
        shared="shared_expert",
        shared_gate="shared_expert_gate",
    )


FAMILY = Family(
    name="qwen2_moe",
    model_types=("qwen2_moe",),
    config_from_hf=config_from_hf,
    weight_map=weight_map,
    fake_hf_configs={
        "qwen2_moe": {
            **TINY_DECODER,
            "model_type": "qwen2_moe",
            "architectures": ["Qwen2MoeForCausalLM"],
            "moe_intermediate_size": 32,
            "shared_expert_intermediate_size": 96,
            "num_experts": 8,
            "num_experts_per_tok": 2,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0,
            "tie_word_embeddings": False,
        },
    },
)
