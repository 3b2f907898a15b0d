"""Errors that tell the user what is wrong with a model directory and what to do next.

Each is a kind of ``famous.errors.FamousError`` (the one error root), so the edges that map
kinds to exit codes and HTTP statuses know them without knowing genai.
"""

from __future__ import annotations

from famous.errors import FamousError, Incompatible


class GenAIError(FamousError):
    """Base class of every error famous.genai raises on bad input."""


class UnsupportedModelError(GenAIError, Incompatible):
    """``config.json`` names a ``model_type`` no famous family implements."""


class CheckpointError(GenAIError):
    """The checkpoint files cannot be used as they are."""


class TruncatedCheckpointError(CheckpointError):
    """A safetensors shard is shorter than its header says (an interrupted download)."""


class PickleCheckpointRefused(CheckpointError):
    """Only pickle checkpoints (``.bin`` / ``.pt``) exist and the caller did not opt in."""


class WeightMapError(CheckpointError):
    """The checkpoint's tensors do not match the family's weight map (unused or missing)."""


class ShapeMismatchError(CheckpointError):
    """A checkpoint tensor's shape disagrees with what ``config.json`` implies."""


class ExporterUnavailable(GenAIError, Incompatible, ImportError):
    """An exporter's optional dependency (ExecuTorch, litert-torch) is not installed."""
