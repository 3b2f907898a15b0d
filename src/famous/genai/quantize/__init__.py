"""Quantization recipes (data), quantized modules for famous's PyTorch models, and quality
reports. Import-light: torch is imported by the submodules that need it."""

from famous.genai.quantize.recipe import (
    PRESETS,
    TARGETS,
    QuantSpec,
    Recipe,
    RecipeError,
    get_recipe,
)

__all__ = ["PRESETS", "TARGETS", "QuantSpec", "Recipe", "RecipeError", "get_recipe"]
