"""Reading a Hub ``config.json``: the file itself and the fields families share (end-of-sequence
ids, activation names, RoPE parameters in their transformers-4 and -5 spellings)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from famous.genai.config import Activation, RopeConfig
from famous.genai.errors import CheckpointError, UnsupportedModelError


def read_config_json(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path} not found: a model directory needs a Hub config.json")
    with path.open(encoding="utf-8") as f:
        return json.load(f)


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
    if rope_type not in ("default", "linear", "dynamic", "llama3", "longrope", "yarn"):
        raise UnsupportedModelError(
            f"rope_type {rope_type!r} is not supported by the famous native engine "
            "(supported: default, linear, dynamic, llama3, longrope); "
            "the `transformers` runtime can serve this model instead"
        )
    if rope_type == "yarn" and (params.get("mscale") or params.get("mscale_all_dim")):
        raise UnsupportedModelError(
            "yarn RoPE with mscale / mscale_all_dim (DeepSeek-style) is not supported by the "
            "famous native engine; the `transformers` runtime can serve this model instead"
        )
    # transformers gives the top-level field priority (Phi-3 keeps its pretraining length
    # there) and defaults the original length to max_position_embeddings
    orig = hf.get("original_max_position_embeddings") or params.get(
        "original_max_position_embeddings"
    )
    factor = params.get("factor")
    if rope_type == "longrope":
        orig = orig or hf.get("max_position_embeddings")
        if factor is None and orig:  # longrope's default factor: how far the context grew
            factor = hf.get("max_position_embeddings", orig) / orig
    return RopeConfig(
        rope_theta=float(params.get("rope_theta", hf.get("rope_theta", 10000.0))),
        rope_type=rope_type,
        partial_rotary_factor=float(
            params.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0)) or 1.0
        ),
        factor=float(factor or 1.0),
        low_freq_factor=float(params.get("low_freq_factor", 1.0)),
        high_freq_factor=float(params.get("high_freq_factor", 4.0)),
        original_max_position_embeddings=int(orig) if orig else None,
        short_factor=tuple(params["short_factor"]) if params.get("short_factor") else None,
        long_factor=tuple(params["long_factor"]) if params.get("long_factor") else None,
        attention_factor=params.get("attention_factor"),
        beta_fast=float(params.get("beta_fast") or 32.0),
        beta_slow=float(params.get("beta_slow") or 1.0),
        truncate=bool(params.get("truncate", True)),
    )
