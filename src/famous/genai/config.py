"""The typed config tree: ``ModelConfig`` → ``BlockConfig`` → attention / feed-forward / norm.

Field names follow the Hub's ``config.json`` where one exists (``num_key_value_heads``,
``rms_norm_eps``, ``intermediate_size`` …) so a reader can map one onto the other. Each
family turns its ``config.json`` into this tree (``famous.genai.models.<family>``, with the
parsers of ``famous.genai.hf_config``); the layers only ever see this tree, never the raw
dict. Plain dataclasses: no torch here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

NormKind = Literal["rms", "layer"]
Activation = Literal["silu", "gelu_tanh", "gelu", "relu"]
RopeType = Literal["default", "linear", "dynamic", "llama3", "longrope", "yarn"]


@dataclass(frozen=True)
class NormConfig:
    """RMSNorm (always computed in fp32) or LayerNorm.

    ``zero_centered``: the stored weight is ``w`` and the scale is ``1 + w`` (Gemma).
    """

    kind: NormKind = "rms"
    eps: float = 1e-6
    zero_centered: bool = False
    bias: bool = False  # LayerNorm only


@dataclass(frozen=True)
class RopeConfig:
    """Rotary position embedding; ``rope_type`` and its fields as in the Hub's rope_scaling."""

    rope_theta: float = 10000.0
    rope_type: RopeType = "default"
    partial_rotary_factor: float = 1.0
    factor: float = 1.0
    # llama3
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int | None = None
    # longrope (Phi-3 long context)
    short_factor: tuple[float, ...] | None = None
    long_factor: tuple[float, ...] | None = None
    attention_factor: float | None = None
    # yarn (gpt-oss): the band between beta_fast and beta_slow rotations is interpolated
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    truncate: bool = True


@dataclass(frozen=True)
class AttentionConfig:
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rope: RopeConfig = field(default_factory=RopeConfig)
    qkv_bias: bool = False
    o_bias: bool = False
    qk_norm: NormConfig | None = None
    qk_norm_full: bool = False  # OLMo 2: one norm over the whole q (k) projection, not per head
    use_rope: bool = True  # False: a NoPE layer (SmolLM3) sees no positions but the mask's
    sinks: bool = False  # gpt-oss: a learned per-head logit joins each softmax's denominator
    scale: float | None = None  # None → head_dim ** -0.5
    logit_softcapping: float | None = None
    sliding_window: int | None = None  # keys with pos > q_pos - window are visible

    @property
    def softmax_scale(self) -> float:
        return self.scale if self.scale is not None else self.head_dim**-0.5

    @property
    def q_size(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_key_value_heads * self.head_dim


@dataclass(frozen=True)
class FeedForwardConfig:
    intermediate_size: int
    activation: Activation = "silu"
    gated: bool = True  # act(gate(x)) * up(x); plain: act(up(x))
    bias: bool = False


@dataclass(frozen=True)
class MoEConfig:
    """A sparse mixture of gated experts: a router picks ``top_k`` of ``num_experts`` per token.

    ``routing``: ``softmax_topk`` takes the top-k of the softmax over all experts (Mixtral,
    Qwen3-MoE), renormalized to sum to 1 when ``normalize_top_k``; ``topk_softmax`` takes
    the softmax over the top-k router logits only. ``shared_intermediate_size``: a dense
    expert every token also goes through, scaled by ``sigmoid(shared_gate(x))`` when
    ``shared_gate`` (Qwen2-MoE).
    """

    num_experts: int
    top_k: int
    intermediate_size: int
    activation: Activation = "silu"
    routing: Literal["softmax_topk", "topk_softmax"] = "softmax_topk"
    normalize_top_k: bool = True
    router_bias: bool = False
    expert_bias: bool = False
    # gpt-oss's clamped SwiGLU: (clamp(up, ±limit) + 1) · g · sigmoid(alpha · g) with
    # g = min(gate, limit)
    swiglu_limit: float | None = None
    swiglu_alpha: float = 1.702
    shared_intermediate_size: int | None = None
    shared_gate: bool = False


@dataclass(frozen=True)
class BlockConfig:
    """One transformer block: pre-norm attention and feed-forward, optional post-norms.

    ``moe``: the feed-forward is a mixture of experts (``feed_forward`` then only records
    the dense width the config.json names). A None pre-norm (OLMo 2) feeds the sub-layer
    the residual stream itself; ``residual_scale`` (Granite) scales each sub-layer's output
    before it is added to the residual stream.
    """

    attention: AttentionConfig
    feed_forward: FeedForwardConfig
    attn_norm: NormConfig | None
    ffn_norm: NormConfig | None
    attn_post_norm: NormConfig | None = None  # Gemma 2/3, OLMo 2
    ffn_post_norm: NormConfig | None = None  # Gemma 2/3, OLMo 2
    moe: MoEConfig | None = None
    residual_scale: float | None = None


@dataclass(frozen=True)
class ModelConfig:
    model_type: str
    vocab_size: int
    hidden_size: int
    blocks: tuple[BlockConfig, ...]
    final_norm: NormConfig
    tie_word_embeddings: bool = False
    embedding_scale: float | None = None  # Gemma multiplies embeddings by sqrt(hidden)
    final_logit_softcapping: float | None = None
    logits_scaling: float | None = None  # Granite divides the logits by this
    max_position_embeddings: int = 2048
    bos_token_id: int | None = None
    eos_token_id: tuple[int, ...] = ()
    pad_token_id: int | None = None

    @property
    def num_hidden_layers(self) -> int:
        return len(self.blocks)


def longrope_attention_factor(rope: RopeConfig, max_position_embeddings: int) -> float:
    """The cos/sin multiplier of LongRoPE: ``attention_factor`` if given, else from
    ``factor`` (which ``rope_from_hf`` sets to max / original length when the config has
    none), as transformers computes it."""
    if rope.attention_factor is not None:
        return float(rope.attention_factor)
    orig = rope.original_max_position_embeddings or max_position_embeddings
    scale = rope.factor
    return 1.0 if scale <= 1.0 else math.sqrt(1 + math.log(scale) / math.log(orig))
