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


def lower_to_executorch(
    program: MultiSignatureProgram, xnnpack: bool = True, quantized: bool = False
) -> bytes:
    """Lower every signature into one ExecuTorch program (XNNPACK delegate by default).

    Composite ops (``famous::*``) have no ExecuTorch kernel; they are decomposed to their
    ATen reference first. ``quantized``: the model went through ``quantize_for_xnnpack``, so
    torchao's dequantize + embedding pairs are fused into ExecuTorch's quantized embedding.
    """
    require_executorch()
    from executorch.exir import (
        EdgeCompileConfig,
        ExecutorchBackendConfig,
        to_edge_transform_and_lower,
    )

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
    config = ExecutorchBackendConfig(do_quant_fusion_and_const_prop=quantized)
    return edge.to_executorch(config).buffer


XNNPACK_WEIGHTS = {"dynamic-int8": 0, "dynamic-int4": 32}  # edge recipe → int4 group (0: int8)


def untie_lm_head(model: nn.Module) -> nn.Module:
    """Give a tied model its own ``lm_head`` (a copy of the embedding table) so the quantizer
    sees it as an ``nn.Linear``: a tied head is ``F.linear`` on the embedding weight, which
    no linear quantizer reaches, and XNNPACK packs that fp32 weight a second time."""
    if getattr(model, "lm_head", None) is None and hasattr(model, "embed"):
        table = model.embed.weight
        head = nn.Linear(table.shape[1], table.shape[0], bias=False)
        head.weight = nn.Parameter(table.detach().clone(), requires_grad=False)
        model.lm_head = head
    return model


def quantize_for_xnnpack(model: nn.Module, recipe: str = "dynamic-int8") -> nn.Module:
    """Quantize ``model`` in place the way XNNPACK runs it (torchao's configs that ExecuTorch
    documents for its XNNPACK backend): every ``nn.Linear`` but the LM head gets int8
    activations quantized per token at run time and int8 weights per output channel
    (``dynamic-int8``) or int4 weights in groups of 32 (``dynamic-int4``); the LM head
    (untied first) int8 per channel, dynamic activations; the embedding table int8, one
    scale per row, run by ExecuTorch's quantized embedding kernel."""
    require_executorch()  # torchao comes with executorch
    from torchao.quantization import quantize_
    from torchao.quantization.granularity import PerAxis, PerGroup
    from torchao.quantization.quant_api import (
        Int8DynamicActivationIntxWeightConfig,
        IntxWeightOnlyConfig,
    )

    if recipe not in XNNPACK_WEIGHTS:
        valid = ", ".join(XNNPACK_WEIGHTS)
        raise GenAIError(f"ExecuTorch recipe {recipe!r}: famous builds {valid}")
    untie_lm_head(model)
    group = XNNPACK_WEIGHTS[recipe]
    int8 = Int8DynamicActivationIntxWeightConfig(
        weight_dtype=torch.int8, weight_granularity=PerAxis(0)
    )
    body = (
        Int8DynamicActivationIntxWeightConfig(
            weight_dtype=torch.int4, weight_granularity=PerGroup(group)
        )
        if group
        else int8
    )
    head = getattr(model, "lm_head", None)
    quantize_(model, int8, filter_fn=lambda m, _: m is head)
    quantize_(model, body, filter_fn=lambda m, _: isinstance(m, nn.Linear) and m is not head)
    table = IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=PerAxis(0))
    quantize_(model, table, filter_fn=lambda m, _: isinstance(m, nn.Embedding))
    return model


def export_executorch(
    model: nn.Module,
    path: str | Path,
    prefill_lengths: Sequence[int] = (8, 64),
    *,
    xnnpack: bool = True,
    quantized: bool = False,
) -> Path:
    """famous model → ``path`` (.pte) + its ``.signatures.json``; ``quantized``: see
    ``lower_to_executorch``."""
    require_executorch()
    program = export_signatures(model, prefill_lengths)
    data = lower_to_executorch(program, xnnpack, quantized)
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
        import executorch.kernels.quantized  # noqa: F401  (the quantized embedding kernels)
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
    "quantize_for_xnnpack",
    "untie_lm_head",
]
