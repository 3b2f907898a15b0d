"""The typed config tree: ``ModelConfig`` → ``BlockConfig`` → attention / feed-forward / norm.

Field names follow the Hub's ``config.json`` where one exists (``num_key_value_heads``,
``rms_norm_eps``, ``intermediate_size`` …) so a reader can map one onto the other. Each
family turns its ``config.json`` into this tree (``famous.genai.models.<family>``); the
layers only ever see this tree, never the raw dict. Plain dataclasses: no torch here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

NormKind = Literal["rms", "layer"]
Activation = Literal["silu", "gelu_tanh", "gelu", "relu"]
RopeType = Literal["default", "linear", "dynamic", "llama3", "longrope"]


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


@dataclass(frozen=True)
class AttentionConfig:
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rope: RopeConfig = field(default_factory=RopeConfig)
    qkv_bias: bool = False
    o_bias: bool = False
    qk_norm: NormConfig | None = None
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
class BlockConfig:
    """One transformer block: pre-norm attention and feed-forward, optional post-norms."""

    attention: AttentionConfig
    feed_forward: FeedForwardConfig
    attn_norm: NormConfig
    ffn_norm: NormConfig
    attn_post_norm: NormConfig | None = None  # Gemma 2/3
    ffn_post_norm: NormConfig | None = None  # Gemma 2/3


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
    max_position_embeddings: int = 2048
    bos_token_id: int | None = None
    eos_token_id: tuple[int, ...] = ()
    pad_token_id: int | None = None

    @property
    def num_hidden_layers(self) -> int:
        return len(self.blocks)


def read_config_json(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        from famous.genai.errors import CheckpointError

        raise CheckpointError(f"{path} not found: a model directory needs a Hub config.json")
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def load_config(model_dir: str | Path) -> ModelConfig:
    """config.json → ModelConfig through the family that owns its ``model_type``."""
    from famous.genai.models import family_for

    hf = read_config_json(model_dir)
    return family_for(hf).config_from_hf(hf)


# ---------------------------------------------------------------- helpers for the families


def eos_ids(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, int):
        return (value,)
    return tuple(int(v) for v in value)


def activation_from_hf(name: str | None) -> Activation:
    table: dict[str, Activation] = {
        "silu": "silu",
        "swish": "silu",
        "gelu_pytorch_tanh": "gelu_tanh",
        "gelu_new": "gelu_tanh",
        "gelu_fast": "gelu_tanh",
        "gelu": "gelu",
        "relu": "relu",
    }
    if name not in table:
        from famous.genai.errors import UnsupportedModelError

        raise UnsupportedModelError(
            f"activation {name!r} is not supported (known: {sorted(table)})"
        )
    return table[name]


def rope_from_hf(hf: dict[str, Any], layer_type: str | None = None) -> RopeConfig:
    """Read RoPE from either the transformers-5 ``rope_parameters`` or the older
    ``rope_theta`` + ``rope_scaling`` fields; ``layer_type`` picks a per-layer-type entry."""
    params: dict[str, Any] = {}
    rp = hf.get("rope_parameters")
    if isinstance(rp, dict) and layer_type is not None and layer_type in rp:
        params = dict(rp[layer_type])
    elif isinstance(rp, dict) and ("rope_theta" in rp or "rope_type" in rp):
        params = dict(rp)
    else:
        params["rope_theta"] = hf.get("rope_theta", 10000.0)
        scaling = hf.get("rope_scaling") or {}
        params.update(scaling)
        if "partial_rotary_factor" in hf:
            params["partial_rotary_factor"] = hf["partial_rotary_factor"]
    rope_type = params.get("rope_type", params.get("type", "default")) or "default"
    if rope_type not in ("default", "linear", "dynamic", "llama3", "longrope"):
        from famous.genai.errors import UnsupportedModelError

        raise UnsupportedModelError(
            f"rope_type {rope_type!r} is not supported by the famous native engine "
            "(supported: default, linear, dynamic, llama3, longrope); "
            "the `transformers` runtime can serve this model instead"
        )
    orig = params.get(
        "original_max_position_embeddings", hf.get("original_max_position_embeddings")
    )
    return RopeConfig(
        rope_theta=float(params.get("rope_theta", hf.get("rope_theta", 10000.0))),
        rope_type=rope_type,
        partial_rotary_factor=float(
            params.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0)) or 1.0
        ),
        factor=float(params.get("factor", 1.0) or 1.0),
        low_freq_factor=float(params.get("low_freq_factor", 1.0)),
        high_freq_factor=float(params.get("high_freq_factor", 4.0)),
        original_max_position_embeddings=int(orig) if orig else None,
        short_factor=tuple(params["short_factor"]) if params.get("short_factor") else None,
        long_factor=tuple(params["long_factor"]) if params.get("long_factor") else None,
        attention_factor=params.get("attention_factor"),
    )


def longrope_attention_factor(rope: RopeConfig, max_position_embeddings: int) -> float:
    if rope.attention_factor is not None:
        return float(rope.attention_factor)
    orig = rope.original_max_position_embeddings or max_position_embeddings
    scale = max_position_embeddings / orig
    return 1.0 if scale <= 1.0 else math.sqrt(1 + math.log(scale) / math.log(orig))
