"""Matchmaker rules on hand-built machines: scoring, memory fit, tie-breaks, reasons."""

from __future__ import annotations

import pytest

from famous.hardware.report import CpuGroup, Device, GpuInfo, HardwareReport, MemoryInfo
from famous.manifests.schema import EngineManifest, ModelManifest, ModelPackage
from famous.matchmaker.advice import no_engine_message, unused_accelerators
from famous.matchmaker.memory import MemoryEstimate, kv_cache_bytes, load_check
from famous.matchmaker.select import NoCompatibleEngine, UnknownEngine, evaluate_all, select
from famous.units import format_size, format_sizes

GiB = 1024**3


def machine(
    ram_gib: float = 16, flags: tuple[str, ...] = ("avx2",), gpus: tuple[Device, ...] = ()
) -> HardwareReport:
    return HardwareReport(
        architecture="amd64",
        cpus=[
            CpuGroup(
                architecture="amd64",
                manufacturer_id="GenuineIntel",
                model_name="Test CPU",
                flags=list(flags),
                physical_cores=4,
                logical_cores=8,
            )
        ],
        memory=MemoryInfo(total_bytes=int(ram_gib * GiB), available_bytes=int(ram_gib * GiB)),
        devices=list(gpus),
    )


def nvidia(vram_gib: float, cc: str, slot: str = "0000:01:00.0") -> Device:
    return Device(
        slot=slot,
        kind="gpu",
        device_class=0x030000,
        vendor_id=0x10DE,
        device_id=0x2204,
        integrated=False,
        gpu=GpuInfo(vram_bytes=int(vram_gib * GiB), compute_capability=cc),
    )


def engine(
    name: str, devices: dict, options: list[str], default: str | None = None, **extra
) -> EngineManifest:
    return EngineManifest.model_validate(
        {
            "name": name,
            "summary": name,
            "description": name,
            "vendor": "test",
            "runtime": "llamacpp",
            "devices": devices,
            "model-options": options,
            "default-model-option": default or options[0],
            **extra,
        }
    )


def package(*engines: EngineManifest) -> ModelPackage:
    model = ModelManifest.model_validate(
        {
            "name": "m",
            "description": "d",
            "license": "mit",
            "capabilities": ["text"],
            "shape": {
                "parameters": 8_000_000_000,
                "layers": 32,
                "kv-heads": 8,
                "head-dim": 128,
                "context": 8192,
            },
            "options": {
                "q4": {
                    "repo": "o/m-GGUF",
                    "format": "gguf",
                    "quantization": "Q4_K_M",
                    "files": ["*Q4*"],
                    "size": "4.9GB",
                },
                "q8": {
                    "repo": "o/m-GGUF",
                    "format": "gguf",
                    "quantization": "Q8_0",
                    "files": ["*Q8*"],
                    "size": "8.5GB",
                },
                "q2": {
                    "repo": "o/m-GGUF",
                    "format": "gguf",
                    "quantization": "Q2_K",
                    "files": ["*Q2*"],
                    "size": "3.2GB",
                },
            },
        }
    )
    return ModelPackage(model=model, engines={e.name: e for e in engines}, source="test")


CPU = engine("cpu", {"anyof": [{"type": "cpu", "architecture": "amd64"}]}, ["q8", "q4", "q2"], "q8")
AVX512 = engine(
    "avx512",
    {"allof": [{"type": "cpu", "architecture": "amd64", "flags": ["avx512f"]}]},
    ["q8", "q4"],
)
CUDA = engine(
    "cuda",
    {"allof": [{"type": "gpu", "vendor-id": "10de", "compute-capability": [">=7.0"]}]},
    ["q8", "q4"],
)


def test_kv_cache_formula() -> None:
    shape = package(CPU).model.shape
    # 2 × 32 layers × 8192 ctx × 8 kv heads × 128 head dim × 2 bytes = 1 GiB
    assert kv_cache_bytes(shape, 2.0) == GiB


def test_more_specific_engine_wins_and_gpu_beats_cpu() -> None:
    pkg = package(CPU, AVX512, CUDA)
    assert select(pkg, machine()).engine.name == "cpu"
    assert select(pkg, machine(flags=("avx2", "avx512f"))).engine.name == "avx512"
    assert select(pkg, machine(flags=("avx512f",), gpus=(nvidia(24, "8.9"),))).engine.name == "cuda"


def test_gpu_memory_is_checked_against_vram_not_ram() -> None:
    pkg = package(CPU, CUDA)
    small = select(pkg, machine(ram_gib=64, gpus=(nvidia(6, "8.6"),)))
    # q8 (8.5 GB) does not fit 6 GiB VRAM: falls back to the largest that does, q4.
    assert (small.engine.name, small.option_name) == ("cuda", "q4")
    assert small.memory.budget == "VRAM of 0000:01:00.0"
    tiny = select(pkg, machine(ram_gib=64, gpus=(nvidia(2, "8.6"),)))
    assert tiny.engine.name == "cpu"
    cuda = next(ev for ev in tiny.evaluations if ev.engine == "cuda")
    assert not cuda.compatible
    assert "VRAM of 0000:01:00.0 is 2.0 GiB: does not fit" in cuda.reasons[0]


def test_compute_capability_is_really_checked() -> None:
    pkg = package(CPU, CUDA)
    chosen = select(pkg, machine(gpus=(nvidia(11, "6.1"),)))
    assert chosen.engine.name == "cpu"
    cuda = next(ev for ev in chosen.evaluations if ev.engine == "cuda")
    assert cuda.reasons == ["compute capability 6.1 does not satisfy >=7.0"]


def test_default_option_then_largest_that_fits_then_incompatible() -> None:
    pkg = package(CPU)
    # Budget: total RAM less max(2 GiB, 10 %).
    assert select(pkg, machine(ram_gib=16)).option_name == "q8"
    assert select(pkg, machine(ram_gib=8)).option_name == "q4"
    assert select(pkg, machine(ram_gib=6.5)).option_name == "q2"
    with pytest.raises(NoCompatibleEngine) as info:
        select(pkg, machine(ram_gib=5))
    assert "q2: needs 4.4 GiB" in str(info.value) and "usable RAM is 3.0 GiB" in str(info.value)


def test_a_pull_chooses_for_total_ram_not_what_is_free_this_moment() -> None:
    pkg = package(CPU)
    busy = machine(ram_gib=32)
    busy.memory.available_bytes = 3 * GiB  # a browser is open
    unknown = machine(ram_gib=32)
    unknown.memory.available_bytes = 0  # a capture without MemAvailable
    assert select(pkg, busy).option_name == select(pkg, unknown).option_name == "q8"
    assert select(pkg, busy).memory.budget_bytes == 32 * GiB - int(32 * GiB * 0.1)
    small = machine(ram_gib=4)  # the 2 GiB floor of the reserve applies
    assert select(package(CPU), machine(ram_gib=16)).memory.budget_bytes == 16 * GiB - 2 * GiB
    with pytest.raises(NoCompatibleEngine) as info:
        select(pkg, small)
    assert "usable RAM is 2.0 GiB" in str(info.value)


def test_a_load_checks_what_is_free_now_and_names_the_variant_that_fits() -> None:
    smaller = [("q4", 5 * GiB), ("q2", 3 * GiB)]
    assert load_check(8 * GiB, 9 * GiB, smaller, "m") is None
    assert load_check(8 * GiB, 6 * GiB, smaller, "m") == (
        "'m' needs 8.0 GiB; 6.0 GiB of RAM is available now; variant q4 (5.0 GiB) would fit"
    )
    assert load_check(8 * GiB, 2 * GiB, smaller, "m") == (
        "'m' needs 8.0 GiB; 2.0 GiB of RAM is available now; "
        "close other programs or stop a loaded model"
    )


def test_experimental_engines_only_by_name() -> None:
    exp = engine(
        "exp", {"anyof": [{"type": "cpu", "architecture": "amd64"}]}, ["q4"], experimental=True
    )
    pkg = package(exp)
    with pytest.raises(NoCompatibleEngine) as info:
        select(pkg, machine())
    # Not "no engine can run here": it can, with an explicit opt-in, and the error says how.
    assert info.value.hint == (
        "experimental engine exp can run here with an explicit opt-in: "
        "`famous pull m --engine exp` (or `famous use-engine m exp` to keep it)"
    )
    assert no_engine_message("m", info.value.evaluations).startswith(
        "no engine runs here automatically; experimental engine exp can run here"
    )
    assert select(pkg, machine(), engine="exp").engine.name == "exp"


def test_no_opt_in_hint_when_nothing_experimental_fits() -> None:
    pkg = package(CUDA)
    with pytest.raises(NoCompatibleEngine) as info:
        select(pkg, machine())
    assert info.value.hint is None
    assert no_engine_message("m", info.value.evaluations) == (
        "no engine can run here; see `famous show-engine MODEL ENGINE` for reasons"
    )


def test_sizes_that_round_alike_are_printed_apart() -> None:
    assert format_sizes(8 * GiB, int(7.98 * GiB)) == ("8.00 GiB", "7.98 GiB")
    assert format_sizes(8 * GiB, 8 * GiB) == ("8.0 GiB", "8.0 GiB")
    assert format_sizes(4 * GiB, 8 * GiB) == ("4.0 GiB", "8.0 GiB")
    assert format_sizes(8 * GiB, 8 * GiB - 1) == ("8589934592 B", "8589934591 B")
    fit = MemoryEstimate(
        option="q8",
        weights_bytes=7 * GiB,
        kv_cache_bytes=GiB // 2,
        overhead_bytes=GiB // 2,
        total_bytes=8 * GiB,
        budget_bytes=int(7.98 * GiB),
        budget="VRAM of 0000:01:00.0",
        fits=False,
    )
    assert "needs 8.00 GiB" in fit.explain()
    assert "VRAM of 0000:01:00.0 is 7.98 GiB: does not fit" in fit.explain()


def test_vram_requirement_prints_a_difference_that_rounding_would_hide() -> None:
    eight = engine("big", {"allof": [{"type": "gpu", "vendor-id": "10de", "vram": "8GiB"}]}, ["q4"])
    ev = evaluate_all(package(eight), machine(gpus=(nvidia(7.98, "8.6"),)))[0]
    assert ev.reasons == ["needs 8.00 GiB VRAM, device 0000:01:00.0 has 7.98 GiB"]


def test_unused_accelerators_are_named() -> None:
    hailo = Device(
        slot="0000:02:00.0", kind="npu", device_class=0x120000, vendor_id=0x1E60, device_id=0x2864
    )
    report = machine(gpus=(nvidia(8, "8.6"), hailo))
    assert unused_accelerators(report, [CPU, CUDA]) == [
        "NPU 0000:02:00.0 (Hailo-8, 1e60:2864): detected, no engine uses it"
    ]
    assert unused_accelerators(report, [CPU]) == [
        "GPU 0000:01:00.0 (10de:2204): detected, no engine uses it",
        "NPU 0000:02:00.0 (Hailo-8, 1e60:2864): detected, no engine uses it",
    ]


def test_ties_break_deterministically_by_name() -> None:
    a = engine("b-engine", {"anyof": [{"type": "cpu", "architecture": "amd64"}]}, ["q4"])
    b = engine("a-engine", {"anyof": [{"type": "cpu", "architecture": "amd64"}]}, ["q4"])
    assert select(package(a, b), machine()).engine.name == "a-engine"
    assert [ev.engine for ev in evaluate_all(package(a, b), machine())] == ["a-engine", "b-engine"]


def test_named_engine_that_cannot_run_needs_force() -> None:
    pkg = package(CPU, CUDA)
    with pytest.raises(NoCompatibleEngine) as info:
        select(pkg, machine(), engine="cuda")
    assert "use --force" in str(info.value)
    assert select(pkg, machine(), engine="cuda", force=True).pinned
    with pytest.raises(UnknownEngine):
        select(pkg, machine(), engine="nope")


def test_unified_memory_gpu_counts_ram_once() -> None:
    apple = Device(
        bus="soc",
        slot="apple-gpu",
        kind="gpu",
        device_class=0x030000,
        vendor_id=0x106B,
        device_id=0,
        integrated=True,
        gpu=GpuInfo(vram_bytes=16 * GiB, unified_memory=True),
    )
    mlx = engine(
        "mlx", {"allof": [{"type": "gpu", "bus": "soc", "vendor-id": "0x106b"}]}, ["q8", "q4"]
    )
    chosen = select(package(mlx), machine(ram_gib=8, gpus=(apple,)))
    assert chosen.option_name == "q4"
    assert chosen.memory.budget == "usable RAM (shared with apple-gpu)"


def test_the_gateway_load_check_names_a_smaller_variant_of_a_builtin_package() -> None:
    from famous.services.variants import load_refusal, variant_needs

    needs = dict(variant_needs("qwen3-8b", "cpu"))
    assert needs["q4_k_m"] < needs["q8_0"]
    assert load_refusal("qwen3-8b", "cpu", needs["q8_0"], needs["q8_0"]) is None
    why = load_refusal("qwen3-8b", "cpu", needs["q8_0"], needs["q4_k_m"] + 1)
    assert why is not None and why.endswith(
        f"variant q4_k_m ({format_size(needs['q4_k_m'])}) would fit"
    )
    assert variant_needs("no-such-model", "cpu") == []
