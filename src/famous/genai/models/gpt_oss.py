"""gpt-oss (OpenAI): attention with sinks over alternating sliding-window / full layers,
YaRN RoPE, and a mixture of experts with biases and a clamped SwiGLU.

- attention: q/k/v/o biases; each head's learned sink logit joins its softmax's
  denominator (and takes no value); ``layer_types`` alternates sliding and full layers;
- RoPE: YaRN over ``original_max_position_embeddings`` (``rope_parameters``);
- experts: the router (with a bias) takes the top-k logits, softmax over those only; each
  expert is ``down((clamp(up, ±limit) + 1) · g · sigmoid(alpha · g)) + bias`` with
  ``g = min(gate, limit)``. The checkpoint stores them stacked and transposed ([E, in,
  out]) with gate and up interleaved, which the weight map turns into famous's layout.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from famous.genai.config import ModelConfig, MoEConfig
from famous.genai.models import Family
from famous.genai.models._common import TINY_DECODER, decoder_config, hf_decoder_weight_map
from famous.genai.weight_map import FusedExperts, Rule, WeightMap


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    bias = bool(hf.get("attention_bias", True))
    cfg = decoder_config(
        hf,
        qkv_bias=bias,
        o_bias=bias,
        window_for={"sliding_attention": hf.get("sliding_window")},
    )
    moe = MoEConfig(
        num_experts=int(hf["num_local_experts"]),
        top_k=int(hf["num_experts_per_tok"]),
        intermediate_size=int(hf["intermediate_size"]),
        routing="topk_softmax",
        router_bias=True,
        expert_bias=True,
        swiglu_limit=float(hf.get("swiglu_limit", 7.0)),
        swiglu_alpha=float(hf.get("swiglu_alpha", 1.702)),
    )
    blocks = tuple(
        replace(b, attention=replace(b.attention, sinks=True), moe=moe) for b in cfg.blocks
    )
    return replace(cfg, blocks=blocks)


def weight_map(cfg: ModelConfig) -> WeightMap:
    dense = hf_decoder_weight_map(cfg)
    rules = [r for r in dense.rules if ".ffn." not in r.target]
    for i in range(cfg.num_hidden_layers):
        dst, src = f"layers.{i}.", f"model.layers.{i}."
        experts = f"{src}mlp.experts."
        rules += [
            Rule(f"{dst}attn.sinks", (f"{src}self_attn.sinks",)),
            Rule(f"{dst}ffn.router.weight", (f"{src}mlp.router.weight",)),
            Rule(f"{dst}ffn.router.bias", (f"{src}mlp.router.bias",)),
            Rule(f"{dst}ffn.gate_up", (f"{experts}gate_up_proj",), FusedExperts(True, True)),
            Rule(
                f"{dst}ffn.gate_up_bias",
                (f"{experts}gate_up_proj_bias",),
                FusedExperts(False, True),
            ),
            Rule(f"{dst}ffn.down", (f"{experts}down_proj",), FusedExperts(True, False)),
            Rule(f"{dst}ffn.down_bias", (f"{experts}down_proj_bias",)),
        ]
    return WeightMap(tuple(rules), dense.ignore)


_SMALL = {
    **TINY_DECODER,
    "model_type": "gpt_oss",
    "architectures": ["GptOssForCausalLM"],
    "intermediate_size": 32,
    "num_local_experts": 4,
    "num_experts_per_tok": 2,
    "head_dim": 16,
    "rms_norm_eps": 1e-5,
    "attention_bias": True,
    "sliding_window": 16,
    "layer_types": ["sliding_attention", "full_attention"],
    "rope_parameters": {
        "rope_type": "yarn",
        "rope_theta": 150000.0,
        "factor": 32.0,
        "beta_fast": 32.0,
        "beta_slow": 1.0,
        "original_max_position_embeddings": 4096,
        "truncate": False,
    },
    "max_position_embeddings": 131072,
    "tie_word_embeddings": False,
    # no eos: these random weights pick token 2 within 32 greedy steps, which transformers'
    # min_new_tokens would mask and famous's greedy would not
    "eos_token_id": None,
}

FAMILY = Family(
    name="gpt_oss",
    model_types=("gpt_oss",),
    config_from_hf=config_from_hf,
    weight_map=weight_map,
    fake_hf_configs={"gpt_oss": _SMALL},
)
