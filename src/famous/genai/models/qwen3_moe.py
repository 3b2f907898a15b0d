"""Qwen3-MoE (Qwen3-30B-A3B and kin): Qwen3's attention (an RMSNorm on each query and key
head) with a sparse mixture of experts in place of the dense feed-forward.

Routing: softmax over all experts, the top ``num_experts_per_tok``, renormalized when
``norm_topk_prob``. A block is dense (``intermediate_size``) when listed in
``mlp_only_layers`` or off the ``decoder_sparse_step`` grid, as in the reference.
"""

from __future__ import annotations

from typing import Any

from famous.genai.config import ModelConfig, NormConfig
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
    bias = bool(hf.get("attention_bias", False))
    window = hf.get("sliding_window") if hf.get("use_sliding_window") else None
    cfg = decoder_config(
        hf,
        qkv_bias=bias,
        o_bias=bias,
        qk_norm=NormConfig("rms", float(hf.get("rms_norm_eps", 1e-6))),
        window_for={"sliding_attention": window},
    )
    moe = qwen_experts(hf)
    return with_sparse_blocks(cfg, hf, moe)


def weight_map(cfg: ModelConfig) -> WeightMap:
    return moe_weight_map(
        cfg,
        hf_decoder_weight_map(cfg),
        block="mlp",
        router="gate",
        experts=QWEN_EXPERTS,
    )


_SMALL = {
    **TINY_DECODER,
    "model_type": "qwen3_moe",
    "architectures": ["Qwen3MoeForCausalLM"],
    "moe_intermediate_size": 32,
    "num_experts": 8,
    "num_experts_per_tok": 2,
    "norm_topk_prob": True,
    "head_dim": 16,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": False,
}

FAMILY = Family(
    name="qwen3_moe",
    model_types=("qwen3_moe",),
    config_from_hf=config_from_hf,
    weight_map=weight_map,
    fake_hf_configs={"qwen3_moe": _SMALL},
    # no realistic shape: the slow bf16 parity test compares RMS errors that move smoothly
    # with rounding, but top-k routing is discontinuous (a router near-tie rounded the
    # other way picks another expert for one token); fp32 parity is exact
)
