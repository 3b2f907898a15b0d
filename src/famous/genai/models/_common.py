"""What most families share: reading a Llama-shaped config.json and the Hub's tensor names."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from famous.genai.config import (
    AttentionConfig,
    BlockConfig,
    FeedForwardConfig,
    ModelConfig,
    MoEConfig,
    NormConfig,
    RopeConfig,
)
from famous.genai.hf_config import activation_from_hf, eos_ids, rope_from_hf
from famous.genai.weight_map import Fuse, Rule, Stack, WeightMap

# The two-layer shape the newer families' fake test configs start from (config.json names).
TINY_DECODER: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 256,
    "max_position_embeddings": 512,
    "hidden_act": "silu",
    "bos_token_id": 1,
    "eos_token_id": 2,
}


def head_dim(hf: dict[str, Any]) -> int:
    return int(hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"])


def layer_types(hf: dict[str, Any]) -> list[str]:
    n = hf["num_hidden_layers"]
    types = hf.get("layer_types")
    return list(types) if types else ["full_attention"] * n


def decoder_config(
    hf: dict[str, Any],
    *,
    qkv_bias: bool = False,
    o_bias: bool = False,
    qk_norm: NormConfig | None = None,
    norm: NormConfig | None = None,
    post_norms: bool = False,
    attn_scale: float | None = None,
    window_for: dict[str, int | None] | None = None,
    rope_for: dict[str, RopeConfig] | None = None,
    embedding_scale: float | None = None,
    activation: str | None = None,
    tie_default: bool = False,
) -> ModelConfig:
    """A Llama-shaped ModelConfig; ``window_for`` / ``rope_for`` map a layer type
    (``full_attention`` / ``sliding_attention``) to its window and RoPE."""
    norm = norm or NormConfig("rms", float(hf.get("rms_norm_eps", 1e-6)))
    act = activation_from_hf(activation or hf.get("hidden_act") or hf.get("hidden_activation"))
    ffn = FeedForwardConfig(
        int(hf["intermediate_size"]), act, True, bool(hf.get("mlp_bias", False))
    )
    blocks = []
    default_rope = rope_from_hf(hf)
    for lt in layer_types(hf):
        attn = AttentionConfig(
            num_attention_heads=int(hf["num_attention_heads"]),
            num_key_value_heads=int(hf.get("num_key_value_heads") or hf["num_attention_heads"]),
            head_dim=head_dim(hf),
            rope=(rope_for or {}).get(lt, default_rope),
            qkv_bias=qkv_bias,
            o_bias=o_bias,
            qk_norm=qk_norm,
            scale=attn_scale,
            logit_softcapping=hf.get("attn_logit_softcapping"),
            sliding_window=(window_for or {}).get(lt),
        )
        blocks.append(
            BlockConfig(
                attention=attn,
                feed_forward=ffn,
                attn_norm=norm,
                ffn_norm=norm,
                attn_post_norm=norm if post_norms else None,
                ffn_post_norm=norm if post_norms else None,
            )
        )
    return ModelConfig(
        model_type=hf["model_type"],
        vocab_size=int(hf["vocab_size"]),
        hidden_size=int(hf["hidden_size"]),
        blocks=tuple(blocks),
        final_norm=norm,
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", tie_default)),
        embedding_scale=embedding_scale,
        final_logit_softcapping=hf.get("final_logit_softcapping"),
        max_position_embeddings=int(hf.get("max_position_embeddings", 2048)),
        bos_token_id=hf.get("bos_token_id"),
        eos_token_id=eos_ids(hf.get("eos_token_id")),
        pad_token_id=hf.get("pad_token_id"),
    )


def hf_decoder_weight_map(
    cfg: ModelConfig,
    *,
    prefix: str = "model.",
    fused_qkv: bool = False,
    fused_gate_up: bool = False,
    ffn_norm_name: str = "post_attention_layernorm",
    post_norm_names: tuple[str, str] = ("post_attention_layernorm", "post_feedforward_layernorm"),
) -> WeightMap:
    """The Hub's ``model.layers.{i}.self_attn.q_proj.weight`` … names → famous's modules.

    Separate q/k/v and gate/up tensors are fused into one weight each (one matmul reads
    them); checkpoints that already store them fused (Phi-3) map one to one.
    """
    rules: list[Rule] = [Rule("embed.weight", (f"{prefix}embed_tokens.weight",))]
    for i, b in enumerate(cfg.blocks):
        src, dst = f"{prefix}layers.{i}.", f"layers.{i}."
        a, f = b.attention, b.feed_forward
        qkv_sizes = (a.q_size, a.kv_size, a.kv_size)
        kinds = ["weight", "bias"] if a.qkv_bias else ["weight"]
        for kind in kinds:
            if fused_qkv:
                rules.append(Rule(f"{dst}attn.qkv.{kind}", (f"{src}self_attn.qkv_proj.{kind}",)))
            else:
                rules.append(
                    Rule(
                        f"{dst}attn.qkv.{kind}",
                        tuple(f"{src}self_attn.{p}_proj.{kind}" for p in "qkv"),
                        Fuse(0, qkv_sizes),
                    )
                )
        rules.append(Rule(f"{dst}attn.o.weight", (f"{src}self_attn.o_proj.weight",)))
        if a.o_bias:
            rules.append(Rule(f"{dst}attn.o.bias", (f"{src}self_attn.o_proj.bias",)))
        if a.qk_norm is not None:
            rules.append(Rule(f"{dst}attn.q_norm.weight", (f"{src}self_attn.q_norm.weight",)))
            rules.append(Rule(f"{dst}attn.k_norm.weight", (f"{src}self_attn.k_norm.weight",)))
        kinds = ["weight", "bias"] if f.bias else ["weight"]
        for kind in kinds:
            if fused_gate_up:
                rules.append(Rule(f"{dst}ffn.gate_up.{kind}", (f"{src}mlp.gate_up_proj.{kind}",)))
            else:
                rules.append(
                    Rule(
                        f"{dst}ffn.gate_up.{kind}",
                        (f"{src}mlp.gate_proj.{kind}", f"{src}mlp.up_proj.{kind}"),
                        Fuse(0, (f.intermediate_size, f.intermediate_size)),
                    )
                )
            rules.append(Rule(f"{dst}ffn.down.{kind}", (f"{src}mlp.down_proj.{kind}",)))
        if b.attn_norm is not None:
            rules.append(Rule(f"{dst}attn_norm.weight", (f"{src}input_layernorm.weight",)))
        if b.ffn_norm is not None:
            rules.append(Rule(f"{dst}ffn_norm.weight", (f"{src}{ffn_norm_name}.weight",)))
        if b.attn_post_norm is not None:
            rules.append(
                Rule(f"{dst}attn_post_norm.weight", (f"{src}{post_norm_names[0]}.weight",))
            )
        if b.ffn_post_norm is not None:
            rules.append(Rule(f"{dst}ffn_post_norm.weight", (f"{src}{post_norm_names[1]}.weight",)))
    rules.append(Rule("norm.weight", (f"{prefix}norm.weight",)))
    ignore: tuple[str, ...] = (r".*\.rotary_emb\.inv_freq$",)
    if cfg.tie_word_embeddings:
        ignore += (r"^lm_head\.weight$",)  # some exports keep the tied copy
    else:
        rules.append(Rule("lm_head.weight", ("lm_head.weight",)))
    return WeightMap(tuple(rules), ignore)


QWEN_EXPERTS = ("gate_proj", "up_proj", "down_proj")  # mlp.experts.{e}.<these>.weight


def qwen_experts(hf: dict[str, Any]) -> MoEConfig:
    """Qwen-MoE's routed experts: softmax → top-k, renormalized when ``norm_topk_prob``."""
    return MoEConfig(
        num_experts=int(hf.get("num_experts") or hf.get("num_local_experts") or 0),
        top_k=int(hf["num_experts_per_tok"]),
        intermediate_size=int(hf["moe_intermediate_size"]),
        activation=activation_from_hf(hf.get("hidden_act")),
        normalize_top_k=bool(hf.get("norm_topk_prob", False)),
    )


def with_sparse_blocks(cfg: ModelConfig, hf: dict[str, Any], moe: MoEConfig) -> ModelConfig:
    """Qwen-MoE's rule: a block routes through ``moe`` unless listed in ``mlp_only_layers``
    or off the ``decoder_sparse_step`` grid (then it keeps its dense feed-forward)."""
    n_experts = int(hf.get("num_experts") or hf.get("num_local_experts") or 0)
    step = int(hf.get("decoder_sparse_step", 1) or 1)
    dense = set(hf.get("mlp_only_layers") or ())
    blocks = tuple(
        replace(b, moe=moe) if i not in dense and n_experts > 0 and (i + 1) % step == 0 else b
        for i, b in enumerate(cfg.blocks)
    )
    return replace(cfg, blocks=blocks)


def moe_weight_map(
    cfg: ModelConfig,
    dense: WeightMap,
    *,
    block: str,
    router: str,
    experts: tuple[str, str, str],
    shared: str | None = None,
    shared_gate: str | None = None,
    prefix: str = "model.",
) -> WeightMap:
    """``dense`` (``hf_decoder_weight_map``) with each MoE block's feed-forward rules replaced
    by the router and the per-expert tensors stacked: ``model.layers.{i}.{block}.{router}``,
    ``…{block}.experts.{e}.{gate|up|down}.weight`` (``experts`` names the three), and an
    optional shared expert (``…{block}.{shared}.{gate_proj|up_proj|down_proj}``)."""
    rules = list(dense.rules)
    for i, b in enumerate(cfg.blocks):
        if b.moe is None:
            continue
        dst, src = f"layers.{i}.ffn.", f"{prefix}layers.{i}.{block}."
        rules = [r for r in rules if not r.target.startswith(dst)]
        m = b.moe
        gate, up, down = (
            tuple(f"{src}experts.{e}.{p}.weight" for e in range(m.num_experts)) for p in experts
        )
        rules.append(Rule(f"{dst}router.weight", (f"{src}{router}.weight",)))
        if m.router_bias:
            rules.append(Rule(f"{dst}router.bias", (f"{src}{router}.bias",)))
        pairs = tuple(n for g, u in zip(gate, up, strict=True) for n in (g, u))
        size = m.intermediate_size
        rules.append(Rule(f"{dst}gate_up", pairs, Stack((size, size))))
        rules.append(Rule(f"{dst}down", down, Stack((cfg.hidden_size,))))
        if shared is not None and m.shared_intermediate_size:
            s_size = m.shared_intermediate_size
            rules.append(
                Rule(
                    f"{dst}shared.gate_up.weight",
                    (f"{src}{shared}.gate_proj.weight", f"{src}{shared}.up_proj.weight"),
                    Fuse(0, (s_size, s_size)),
                )
            )
            rules.append(Rule(f"{dst}shared.down.weight", (f"{src}{shared}.down_proj.weight",)))
        if shared_gate is not None and m.shared_gate:
            rules.append(Rule(f"{dst}shared_gate.weight", (f"{src}{shared_gate}.weight",)))
    return WeightMap(tuple(rules), dense.ignore)
