"""The selection audit's findings that no capture shows, replayed on constructed roots.

Each root (``constructed_roots.py``) goes through the real detector and the matchmaker for
every built-in package; the expected engine per package is in ``golden/constructed.yaml``,
and the report facts each finding is about are asserted here.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import yaml

from famous.hardware.detector import detect
from famous.hardware.host import Host
from famous.hardware.report import HardwareReport
from famous.manifests.loader import builtin_package_names, find_package
from famous.matchmaker.select import NoCompatibleEngine, evaluate, select

from .constructed_roots import BUILDERS, GiB

EXPECTED: dict[str, dict[str, str | None]] = yaml.safe_load(
    (Path(__file__).parent / "golden" / "constructed.yaml").read_text()
)


def _report(name: str, tmp_path: Path) -> HardwareReport:
    root = BUILDERS[name](tmp_path / name)
    out: list[HardwareReport] = []
    worker = threading.Thread(target=lambda: out.append(detect(Host.fake(root))), daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), f"detecting {name} blocked"
    return out[0]


def test_every_constructed_root_is_covered() -> None:
    assert sorted(EXPECTED) == sorted(BUILDERS)
    assert all(sorted(row) == builtin_package_names() for row in EXPECTED.values())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_selection_on_constructed_root(name: str, tmp_path: Path) -> None:
    report = _report(name, tmp_path)
    for package_name, expected in EXPECTED[name].items():
        package = find_package(package_name)
        if expected is None:
            with pytest.raises(NoCompatibleEngine):
                select(package, report)
            continue
        selection = select(package, report)
        got = f"{selection.engine.name}/{selection.option_name}"
        assert got == expected, f"{name} / {package_name}: {got} != {expected}"
        assert selection.memory.fits


def test_rdna2_dgpu_is_discrete_budgeted_by_its_vram_with_the_gfx_override(
    tmp_path: Path,
) -> None:
    report = _report("rdna2-laptop", tmp_path)
    (gpu,) = report.gpus
    assert gpu.integrated is False and gpu.gpu is not None
    assert gpu.gpu.vram_bytes == 8 * GiB and gpu.gpu.microarchitecture == "gfx1032"
    package = find_package("qwen3-8b")
    selection = select(package, report)
    assert selection.memory.budget == "VRAM of 0000:03:00.0"
    assert selection.evaluation.score >= 100  # a discrete GPU's score, not an iGPU's
    assert selection.environment == {"HSA_OVERRIDE_GFX_VERSION": "10.3.0"}
    q8 = evaluate(package, package.engines["rocm"], report, option="q8_0")
    assert not q8.compatible  # ~9 GiB does not "fit" an 8 GiB card any more
    assert "VRAM of 0000:03:00.0 is 8.0 GiB: does not fit" in q8.reasons[0]
    cpu = select(package, report, engine="cpu")
    assert cpu.environment == {}


def test_arc_b580_without_clinfo_has_its_vram(tmp_path: Path) -> None:
    report = _report("arc-b580-without-clinfo", tmp_path)
    (gpu,) = report.gpus
    assert gpu.gpu is not None and gpu.gpu.vram_bytes == 12 * GiB
    assert any("VRAM read from sysfs" in w for w in report.warnings)


def test_nvidia_without_driver_says_to_install_it(tmp_path: Path) -> None:
    report = _report("nvidia-without-driver", tmp_path)
    assert [d.vendor_id for d in report.gpus] == [0x10DE]
    assert any("install the NVIDIA driver (it provides nvidia-smi)" in w for w in report.warnings)


def test_host_symlinks_and_fifos_are_refused(tmp_path: Path) -> None:
    report = _report("host-symlinks", tmp_path)
    assert report.memory.total_bytes == 0 and report.cpus == []
    assert any(
        w.endswith(
            "/proc/meminfo is a symlink loop (absolute links resolve inside the root), not read"
        )
        for w in report.warnings
    )
    assert any("/proc/cpuinfo is not a regular file" in w for w in report.warnings)


def test_a_pulled_rocm_model_launches_with_the_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from famous.services.environment import artifact_environment

    monkeypatch.setenv("FAMOUS_HARDWARE_ROOT", str(BUILDERS["rdna2-laptop"](tmp_path / "r")))
    assert artifact_environment("qwen3-8b", "rocm") == {"HSA_OVERRIDE_GFX_VERSION": "10.3.0"}
    assert artifact_environment("qwen3-8b", "cpu") == {}
    assert artifact_environment("no-such-package", "rocm") == {}
    monkeypatch.setenv("FAMOUS_HARDWARE_ROOT", str(BUILDERS["hailo-box"](tmp_path / "h")))
    assert artifact_environment("qwen3-8b", "rocm") == {}  # no RDNA2 part here


def test_launch_hands_the_override_to_the_engine_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real process started by the scheduler's launch sees the manifest's variable."""
    import sys

    from famous.runtimes.base import LaunchSpec, RuntimeAdapter
    from famous.serve import scheduler
    from famous.serve.models import ModelSpec

    seen = tmp_path / "seen.txt"

    class EnvEcho(RuntimeAdapter):
        runtime = "llamacpp"
        server = "env-echo"
        install_command = "-"

        def command(self, spec: LaunchSpec, port: int) -> list[str]:
            code = "import os,sys; open(sys.argv[1],'w').write(os.environ.get(sys.argv[2],'-'))"
            return [sys.executable, "-c", code, str(seen), "HSA_OVERRIDE_GFX_VERSION"]

    monkeypatch.setattr(scheduler, "get_runtime", lambda _name, _cfg: EnvEcho())
    monkeypatch.delenv("HSA_OVERRIDE_GFX_VERSION", raising=False)
    monkeypatch.setenv("FAMOUS_HARDWARE_ROOT", str(BUILDERS["rdna2-laptop"](tmp_path / "r")))
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    for engine, expected in (("rocm", "10.3.0"), ("cpu", "-")):
        spec = ModelSpec(name="qwen3-8b", path=model, engine=engine, package="qwen3-8b")
        process = scheduler.launch_engine(spec)
        assert process.popen is not None and process.popen.wait(timeout=30) == 0
        assert seen.read_text() == expected


def test_only_the_experimental_npu_engine_fits_and_the_error_says_how_to_opt_in(
    tmp_path: Path,
) -> None:
    report = _report("npu-laptop", tmp_path)
    package = find_package("qwen3-8b")
    with pytest.raises(NoCompatibleEngine) as info:
        select(package, report)
    assert "`famous pull qwen3-8b --engine intel-npu`" in str(info.value)
    chosen = select(package, report, engine="intel-npu")
    assert chosen.memory.fits and chosen.engine.experimental
