"""ExecuTorch: one ``.pte`` with a method per signature (``prefill_N`` …, ``decode``),
XNNPACK-delegated, run by famous's pipeline through ExecuTorch's Python runtime.

Needs the ``executorch`` extra (``pip install executorch``). The signature metadata (cache
shapes, prefill lengths, eos ids) is written next to the program as
``<stem>.signatures.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from famous.genai.errors import ExporterUnavailable, GenAIError
from famous.genai.export.signatures import (
    MultiSignatureProgram,
    SignatureMeta,
    export_signatures,
)

INSTALL_HINT = "pip install 'famous[executorch]'  (or: pip install executorch)"


class ExecuTorchUnavailable(ExporterUnavailable):
    """The ``executorch`` package is not installed."""


def require_executorch() -> None:
    """Raise ``ExecuTorchUnavailable`` (with the install command) unless executorch imports."""
    try:
        import executorch.exir  # noqa: F401
    except ImportError as e:
        raise ExecuTorchUnavailable(
            f"the ExecuTorch target needs the executorch package ({e}); {INSTALL_HINT}"
        ) from e


def meta_path(pte: str | Path) -> Path:
    pte = Path(pte)
    return pte.with_name(pte.stem + ".signatures.json")


def lower_to_executorch(program: MultiSignatureProgram, xnnpack: bool = True) -> bytes:
    """Lower every signature into one ExecuTorch program (XNNPACK delegate by default).

    Composite ops (``famous::*``) have no ExecuTorch kernel; they are decomposed to their
    ATen reference first.
    """
    require_executorch()
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    programs = program.programs
    if program.meta.composite_ops:
        from famous.genai.ops import decompositions

        programs = {n: ep.run_decompositions(decompositions()) for n, ep in programs.items()}
    partitioners = []
    if xnnpack:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
            XnnpackPartitioner,
        )

        partitioners.append(XnnpackPartitioner())
    edge = to_edge_transform_and_lower(
        programs, partitioner=partitioners, compile_config=EdgeCompileConfig()
    )
    return edge.to_executorch().buffer


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """Quantize every ``nn.Linear`` of ``model`` in place the way XNNPACK runs int8: int8
    weights with one scale per output channel, activations quantized per token at run
    time (torchao's ``Int8DynamicActivationIntxWeightConfig``, which ExecuTorch documents
    for its XNNPACK backend). Embeddings and a tied LM head (``F.linear`` on the embedding)
    keep fp32."""
    require_executorch()  # torchao comes with executorch
    from torchao.quantization import quantize_
    from torchao.quantization.granularity import PerAxis
    from torchao.quantization.quant_api import Int8DynamicActivationIntxWeightConfig

    config = Int8DynamicActivationIntxWeightConfig(
        weight_dtype=torch.int8, weight_granularity=PerAxis(0)
    )
    quantize_(model, config)
    return model


def export_executorch(
    model: nn.Module,
    path: str | Path,
    prefill_lengths: Sequence[int] = (8, 64),
    *,
    xnnpack: bool = True,
) -> Path:
    """famous model → ``path`` (.pte) + its ``.signatures.json``."""
    require_executorch()
    program = export_signatures(model, prefill_lengths)
    data = lower_to_executorch(program, xnnpack)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    meta_path(path).write_text(program.meta.to_json(), encoding="utf-8")
    tmp.replace(path)
    return path


class ExecuTorchBackend:
    """Runs a ``.pte``'s methods with ``executorch.runtime``."""

    def __init__(self, path: str | Path, meta: SignatureMeta | None = None) -> None:
        require_executorch()
        from executorch.runtime import Runtime

        path = Path(path)
        self.path = path
        self.meta = meta or SignatureMeta.from_json(meta_path(path).read_text(encoding="utf-8"))
        self._program = Runtime.get().load_program(path)
        missing = set(self.meta.signatures) - set(self._program.method_names)
        if missing:
            raise GenAIError(f"{path} lacks the methods {sorted(missing)}")
        self._methods = {n: self._program.load_method(n) for n in self.meta.signatures}

    def run(self, name: str, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        return list(self._methods[name].execute([t.contiguous() for t in inputs]))


__all__ = [
    "ExecuTorchBackend",
    "ExecuTorchUnavailable",
    "export_executorch",
    "lower_to_executorch",
    "meta_path",
    "quantize_dynamic_int8",
]
