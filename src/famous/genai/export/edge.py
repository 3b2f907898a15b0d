"""Edge programs (ExecuTorch ``.pte``, LiteRT ``.tflite``) of a Hugging Face model folder.

What a build of an edge target needs from genai: the recipe and runtime checks made before
any work, the signature plan (prefill lengths and KV-cache slots), the export itself with the
tokenizer and config files an engine needs next to the program, and the KV cache's size.
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
class SignaturePlan:
    """The prefill signatures and the KV-cache slots of an edge program."""

    max_seq_len: int
    prefill_lengths: list[int]


def check_edge_recipe(recipe: Any, target: str) -> None:
    """Edge targets build fp32 programs (XNNPACK's quantized kernels are not wired yet)."""
    if recipe.gguf_type or any(s.dtype != "fp32" for s in recipe.specs()):
        raise RecipeError(
            f"recipe {recipe.name!r} quantizes weights; famous builds {target} programs in "
            "fp32 (XNNPACK's int8 / int4 kernels are not wired in this build): use "
            f"--quant fp32, or --target gguf / torch for quantized engines"
        )


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


def export_edge(model_dir: Path, out: Path, target: str, plan: SignaturePlan) -> list[Path]:
    """Write the ``target`` program of ``model_dir`` to ``out``; return the files it needs
    next to it (signature metadata, tokenizer, config), copied into ``out``'s folder."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if target == "executorch":
        from famous.genai.export.executorch import export_executorch, meta_path
        from famous.genai.loader import load_model

        model = load_model(model_dir, "fp32", plan.max_seq_len)
        export_executorch(model, out, plan.prefill_lengths)
        del model
    else:
        from famous.genai.export.litert import export_litert, meta_path

        export_litert(model_dir, out, plan.prefill_lengths, max_seq_len=plan.max_seq_len)
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
