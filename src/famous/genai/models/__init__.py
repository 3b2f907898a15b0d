"""Model families, one module each, found from ``config.json``'s ``model_type``.

A family is a ``Family`` record: how to read ``config.json`` into a ``ModelConfig``, the
declarative weight map from the Hub's tensor names to famous's, and the tiny ``fake``
configs (two layers) and a realistic small shape that the tests build with ``transformers``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from famous.genai.config import ModelConfig
from famous.genai.errors import UnsupportedModelError
from famous.genai.hf_config import read_config_json
from famous.genai.weight_map import WeightMap

_FAMILY_MODULES = (
    "llama",
    "qwen2",
    "qwen3",
    "gemma",
    "phi3",
    "qwen3_moe",
    "mixtral",
    "olmo2",
    "granite",
    "smollm3",
    "gpt_oss",
    "qwen2_moe",
)


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]
    config_from_hf: Callable[[dict[str, Any]], ModelConfig]
    weight_map: Callable[[ModelConfig], WeightMap]
    # per model_type: a two-layer config.json (HF names) and a realistic small shape
    fake_hf_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    realistic_hf_configs: dict[str, dict[str, Any]] = field(default_factory=dict)


def families() -> list[Family]:
    return [importlib.import_module(f"famous.genai.models.{m}").FAMILY for m in _FAMILY_MODULES]


def supported_model_types() -> list[str]:
    return sorted(t for f in families() for t in f.model_types)


def family_for(hf_config: dict[str, Any]) -> Family:
    model_type = hf_config.get("model_type")
    for fam in families():
        if model_type in fam.model_types:
            return fam
    names = ", ".join(f"{f.name} ({', '.join(f.model_types)})" for f in families())
    raise UnsupportedModelError(
        f"model_type {model_type!r} is not supported by the famous native engine. "
        f"Supported families: {names}. "
        "The `transformers` runtime can serve it instead (any model transformers can load "
        "without trust_remote_code)."
    )


def fake_hf_config(model_type: str) -> dict[str, Any]:
    """The two-layer test config (config.json fields) of a model_type."""
    for fam in families():
        if model_type in fam.fake_hf_configs:
            return dict(fam.fake_hf_configs[model_type])
    raise KeyError(model_type)


def fake_config(model_type: str) -> ModelConfig:
    return family_for({"model_type": model_type}).config_from_hf(fake_hf_config(model_type))


def load_config(model_dir: str | Path) -> ModelConfig:
    """config.json → ModelConfig through the family that owns its ``model_type``."""
    hf = read_config_json(model_dir)
    return family_for(hf).config_from_hf(hf)


# ---------------------------------------------------------------- helpers for the families
