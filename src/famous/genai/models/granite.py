"""IBM Granite 3.x (dense): a Llama with four scalar multipliers from config.json.

``embedding_multiplier`` scales the token embeddings, ``residual_multiplier`` each
attention and feed-forward output before it joins the residual stream,
``attention_multiplier`` is the softmax scale (instead of head_dim ** -0.5), and the
logits are divided by ``logits_scaling``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from famous.genai.config import ModelConfig
from famous.genai.models import Family
from famous.genai.models._common import TINY_DECODER, decoder_config, hf_decoder_weight_map
from famous.genai.weight_map import WeightMap


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    bias = bool(hf.get("attention_bias", False))
    cfg = decoder_config(
        hf,
        qkv_bias=bias,
        o_bias=bias,
        attn_scale=float(hf.get("attention_multiplier", 1.0)),
        embedding_scale=float(hf.get("embedding_multiplier", 1.0)),
    )
    residual = float(hf.get("residual_multiplier", 1.0))
    return replace(
        cfg,
        blocks=tuple(replace(b, residual_scale=residual) for b in cfg.blocks),
        logits_scaling=float(hf.get("logits_scaling", 1.0)),
    )


def weight_map(cfg: ModelConfig) -> WeightMap:
    return hf_decoder_weight_map(cfg)


_SMALL = {
    **TINY_DECODER,
    "model_type": "granite",
    "architectures": ["GraniteForCausalLM"],
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
    # Granite 3.x's values (attention_multiplier = 1 / head_dim here)
    "embedding_multiplier": 12.0,
    "residual_multiplier": 0.22,
    "attention_multiplier": 0.0625,
    "logits_scaling": 8.0,
    "pad_token_id": 0,
}

FAMILY = Family(
    name="granite",
    model_types=("granite",),
    config_from_hf=config_from_hf,
    weight_map=weight_map,
    fake_hf_configs={"granite": _SMALL},
    realistic_hf_configs={
        # granite-3.1-2b's widths, 2 of its 40 layers, a smaller vocabulary
        "granite": {
            **_SMALL,
            "hidden_size": 2048,
            "intermediate_size": 8192,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "vocab_size": 8192,
            "max_position_embeddings": 4096,
            "attention_multiplier": 0.015625,
        },
    },
)
