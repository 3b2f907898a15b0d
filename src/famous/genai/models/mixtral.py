"""Mixtral 8x7B / 8x22B: Mistral's attention with a sparse mixture of SwiGLU experts.

Every block routes: softmax over the ``num_local_experts`` router logits, the top
``num_experts_per_tok`` renormalized to sum to 1. The checkpoint stores expert ``e`` of
block ``i`` as ``block_sparse_moe.experts.{e}.w1`` (gate), ``w3`` (up) and ``w2`` (down).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from famous.genai.config import ModelConfig, MoEConfig
from famous.genai.hf_config import activation_from_hf
from famous.genai.models import Family
from famous.genai.models._common import (
    TINY_DECODER,
    decoder_config,
    hf_decoder_weight_map,
    moe_weight_map,
)
from famous.genai.weight_map import WeightMap


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    cfg = decoder_config(hf, window_for={"full_attention": hf.get("sliding_window")})
    moe = MoEConfig(
        num_experts=int(hf["num_local_experts"]),
        top_k=int(hf["num_experts_per_tok"]),
        intermediate_size=int(hf["intermediate_size"]),
        activation=activation_from_hf(hf.get("hidden_act")),
        normalize_top_k=True,
    )
    return replace(cfg, blocks=tuple(replace(b, moe=moe) for b in cfg.blocks))


def weight_map(cfg: ModelConfig) -> WeightMap:
    return moe_weight_map(
        cfg,
        hf_decoder_weight_map(cfg),
        block="block_sparse_moe",
        router="gate",
        experts=("w1", "w3", "w2"),
    )


_SMALL = {
    **TINY_DECODER,
    "model_type": "mixtral",
    "architectures": ["MixtralForCausalLM"],
    "intermediate_size": 96,
    "num_local_experts": 4,
    "num_experts_per_tok": 2,
    "rms_norm_eps": 1e-5,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": False,
}

FAMILY = Family(
    name="mixtral",
    model_types=("mixtral",),
    config_from_hf=config_from_hf,
    weight_map=weight_map,
    fake_hf_configs={"mixtral": _SMALL},
    # no realistic shape: the slow bf16 parity test compares RMS errors that move smoothly
    # with rounding, but top-k routing is discontinuous (a router near-tie rounded the
    # other way picks another expert for one token); fp32 parity is exact
)
