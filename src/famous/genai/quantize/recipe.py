"""Quantization recipes: data, not code.

A ``Recipe`` is a default ``QuantSpec`` plus overrides for the embedding, the attention
projections, the feed-forward projections, the LM head, and whole blocks by index
(negative indices count from the end: ``-1`` is the last block). Precedence, most specific
first: block override (for the attention / feed-forward weights of that block) → component
override → default. Norms and biases are never quantized.

A recipe is checked against the target that will run it (``check_target``): dynamic int8
needs a runtime that quantizes activations (famous's eager engine), GGUF stores int4 only
in blocks of 32 (Q4_0), llama.cpp's K-quant mixes exist only for GGUF, and so on — each
refusal says what to use instead.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from famous.errors import InvalidInput

DType = Literal["fp32", "fp16", "bf16", "int8", "int4"]
Component = Literal["embedding", "attention", "feed_forward", "lm_head"]
TARGETS = ("torch", "gguf")


class RecipeError(InvalidInput, ValueError):
    """A recipe that is malformed or that its target cannot run."""


class QuantSpec(BaseModel):
    """How one weight is stored (and, for dynamic int8, how activations are quantized)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dtype: DType = "fp32"
    granularity: Literal["channel", "block"] | None = Field(
        default=None, description="int8: channel (default) or block; int4: block only"
    )
    block_size: int | None = Field(default=None, description="block granularity: 32 … 256")
    activations: Literal["none", "int8"] = Field(
        default="none", description="int8: dynamic per-token int8 activations (int8 weights)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> QuantSpec:
        integer = self.dtype in ("int8", "int4")
        if not integer and (self.granularity or self.block_size):
            raise ValueError(f"{self.dtype} is a cast: granularity / block-size do not apply")
        if self.dtype == "int4":
            if self.granularity == "channel":
                raise ValueError(
                    "int4 is blockwise: per-channel int4 loses too much accuracy; "
                    "use granularity: block with block-size 32 or 128"
                )
            object.__setattr__(self, "granularity", "block")
            if self.block_size is None:
                object.__setattr__(self, "block_size", 32)
        if self.dtype == "int8" and self.granularity is None:
            object.__setattr__(self, "granularity", "block" if self.block_size else "channel")
        if self.granularity == "block":
            if self.block_size is None:
                object.__setattr__(self, "block_size", 32)
            if self.block_size < 8 or self.block_size % 8:
                raise ValueError(f"block-size {self.block_size}: use a multiple of 8 (32, 128 …)")
        if self.granularity == "channel" and self.block_size:
            raise ValueError("block-size needs granularity: block")
        if self.activations == "int8" and self.dtype != "int8":
            raise ValueError("dynamic int8 activations need int8 weights")
        return self

    @property
    def label(self) -> str:
        if self.dtype in ("fp32", "fp16", "bf16"):
            return self.dtype
        base = f"{self.dtype}-" + (
            "channel" if self.granularity == "channel" else f"b{self.block_size}"
        )
        return base + ("+dyn-act" if self.activations == "int8" else "")


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "custom"
    description: str = ""
    default: QuantSpec = Field(default_factory=QuantSpec)
    embedding: QuantSpec | None = None
    attention: QuantSpec | None = None
    feed_forward: QuantSpec | None = None
    lm_head: QuantSpec | None = None
    blocks: dict[int, QuantSpec] = Field(
        default_factory=dict, description="block index (negative from the end) → spec"
    )
    gguf_type: Literal["q4_k_m", "q5_k_m", "q6_k"] | None = Field(
        default=None, description="a llama.cpp K-quant mix, made by llama.cpp's quantizer"
    )

    def spec_for(
        self, component: str, block: int | None = None, n_blocks: int | None = None
    ) -> QuantSpec:
        """The spec of one weight (component: embedding, attention, feed_forward, lm_head)."""
        if block is not None and self.blocks and component in ("attention", "feed_forward"):
            for idx, spec in self.blocks.items():
                resolved = idx + n_blocks if idx < 0 and n_blocks is not None else idx
                if resolved == block:
                    return spec
        override = getattr(self, component, None) if component in Component.__args__ else None
        return override or self.default

    def specs(self) -> list[QuantSpec]:
        return [
            s
            for s in (
                self.default,
                self.embedding,
                self.attention,
                self.feed_forward,
                self.lm_head,
                *self.blocks.values(),
            )
            if s is not None
        ]

    def check_target(self, target: str) -> None:
        """Raise RecipeError when ``target`` cannot run this recipe (the message says why)."""
        if target not in TARGETS:
            raise RecipeError(
                f"unknown target {target!r}: famous builds {', '.join(TARGETS)} "
                "(litert and executorch are not available in this build)"
            )
        if target == "torch":
            if self.gguf_type:
                raise RecipeError(
                    f"recipe {self.name!r} is llama.cpp's {self.gguf_type.upper()} mix, which only "
                    "exists as a GGUF; use --target gguf, or int4 / int8 for the torch engine"
                )
            return
        if self.gguf_type and any(s.dtype in ("int8", "int4") for s in self.specs()):
            raise RecipeError(
                f"recipe {self.name!r} is llama.cpp's {self.gguf_type.upper()} mix, which "
                "llama.cpp's quantizer makes from an F16 file, choosing every tensor's type "
                "itself; int8 / int4 overrides cannot be part of it. Drop them, or use "
                "per-component int8 (Q8_0) / int4 (Q4_0) specs without gguf_type"
            )
        for spec in self.specs():
            if spec.activations == "int8":
                raise RecipeError(
                    f"recipe {self.name!r} uses dynamic int8 (int8 activations computed at run "
                    "time); GGUF types are weight-only, llama.cpp cannot run it. Use 'int8' "
                    "(Q8_0) for GGUF, or --target torch for dynamic int8"
                )
            if spec.dtype == "int4" and spec.block_size != 32:
                raise RecipeError(
                    f"recipe {self.name!r} uses int4 blocks of {spec.block_size}; GGUF stores int4 "
                    "in blocks of 32 (Q4_0) or 256 (K-quants): use 'int4' (block 32) or 'q4_k_m'"
                )
            if spec.dtype == "int8" and spec.granularity == "block" and spec.block_size != 32:
                raise RecipeError(
                    f"recipe {self.name!r} uses int8 blocks of {spec.block_size}; GGUF's Q8_0 "
                    "has blocks of 32: use block-size 32 or per-channel int8"
                )

    def gguf_tensor_type(self, component: str, block: int | None, n_blocks: int | None) -> str:
        """The GGUF type famous writes for one weight (check_target('gguf') first)."""
        spec = self.spec_for(component, block, n_blocks)
        # int8 per channel → Q8_0 (scales per 32 values: finer than per channel)
        return {"fp32": "f32", "fp16": "f16", "bf16": "bf16", "int8": "q8_0", "int4": "q4_0"}[
            spec.dtype
        ]

    def gguf_outtype(self) -> str:
        if self.gguf_type:
            return self.gguf_type
        return self.gguf_tensor_type("default", None, None)


_I8 = QuantSpec(dtype="int8")
_I4_32 = QuantSpec(dtype="int4", block_size=32)
_I4_128 = QuantSpec(dtype="int4", block_size=128)

PRESETS: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(name="fp32", description="no quantization (reference)", default=QuantSpec()),
        Recipe(
            name="fp16", description="fp16 cast of every weight", default=QuantSpec(dtype="fp16")
        ),
        Recipe(
            name="bf16", description="bf16 cast of every weight", default=QuantSpec(dtype="bf16")
        ),
        Recipe(
            name="int8", description="weight-only int8, one scale per output channel", default=_I8
        ),
        Recipe(
            name="int4",
            description="weight-only int4 in blocks of 32; embedding and LM head int8",
            default=_I4_32,
            embedding=_I8,
            lm_head=_I8,
        ),
        Recipe(
            name="int4-b128",
            description="weight-only int4 in blocks of 128; embedding and LM head int8",
            default=_I4_128,
            embedding=_I8,
            lm_head=_I8,
        ),
        Recipe(
            name="int4-mixed",
            description="int4 blocks of 32, first and last blocks int8, embedding and LM head int8",
            default=_I4_32,
            embedding=_I8,
            lm_head=_I8,
            blocks={0: _I8, -1: _I8},
        ),
        Recipe(
            name="dynamic-int8",
            description="int8 weights per channel and per-token int8 activations",
            default=QuantSpec(dtype="int8", activations="int8"),
            embedding=_I8,
            lm_head=_I8,
        ),
        Recipe(
            name="q8_0",
            description="GGUF Q8_0 everywhere",
            default=QuantSpec(dtype="int8", block_size=32),
        ),
        Recipe(name="q4_0", description="GGUF Q4_0 everywhere (embedding too)", default=_I4_32),
        Recipe(
            name="q4_k_m",
            description="llama.cpp's Q4_K_M mix (from famous's F16)",
            default=QuantSpec(dtype="fp16"),
            gguf_type="q4_k_m",
        ),
        Recipe(
            name="q5_k_m",
            description="llama.cpp's Q5_K_M mix (from famous's F16)",
            default=QuantSpec(dtype="fp16"),
            gguf_type="q5_k_m",
        ),
        Recipe(
            name="q6_k",
            description="llama.cpp's Q6_K (from famous's F16)",
            default=QuantSpec(dtype="fp16"),
            gguf_type="q6_k",
        ),
    )
}
# GGUF spellings of the casts
ALIASES = {"f32": "fp32", "f16": "fp16", "float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}


def get_recipe(name_or_path: str | Recipe) -> Recipe:
    """A preset by name, or a recipe file (YAML / JSON) by path."""
    from pathlib import Path

    if isinstance(name_or_path, Recipe):
        return name_or_path
    key = ALIASES.get(name_or_path.lower(), name_or_path.lower())
    if key in PRESETS:
        return PRESETS[key]
    path = Path(name_or_path)
    if path.is_file():
        import yaml
        from pydantic import ValidationError

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise RecipeError(f"{path}: not valid YAML: {e}") from e
        if not isinstance(data, dict):
            raise RecipeError(
                f"{path}: a recipe is a mapping (default:, embedding:, attention:, "
                f"feed_forward:, lm_head:, blocks:), not a {type(data).__name__}"
            )
        data.setdefault("name", path.stem)
        try:
            return Recipe.model_validate(data)
        except ValidationError as e:
            raise RecipeError(f"{path}: {e}") from e
    raise RecipeError(
        f"unknown recipe {name_or_path!r}: presets are {', '.join(PRESETS)}, "
        "or give the path of a recipe file (YAML)"
    )
