"""The ``config.json`` fields of the families beyond the Llama-shaped core, read back from
what llama.cpp's graphs run: Gemma 2 / 3's sliding windows, local RoPE base and soft-caps,
and Phi-3's LongRoPE.

Where llama.cpp fixes a value, the value it runs is the one read: Gemma 2 always caps
attention and final logits (50 and 30 when the GGUF names none), both Gemmas scale queries
by ``head_dim ** -0.5`` (``(hidden / heads) ** -0.5`` at the 27B layer counts) whatever the
checkpoint's ``query_pre_attn_scalar`` was (famous's exporter folds the difference into the
query weights), and a layer is a sliding one as ``attention.sliding_window_pattern`` says:
one flag per layer, or every layer but each n-th (llama.cpp's default n: 2 for Gemma 2, 6
for Gemma 3).
"""

from __future__ import annotations

from typing import Any

from famous.genai.errors import CheckpointError

_DEFAULT_PATTERN = {"gemma2": 2, "gemma3": 6}
_BIG = {"gemma2": 46, "gemma3": 62}  # llama.cpp's 27B layer counts: queries by hidden / heads
LONG = "rope_factors_long.weight"
SHORT = "rope_factors_short.weight"


def _layer_types(arch: str, meta: dict[str, Any], n_layers: int, file: str) -> list[str]:
    pattern = meta.get(f"{arch}.attention.sliding_window_pattern", _DEFAULT_PATTERN[arch])
    if isinstance(pattern, list):
        if len(pattern) != n_layers:
            raise CheckpointError(
                f"{file}: {arch}.attention.sliding_window_pattern has {len(pattern)} flags "
                f"for {n_layers} layers"
            )
        sliding = [bool(p) for p in pattern]
    else:
        n = int(pattern)
        sliding = [n == 0 or i % n < n - 1 for i in range(n_layers)]
    return ["sliding_attention" if s else "full_attention" for s in sliding]


def gemma_fields(arch: str, meta: dict[str, Any], cfg: dict[str, Any], file: str) -> dict:
    """Gemma 2 / 3's windows, caps, query scale and (Gemma 3) per-layer-type RoPE."""
    p = f"{arch}."
    n_layers = cfg["num_hidden_layers"]
    big = _BIG[arch] == n_layers
    out: dict[str, Any] = {
        "hidden_activation": "gelu_pytorch_tanh",
        "query_pre_attn_scalar": cfg["hidden_size"] // cfg["num_attention_heads"]
        if big
        else cfg["head_dim"],
    }
    window = meta.get(p + "attention.sliding_window")
    if arch == "gemma2":
        window = int(window or 4096)
        out["attn_logit_softcapping"] = float(meta.get(p + "attn_logit_softcapping", 50.0))
        out["final_logit_softcapping"] = float(meta.get(p + "final_logit_softcapping", 30.0))
    elif meta.get(p + "final_logit_softcapping"):
        out["final_logit_softcapping"] = float(meta[p + "final_logit_softcapping"])
    if window:
        out["sliding_window"] = int(window)
        out["layer_types"] = _layer_types(arch, meta, n_layers, file)
    else:
        out["layer_types"] = ["full_attention"] * n_layers
    if arch == "gemma3":
        full: dict[str, Any] = {"rope_type": "default", "rope_theta": cfg["rope_theta"]}
        scaling = cfg.pop("rope_scaling", None)
        if scaling:
            full.update(scaling)
        local = float(meta.get(p + "rope.freq_base_swa", 10000.0))
        out["rope_parameters"] = {
            "sliding_attention": {"rope_type": "default", "rope_theta": local},
            "full_attention": full,
        }
    return out


def phi3_fields(
    meta: dict[str, Any], cfg: dict[str, Any], factors: dict[str, list[float]], file: str
) -> dict:
    """Phi-3's LongRoPE from ``rope_factors_long`` / ``rope_factors_short`` and its keys."""
    if LONG not in factors and SHORT not in factors:
        return {}
    if LONG not in factors or SHORT not in factors:
        raise CheckpointError(f"{file}: has one of {LONG} / {SHORT} but not the other")
    orig = meta.get("phi3.rope.scaling.original_context_length")
    if orig is None:
        raise CheckpointError(
            f"{file}: LongRoPE factors without phi3.rope.scaling.original_context_length"
        )
    scaling: dict[str, Any] = {
        "rope_type": "longrope",
        "long_factor": factors[LONG],
        "short_factor": factors[SHORT],
    }
    gain = meta.get("phi3.rope.scaling.attn_factor")
    if gain is not None:
        scaling["attention_factor"] = float(gain)
    return {"rope_scaling": scaling, "original_max_position_embeddings": int(orig)}
