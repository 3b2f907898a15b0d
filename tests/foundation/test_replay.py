"""Every captured machine, through the real detector and the matchmaker, for every package.

The expected engine per machine is what a person reading the capture would pick:
CUDA where an NVIDIA driver reports a usable GPU, vLLM only from compute capability 7.0,
Ampere's build on Ampere servers, AVX-512 builds where the flags are there, OpenVINO on an
Intel GPU only where its OpenCL runtime answers, and a smaller variant (or nothing) where
RAM is short.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from famous.hardware.detector import detect
from famous.hardware.host import Host
from famous.manifests.loader import builtin_package_names, find_package
from famous.matchmaker.select import NoCompatibleEngine, evaluate, select

from .conftest import machine_names, machine_root

EXPECTED: dict[str, dict[str, str | None]] = yaml.safe_load(
    (Path(__file__).parent / "golden" / "selections.yaml").read_text()
)


def _report(machine: str):
    return detect(Host.fake(machine_root(machine)))


def test_every_capture_is_covered() -> None:
    names = machine_names()
    if not names:
        pytest.skip("machine captures not found (shared/ beside the repo)")
    assert sorted(EXPECTED) == names
    assert all(sorted(row) == builtin_package_names() for row in EXPECTED.values())


@pytest.mark.parametrize("machine", sorted(EXPECTED))
def test_selection_on_captured_machine(machine: str) -> None:
    report = _report(machine)
    for name, expected in EXPECTED[machine].items():
        package = find_package(name)
        if expected is None:
            with pytest.raises(NoCompatibleEngine) as info:
                select(package, report)
            assert "does not fit" in str(info.value) or "no matching" in str(info.value)
            continue
        selection = select(package, report)
        got = f"{selection.engine.name}/{selection.option_name}"
        assert got == expected, f"{machine} / {name}: {got} != {expected}"
        assert selection.evaluation.compatible and not selection.engine.experimental
        assert selection.memory.fits
        # Deterministic: the same machine always gets the same answer.
        again = select(package, report)
        assert (again.engine.name, again.option_name) == (
            selection.engine.name,
            selection.option_name,
        )


def _why(machine: str, package: str, engine: str) -> str:
    pkg = find_package(package)
    ev = evaluate(pkg, pkg.engines[engine], _report(machine))
    assert not ev.compatible
    return "\n".join(ev.reasons)


def test_gtx_1080_ti_is_too_old_for_vllm() -> None:
    why = _why("i5-3570k+arc-a580+gtx1080ti", "llama-3.1-8b-instruct", "vllm-cuda")
    assert "compute capability 6.1 does not satisfy >=7.0" in why


def test_raspberry_pi_has_no_avx512_and_8b_is_sized_for_ram_less_reserve() -> None:
    assert "architecture arm64 is not amd64" in _why("raspberry-pi-5", "qwen3-8b", "cpu-avx512")
    report = _report("raspberry-pi-5")
    selection = select(find_package("qwen3-8b"), report)
    # 7.8 GiB total, 4.1 GiB free in the capture: the variant is chosen for 7.8 - 2 GiB.
    assert selection.memory.budget == "usable RAM"
    assert selection.memory.budget_bytes == report.memory.total_bytes - 2 * 1024**3
    assert selection.memory.total_bytes > report.memory.available_bytes


def test_too_little_ram_for_8b_is_explained() -> None:
    with pytest.raises(NoCompatibleEngine) as info:
        select(find_package("qwen3-8b"), _report("asus-ux301l"))
    message = str(info.value)
    assert "q4_k_m: needs 5.6 GiB" in message and "usable RAM is 5.1 GiB" in message


def test_intel_gpu_without_opencl_runtime_is_explained() -> None:
    why = _why("mustang", "qwen2.5-0.5b-instruct", "intel-gpu")
    assert "needs 1.0 GiB VRAM, device 0000:03:00.0 reports none" in why


def test_amd_gfx_target_is_checked() -> None:
    why = _why("lenovo-thinkpad-p16s", "qwen2.5-0.5b-instruct", "rocm")
    assert "microarchitecture gfx1152 is not gfx900" in why


def test_ampere_altra_matches_through_its_root_complex() -> None:
    pkg = find_package("qwen2.5-0.5b-instruct")
    ev = evaluate(pkg, pkg.engines["ampere"], _report("hp-proliant-rl300-gen11-altra"))
    matched = [c for c in ev.devices if c.matched and c.group == "anyof"]
    assert [c.requirement for c in matched] == ["pci vendor 0x1def"]
    assert ev.compatible and ev.score == 25


def test_experimental_npu_engine_is_never_picked_automatically() -> None:
    pkg = find_package("qwen2.5-0.5b-instruct")
    report = _report("intel-core-ultra-7-256v")
    npu = evaluate(pkg, pkg.engines["intel-npu"], report)
    assert npu.compatible and npu.verdict == "exptl"
    chosen = select(pkg, report)
    assert chosen.engine.name != "intel-npu" and npu.score > chosen.evaluation.score
    assert select(pkg, report, engine="intel-npu").engine.name == "intel-npu"


def test_short_memory_falls_back_to_a_smaller_variant() -> None:
    pkg = find_package("llama-3.1-8b-instruct")
    selection = select(pkg, _report("asus-ux301l"))
    assert selection.option_name == "q3_k_m"
    default = next(m for m in selection.evaluation.memory if m.option == "q4_k_m")
    assert not default.fits and selection.memory.fits


@pytest.mark.parametrize("machine", sorted(EXPECTED))
def test_show_machine_shortcut_agrees_with_every_engine(machine: str) -> None:
    from famous.matchmaker.advice import (
        builtin_engines,
        unused_accelerator_notes,
        unused_accelerators,
    )

    report = _report(machine)
    assert unused_accelerator_notes(report) == unused_accelerators(report, builtin_engines())
