"""Edge programs (ExecuTorch ``.pte``, LiteRT ``.tflite``) of a Hugging Face model folder.

What a build of an edge target needs from genai: the recipe and runtime checks made before
any work, the signature plan (prefill lengths and KV-cache slots), the export itself with the
tokenizer and config files an engine needs next to the program, and the KV cache's size.

Quantized edge programs use the backends' own schemes (``EDGE_RECIPES``), named after the
famous recipe they implement: ``dynamic-int8`` is int8 weights per output channel with
activations quantized per token at run time, on every ``nn.Linear`` (torchao's
``Int8DynamicActivationIntxWeightConfig`` lowered to XNNPACK for ExecuTorch; litert-torch's
dynamic-range int8 recipe for LiteRT); ``dynamic-int4`` the same with int4 weights in groups
of 32 (torchao's "8da4w"). ExecuTorch unties a tied LM head (int8 per channel) and stores the
embedding int8 per row, so neither stays fp32; litert-torch's recipe covers every op it
supports, the embedding table included (int4 blocks of 32 under ``dynamic-int4``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from famous.genai.export.litert import CONVERTER_HINT, LiteRTUnavailable, converter_available
from famous.genai.models import load_config
from famous.genai.quantize.recipe import RecipeError

EDGE_FORMATS = {"executorch": "pte", "litert": "tflite"}  # target → file suffix and format
EDGE_MAX_SEQ_LEN = 1024  # KV-cache slots of an edge build (its inputs and outputs each call)
# tokenizer and config files an edge engine needs next to its program
EDGE_SIDE_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",  # transformers 5 keeps the chat template here, not in the config
    "chat_template.json",
)


@dataclass(frozen=True)
class EdgeRecipe:
    """A recipe an edge target builds: what each backend's quantizer does with it."""

    name: str
    quantization: str  # the label of famous's QuantSpec the linears get
    description: str
    executorch: str  # the quantizer famous applies before lowering ("" = none)
    litert: str  # the litert-torch recipe passed to its converter ("" = none)


EDGE_RECIPES = {
    r.name: r
    for r in (
        EdgeRecipe("fp32", "fp32", "no quantization (reference)", "", ""),
        EdgeRecipe(
            "dynamic-int8",
            "int8-channel+dyn-act",
            "linears: int8 weights per output channel, int8 activations per token at run "
            "time (XNNPACK); embedding: int8 per row",
            "torchao Int8DynamicActivationIntxWeightConfig(weight_dtype=int8, PerAxis(0)); "
            "LM head untied; embedding IntxWeightOnlyConfig(int8, PerAxis(0))",
            "litert_torch quant_recipes.full_dynamic_recipe(INT8, CHANNELWISE)",
        ),
        EdgeRecipe(
            "dynamic-int4",
            "int4-b32+dyn-act",
            "linears: int4 weights in groups of 32, int8 activations per token at run time "
            "(XNNPACK, torchao's 8da4w); ExecuTorch keeps the LM head int8 per channel and "
            "the embedding int8 per row, LiteRT makes them int4 blocks of 32 too",
            "torchao Int8DynamicActivationIntxWeightConfig(weight_dtype=int4, PerGroup(32)); "
            "LM head untied, Int8DynamicActivationIntxWeightConfig(int8, PerAxis(0)); "
            "embedding IntxWeightOnlyConfig(int8, PerAxis(0))",
            "litert_torch quant_recipes.full_dynamic_recipe(INT4, BLOCKWISE_32)",
        ),
    )
}


@dataclass(frozen=True)
class SignaturePlan:
    """The prefill signatures and the KV-cache slots of an edge program."""

    max_seq_len: int
    prefill_lengths: list[int]


def edge_recipe(name: str, target: str) -> EdgeRecipe:
    """The edge recipe called ``name`` (a famous preset name, or a recipe file that only
    casts to fp32); any other is a ``RecipeError`` listing the ones ``target`` builds."""
    from famous.genai.quantize.recipe import PRESETS, get_recipe

    valid = ", ".join(EDGE_RECIPES)
    key = name.lower()
    if key in EDGE_RECIPES:
        return EDGE_RECIPES[key]
    if key in PRESETS:
        raise RecipeError(
            f"recipe {name!r} ({PRESETS[key].description}) has no {target} program: the "
            f"edge targets build {valid} (XNNPACK's int8 / int4-weight schemes, int8 "
            "activations at run time); use "
            "--target gguf or torch for the other recipes"
        )
    try:
        recipe = get_recipe(name)
    except RecipeError:
        raise RecipeError(
            f"unknown recipe {name!r} for --target {target}: edge recipes are {valid}"
        ) from None
    if recipe.gguf_type or any(s.dtype != "fp32" for s in recipe.specs()):
        raise RecipeError(
            f"recipe {recipe.name!r} ({name}) quantizes weights in a way {target} does not "
            f"build: the edge targets build {valid}"
        )
    return EDGE_RECIPES["fp32"]


def check_edge_runtime(target: str) -> None:
    """Raise ``ExporterUnavailable`` (with what to install) when ``target`` cannot export."""
    if target == "executorch":
        from famous.genai.export.executorch import require_executorch

        require_executorch()
    elif not converter_available():
        raise LiteRTUnavailable(f"litert-torch is not available: {CONVERTER_HINT}")


def plan_signatures(
    hf: dict[str, Any], prefill_lengths: list[int] | None, max_seq_len: int | None
) -> SignaturePlan:
    """The plan for ``config.json`` ``hf``: defaults are 8 … 1024 that fit and
    ``min(1024, max_position_embeddings)``; a length that does not fit is a ``ValueError``."""
    from famous.genai.export.signatures import DEFAULT_PREFILL_LENGTHS, check_prefill_lengths

    cap = int(max_seq_len or min(EDGE_MAX_SEQ_LEN, int(hf.get("max_position_embeddings", 2048))))
    lengths = prefill_lengths or [n for n in DEFAULT_PREFILL_LENGTHS if n <= cap] or [cap]
    return SignaturePlan(cap, check_prefill_lengths(lengths, cap))


def export_edge(
    model_dir: Path,
    out: Path,
    target: str,
    plan: SignaturePlan,
    recipe: EdgeRecipe = EDGE_RECIPES["fp32"],
) -> list[Path]:
    """Write the ``target`` program of ``model_dir`` (quantized by ``recipe``) to ``out``;
    return the files it needs next to it (signature metadata, tokenizer, config), copied
    into ``out``'s folder."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if target == "executorch":
        from famous.genai.export.executorch import (
            export_executorch,
            meta_path,
            quantize_for_xnnpack,
        )
        from famous.genai.loader import load_model

        model = load_model(model_dir, "fp32", plan.max_seq_len)
        if recipe.executorch:
            quantize_for_xnnpack(model, recipe.name)
        export_executorch(model, out, plan.prefill_lengths, quantized=bool(recipe.executorch))
        del model
    else:
        from famous.genai.export.litert import export_litert, meta_path

        export_litert(
            model_dir,
            out,
            plan.prefill_lengths,
            max_seq_len=plan.max_seq_len,
            quant=recipe.name,
        )
    side = [meta_path(out)]
    for f in EDGE_SIDE_FILES:
        src = model_dir / f
        if src.is_file() and not (out.parent / f).exists():
            shutil.copy2(src, out.parent / f)
        if (out.parent / f).is_file():
            side.append(out.parent / f)
    return side


def kv_cache_bytes(model_dir: Path, max_seq_len: int) -> int:
    """Bytes of one fp32 KV cache of ``max_seq_len`` slots over every block."""
    cfg = load_config(model_dir)
    return sum(
        2 * b.attention.num_key_value_heads * max_seq_len * b.attention.head_dim * 4
        for b in cfg.blocks
    )
