"""famous.genai: author decoder models from building blocks, load Hub checkpoints, generate.

Importing this package is light; torch is imported by the submodules that need it
(``famous.genai.loader``, ``famous.genai.pipeline``, ``famous.genai.layers`` …).
"""

from __future__ import annotations

from famous.genai.errors import (
    CheckpointError,
    GenAIError,
    PickleCheckpointRefused,
    ShapeMismatchError,
    TruncatedCheckpointError,
    UnsupportedModelError,
    WeightMapError,
)

__all__ = [
    "CheckpointError",
    "GenAIError",
    "PickleCheckpointRefused",
    "ShapeMismatchError",
    "TruncatedCheckpointError",
    "UnsupportedModelError",
    "WeightMapError",
]
