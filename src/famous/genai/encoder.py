"""BERT: a bidirectional encoder re-authored from famous's building blocks.

Embeddings (word + absolute position + token type) → LayerNorm → N blocks of
self-attention and a GELU feed-forward, each followed by a residual post-LayerNorm. It
reuses ``LayerNorm`` (fp32 compute) and the plain ``FeedForward``; attention is its own
small module because the decoder's ``Attention`` is built around RoPE and the KV cache, and
an encoder needs neither: every token sees every non-padding token through one
``scaled_dot_product_attention`` call.

Weights load through the loader's declarative map (q/k/v fused into one matmul) with
its strict accounting. The pooler (``pooler.dense``) is declared as ignored: sentence
embeddings pool the last hidden state and never use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from famous.genai.config import FeedForwardConfig, NormConfig
from famous.genai.errors import UnsupportedModelError
from famous.genai.hf_config import activation_from_hf, read_config_json
from famous.genai.layers.feed_forward import FeedForward
from famous.genai.layers.norm import make_norm
from famous.genai.loader import load_weights_into, resolve_dtype
from famous.genai.weight_map import Fuse, Rule, WeightMap

ENCODER_MODEL_TYPES = ("bert",)


@dataclass(frozen=True)
class BertConfig:
    """``config.json`` of a BERT encoder; field names as on the Hub."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    position_embedding_type: str = "absolute"
    model_type: str = "bert"

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> BertConfig:
        model_type = hf.get("model_type")
        if model_type not in ENCODER_MODEL_TYPES:
            raise UnsupportedModelError(
                f"model_type {model_type!r} is not an encoder famous implements "
                f"(supported: {', '.join(ENCODER_MODEL_TYPES)})"
            )
        if hf.get("is_decoder") or hf.get("add_cross_attention"):
            raise UnsupportedModelError("BERT as a decoder / with cross-attention is not supported")
        pos = hf.get("position_embedding_type") or "absolute"
        if pos != "absolute":
            raise UnsupportedModelError(
                f"position_embedding_type {pos!r} is not supported (only 'absolute')"
            )
        cfg = cls(
            vocab_size=int(hf["vocab_size"]),
            hidden_size=int(hf["hidden_size"]),
            num_hidden_layers=int(hf["num_hidden_layers"]),
            num_attention_heads=int(hf["num_attention_heads"]),
            intermediate_size=int(hf["intermediate_size"]),
            hidden_act=str(hf.get("hidden_act", "gelu")),
            max_position_embeddings=int(hf.get("max_position_embeddings", 512)),
            type_vocab_size=int(hf.get("type_vocab_size", 2)),
            layer_norm_eps=float(hf.get("layer_norm_eps", 1e-12)),
            pad_token_id=int(hf.get("pad_token_id") or 0),
            position_embedding_type=pos,
            model_type=model_type,
        )
        if cfg.hidden_size % cfg.num_attention_heads:
            raise UnsupportedModelError(
                f"hidden_size {cfg.hidden_size} is not a multiple of "
                f"num_attention_heads {cfg.num_attention_heads}"
            )
        activation_from_hf(cfg.hidden_act)  # an unknown activation fails before any weight is read
        return cfg

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def norm(self) -> NormConfig:
        return NormConfig("layer", self.layer_norm_eps, bias=True)

    @property
    def feed_forward(self) -> FeedForwardConfig:
        return FeedForwardConfig(
            self.intermediate_size, activation_from_hf(self.hidden_act), gated=False, bias=True
        )


def weight_map(cfg: BertConfig) -> WeightMap:
    """The Hub's ``BertModel`` tensor names → famous's modules."""
    h = cfg.hidden_size
    rules: list[Rule] = [
        Rule("word_embed.weight", ("embeddings.word_embeddings.weight",)),
        Rule("pos_embed.weight", ("embeddings.position_embeddings.weight",)),
        Rule("type_embed.weight", ("embeddings.token_type_embeddings.weight",)),
    ]
    for kind in ("weight", "bias"):
        rules.append(Rule(f"embed_norm.{kind}", (f"embeddings.LayerNorm.{kind}",)))
    for i in range(cfg.num_hidden_layers):
        src, dst = f"encoder.layer.{i}.", f"layers.{i}."
        for kind in ("weight", "bias"):
            qkv = tuple(f"{src}attention.self.{p}.{kind}" for p in ("query", "key", "value"))
            rules += [
                Rule(f"{dst}attn.qkv.{kind}", qkv, Fuse(0, (h, h, h))),
                Rule(f"{dst}attn.o.{kind}", (f"{src}attention.output.dense.{kind}",)),
                Rule(f"{dst}attn_norm.{kind}", (f"{src}attention.output.LayerNorm.{kind}",)),
                Rule(f"{dst}ffn.gate_up.{kind}", (f"{src}intermediate.dense.{kind}",)),
                Rule(f"{dst}ffn.down.{kind}", (f"{src}output.dense.{kind}",)),
                Rule(f"{dst}ffn_norm.{kind}", (f"{src}output.LayerNorm.{kind}",)),
            ]
    ignore = (
        r"^embeddings\.(position_ids|token_type_ids)$",  # buffers some exports keep
        r"^pooler\.dense\.(weight|bias)$",  # the [CLS] pooler: unused by sentence embeddings
    )
    return WeightMap(tuple(rules), ignore)


class SelfAttention(nn.Module):
    """Bidirectional multi-head attention with biases; q, k, v in one matmul."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.n_heads, self.head_dim = cfg.num_attention_heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.o = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, t, hidden = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o(out.transpose(1, 2).reshape(b, t, hidden))


class EncoderBlock(nn.Module):
    """Post-norm: ``x = norm(x + attn(x))``, then ``x = norm(x + ffn(x))``."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.attn = SelfAttention(cfg)
        self.attn_norm = make_norm(cfg.norm, cfg.hidden_size)
        self.ffn = FeedForward(cfg.hidden_size, cfg.feed_forward)
        self.ffn_norm = make_norm(cfg.norm, cfg.hidden_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.attn_norm(x + self.attn(x, mask))
        return self.ffn_norm(x + self.ffn(x))


class BertModel(nn.Module):
    """``forward(input_ids, attention_mask, token_type_ids)`` → last hidden state."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.word_embed = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.pos_embed = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.type_embed = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.embed_norm = make_norm(cfg.norm, cfg.hidden_size)
        self.layers = nn.ModuleList(EncoderBlock(cfg) for _ in range(cfg.num_hidden_layers))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """input_ids / attention_mask (1 = token, 0 = padding): [B, T], right-padded."""
        t = input_ids.shape[1]
        if t > self.cfg.max_position_embeddings:
            raise ValueError(
                f"{t} tokens exceed max_position_embeddings "
                f"({self.cfg.max_position_embeddings}); truncate the input"
            )
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        pos = torch.arange(t, device=input_ids.device)
        x = self.word_embed(input_ids) + self.type_embed(token_type_ids) + self.pos_embed(pos)
        x = self.embed_norm(x)
        mask = None  # no padding: plain bidirectional attention
        if attention_mask is not None and not bool(attention_mask.all()):
            mask = attention_mask.bool()[:, None, None, :]  # [B, 1, 1, T] keys visible
        for layer in self.layers:
            x = layer(x, mask)
        return x


def load_encoder(
    model_dir: str | Path,
    dtype: torch.dtype | str | None = None,
    allow_pickle: bool = False,
    device: str = "cpu",
) -> BertModel:
    """Build a BERT from ``config.json`` and fill it from the checkpoint (strictly)."""
    cfg = BertConfig.from_hf(read_config_json(model_dir))  # fails before any weight is read
    dtype = resolve_dtype(dtype)
    with torch.device("meta"):
        model = BertModel(cfg)
    load_weights_into(model, weight_map(cfg), model_dir, dtype, allow_pickle)
    return model.to(device).eval()
