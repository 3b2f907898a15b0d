"""OLMo 2 (AI2): a Llama with post-norms only and q/k norms over the whole projections.

Each block is ``x + post_attention_layernorm(attn(x))`` then ``x + post_feedforward_layernorm
(mlp(x))``: no norm before either sub-layer. The query and key RMSNorms act on the full
q and k projections (all heads at once, before the split into heads), not per head.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from famous.genai.config import ModelConfig, NormConfig
from famous.genai.models import Family
from famous.genai.models._common import TINY_DECODER, decoder_config, hf_decoder_weight_map
from famous.genai.weight_map import WeightMap


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    norm = NormConfig("rms", float(hf.get("rms_norm_eps", 1e-6)))
    bias = bool(hf.get("attention_bias", False))
    cfg = decoder_config(hf, qkv_bias=bias, o_bias=bias, qk_norm=norm, post_norms=True)
    blocks = tuple(
        replace(
            b,
            attention=replace(b.attention, qk_norm_full=True),
            attn_norm=None,
            ffn_norm=None,
        )
        for b in cfg.blocks
    )
    return replace(cfg, blocks=blocks)


def weight_map(cfg: ModelConfig) -> WeightMap:
    return hf_decoder_weight_map(cfg)


_SMALL = {
    **TINY_DECODER,
    "model_type": "olmo2",
    "architectures": ["Olmo2ForCausalLM"],
    "rms_norm_eps": 1e-6,
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "pad_token_id": 0,
}

FAMILY = Family(
    name="olmo2",
    model_types=("olmo2",),
    config_from_hf=config_from_hf,
    weight_map=weight_map,
    fake_hf_configs={"olmo2": _SMALL},
    realistic_hf_configs={
        # OLMo-2-0425-1B's widths, 2 of its 16 layers, a smaller vocabulary
        "olmo2": {
            **_SMALL,
            "hidden_size": 2048,
            "intermediate_size": 8192,
            "num_attention_heads": 16,
            "num_key_value_heads": 16,
            "vocab_size": 8192,
            "max_position_embeddings": 4096,
        },
    },
)
