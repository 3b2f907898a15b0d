"""Will a model option fit? weights + KV cache + runtime overhead against the right budget.

KV cache = 2 (K and V) × layers × context × kv_heads × head_dim × bytes per element.

The memory policy, one for every path:

- **What a pull chooses a variant for** is the machine, not this moment: GPU engines get the
  VRAM of the GPU they matched; CPU engines and GPUs that share system memory (integrated,
  Apple unified — counted once) get **total RAM minus a reserve** of max(2 GiB, 10 %) for the
  system and other programs (``planning_ram``). ``MemAvailable`` is not used: an open browser
  must not cost a laptop its 8B model, and a capture without ``MemAvailable`` gets the same
  answer as one with it.
- **What a load checks** is the memory available now (``load_check``): when the variant does
  not fit, the message names the largest smaller variant of the engine that would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from famous.units import format_size, format_sizes

if TYPE_CHECKING:
    from famous.hardware.report import HardwareReport
    from famous.manifests.schema import EngineManifest, ModelOption, ModelShape

# What a runtime needs besides weights and KV cache (compute buffers, the process itself),
# when its manifest does not say (`memory:`). Measured with llama.cpp at 4k context: ~250 MiB.
DEFAULT_OVERHEAD = 384 * 1024**2


@dataclass(kw_only=True)
class MemoryEstimate:
    option: str
    weights_bytes: int
    kv_cache_bytes: int
    overhead_bytes: int
    total_bytes: int
    budget_bytes: int | None
    budget: str  # what was checked: "usable RAM" (total less reserve) or "VRAM of 0000:01:00.0"
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


RESERVE_MIN = 2 * 1024**3
RESERVE_FRACTION = 0.10


def planning_ram(total_bytes: int) -> int | None:
    """RAM a variant is chosen for: total minus max(2 GiB, 10 %); None when total is unknown."""
    if total_bytes <= 0:
        return None
    return max(total_bytes - max(RESERVE_MIN, int(total_bytes * RESERVE_FRACTION)), 0)


def memory_budget(
    engine: EngineManifest, report: HardwareReport, gpu_slot: str | None
) -> tuple[int | None, str]:
    """The bytes this engine may use on this machine, and a name for them."""
    ram = planning_ram(report.memory.total_bytes)
    if engine.uses_gpu and gpu_slot:
        device = next((d for d in report.devices if d.slot == gpu_slot), None)
        gpu = device.gpu if device else None
        if gpu and gpu.vram_bytes and not gpu.unified_memory and not device.integrated:
            return gpu.vram_bytes, f"VRAM of {gpu_slot}"
        return ram, f"usable RAM (shared with {gpu_slot})"
    return ram, "usable RAM"


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


def load_check(need: int, available: int, smaller: list[tuple[str, int]], name: str) -> str | None:
    """None when ``need`` fits ``available`` now, else why not and the variant that would.

    ``smaller`` is (variant, bytes it needs) for the engine's other variants.
    """
    if need <= available:
        return None
    need_text, have_text = format_sizes(need, available)
    why = f"{name!r} needs {need_text}; {have_text} of RAM is available now"
    fitting = [(v, n) for v, n in smaller if n <= available and n < need]
    if fitting:
        variant, size = max(fitting, key=lambda item: item[1])
        return f"{why}; variant {variant} ({format_size(size)}) would fit"
    return f"{why}; close other programs or stop a loaded model"
