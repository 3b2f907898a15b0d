"""Will a model option fit? weights + KV cache + runtime overhead against the right budget.

KV cache = 2 (K and V) × layers × context × kv_heads × head_dim × bytes per element.
GPU engines are checked against the VRAM of the GPU they matched; a GPU that shares system
memory (integrated, Apple unified) is checked against available RAM, counted once.
CPU engines are checked against available RAM.
"""

from __future__ import annotations

from pydantic import BaseModel

from famous.hardware.report import HardwareReport
from famous.manifests.schema import EngineManifest, ModelOption, ModelShape
from famous.units import format_size, format_sizes

# What a runtime needs besides weights and KV cache (compute buffers, the process itself),
# when its manifest does not say (`memory:`). Measured with llama.cpp at 4k context: ~250 MiB.
DEFAULT_OVERHEAD = 384 * 1024**2


class MemoryEstimate(BaseModel):
    option: str
    weights_bytes: int
    kv_cache_bytes: int
    overhead_bytes: int
    total_bytes: int
    budget_bytes: int | None
    budget: str  # what was checked: "available RAM" or "VRAM of 0000:01:00.0"
    fits: bool

    def explain(self) -> str:
        need = format_size(self.total_bytes)
        have = "unknown"
        if self.budget_bytes is not None:
            need, have = format_sizes(self.total_bytes, self.budget_bytes)
        verdict = "fits" if self.fits else "does not fit"
        return (
            f"{self.option}: needs {need} (weights {format_size(self.weights_bytes)} + KV cache "
            f"{format_size(self.kv_cache_bytes)} + overhead {format_size(self.overhead_bytes)}), "
            f"{self.budget} is {have}: {verdict}"
        )


def kv_cache_bytes(shape: ModelShape, kv_bytes: float, context: int | None = None) -> int:
    ctx = context or shape.context
    return int(2 * shape.layers * ctx * shape.kv_heads * shape.head_dim * kv_bytes)


def memory_budget(
    engine: EngineManifest, report: HardwareReport, gpu_slot: str | None
) -> tuple[int | None, str]:
    """The bytes this engine may use on this machine, and a name for them."""
    ram = report.memory.available_bytes or None
    if engine.uses_gpu and gpu_slot:
        device = next((d for d in report.devices if d.slot == gpu_slot), None)
        gpu = device.gpu if device else None
        if gpu and gpu.vram_bytes and not gpu.unified_memory and not device.integrated:
            return gpu.vram_bytes, f"VRAM of {gpu_slot}"
        return ram, f"available RAM (shared with {gpu_slot})"
    return ram, "available RAM"


def estimate(
    name: str,
    option: ModelOption,
    shape: ModelShape,
    engine: EngineManifest,
    budget: tuple[int | None, str],
    context: int | None = None,
) -> MemoryEstimate:
    kv = kv_cache_bytes(shape, option.kv_bytes, context)
    overhead = engine.memory if engine.memory is not None else DEFAULT_OVERHEAD
    total = option.size + kv + overhead
    budget_bytes, budget_name = budget
    fits = budget_bytes is None or total <= budget_bytes
    return MemoryEstimate(
        option=name,
        weights_bytes=option.size,
        kv_cache_bytes=kv,
        overhead_bytes=overhead,
        total_bytes=total,
        budget_bytes=budget_bytes,
        budget=budget_name,
        fits=fits,
    )
