"""Running an exported program: the backend for an artifact by its suffix (``.pt2``,
``.pte``, ``.tflite``) and famous's ``Pipeline`` over it.

``signatures`` describes and exports the programs; ``executorch`` and ``litert`` lower and
run them; this module sits above all three, so none of them imports another's runner.
"""

from __future__ import annotations

from pathlib import Path

from famous.genai.errors import GenAIError
from famous.genai.export.executorch import ExecuTorchBackend
from famous.genai.export.litert import LiteRTBackend
from famous.genai.export.signatures import (
    MultiSignatureProgram,
    SignatureBackend,
    SignatureModel,
    TorchExportBackend,
)
from famous.genai.models import load_config
from famous.genai.pipeline import Pipeline
from famous.genai.tokenizer import Tokenizer


def open_backend(path: str | Path) -> SignatureBackend:
    """The backend for an exported artifact, by its suffix: ``.pt2`` (torch.export),
    ``.pte`` (ExecuTorch) or ``.tflite`` (LiteRT)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such artifact")
    suffix = path.suffix.lower()
    if suffix == ".pt2":
        return TorchExportBackend(MultiSignatureProgram.load(path))
    if suffix == ".pte":
        return ExecuTorchBackend(path)
    if suffix == ".tflite":
        return LiteRTBackend(path)
    raise GenAIError(f"{path}: famous runs .pt2, .pte and .tflite signature artifacts")


def signature_pipeline(
    backend: SignatureBackend | str | Path, model_dir: str | Path, chunk: bool = True
) -> Pipeline:
    """famous's ``Pipeline`` (tokenizer from ``model_dir``) over an exported engine."""
    if isinstance(backend, str | Path):
        backend = open_backend(backend)
    cfg = None
    if (Path(model_dir) / "config.json").is_file():
        cfg = load_config(model_dir)
    return Pipeline(SignatureModel(backend, cfg, chunk), Tokenizer(model_dir), Path(model_dir).name)
