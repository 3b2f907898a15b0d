"""SmolLM3 (Hugging Face): a Llama whose every ``no_rope_layer_interval``-th layer is NoPE.

``no_rope_layers[i]`` is 1 where layer ``i`` rotates its queries and keys and 0 where it
uses no position encoding at all (causal mask only); when absent, every 4th layer is NoPE.
With ``use_sliding_window``, the ``sliding_attention`` layers attend within the window.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from famous.genai.config import ModelConfig
from famous.genai.models import Family
from famous.genai.models._common import TINY_DECODER, decoder_config, hf_decoder_weight_map
from famous.genai.weight_map import WeightMap


def rope_layers(hf: dict[str, Any]) -> list[bool]:
    """Per layer: True where it uses RoPE."""
    n = int(hf["num_hidden_layers"])
    flags = hf.get("no_rope_layers")
    if flags is None:
        interval = int(hf.get("no_rope_layer_interval", 4))
        return [(i + 1) % interval != 0 for i in range(n)]
    return [bool(f) for f in flags]


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    bias = bool(hf.get("attention_bias", False))
    window = hf.get("sliding_window") if hf.get("use_sliding_window") else None
    cfg = decoder_config(hf, qkv_bias=bias, o_bias=bias, window_for={"sliding_attention": window})
    blocks = tuple(
        replace(b, attention=replace(b.attention, use_rope=rope))
        for b, rope in zip(cfg.blocks, rope_layers(hf), strict=True)
    )
    return replace(cfg, blocks=blocks)


def weight_map(cfg: ModelConfig) -> WeightMap:
    return hf_decoder_weight_map(cfg)


_SMALL = {
    **TINY_DECODER,
    "model_type": "smollm3",
    "architectures": ["SmolLM3ForCausalLM"],
    "num_hidden_layers": 4,  # layer 3 is NoPE, as every 4th layer of SmolLM3-3B
    "rms_norm_eps": 1e-6,
    "rope_theta": 5000000.0,
    "tie_word_embeddings": True,
    "no_rope_layers": [1, 1, 1, 0],
    "pad_token_id": 0,
}

FAMILY = Family(
    name="smollm3",
    model_types=("smollm3",),
    config_from_hf=config_from_hf,
    weight_map=weight_map,
    fake_hf_configs={"smollm3": _SMALL},
    realistic_hf_configs={
        # SmolLM3-3B's widths, 4 of its 36 layers (one NoPE), a smaller vocabulary
        "smollm3": {
            **_SMALL,
            "hidden_size": 2048,
            "intermediate_size": 11008,
            "num_attention_heads": 16,
            "num_key_value_heads": 4,
            "vocab_size": 8192,
            "max_position_embeddings": 65536,
        },
    },
)
