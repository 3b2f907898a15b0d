"""Every real machine in ../shared/machines replayed through the detector.

Two layers: a golden summary per machine (``golden/<machine>.yaml``; regenerate with
``FAMOUS_UPDATE_GOLDEN=1`` and review the diff), and hand-written assertions of what a person
reading the capture's files concludes.
"""

from __future__ import annotations

import json
import os

import pytest
import yaml
from hw_captures import GOLDEN, MACHINES, machine_names, machine_root, summary

from famous.hardware import Host, detect
from famous.hardware.report import Device, HardwareReport, report_from_plain
from famous.plain import to_plain

GiB = 1024**3
MiB = 1024**2


@pytest.fixture(autouse=True)
def _stable_home(monkeypatch: pytest.MonkeyPatch) -> None:
    # The disk entry is chosen by where FAMOUS_HOME lives; pin it for stable results.
    monkeypatch.setenv("FAMOUS_HOME", "/home/user/.local/share/famous")


def report_of(name: str) -> HardwareReport:
    return detect(Host.fake(machine_root(name)))


def device(report: HardwareReport, slot: str) -> Device:
    matches = [d for d in report.devices if d.slot == slot]
    assert matches, f"no device {slot}"
    return matches[0]


def test_captures_folder_is_found() -> None:
    if not MACHINES.is_dir():
        pytest.skip(f"real-machine captures not found at {MACHINES}")
    assert len(machine_names()) >= 17


@pytest.mark.parametrize("name", machine_names() or ["<no captures>"])
def test_golden(name: str) -> None:
    report = report_of(name)
    got = summary(report)
    path = GOLDEN / f"{name}.yaml"
    if os.environ.get("FAMOUS_UPDATE_GOLDEN") == "1":
        path.write_text(yaml.safe_dump(got, sort_keys=False, width=100))
    if not path.exists():
        pytest.fail(f"no golden file {path}; run with FAMOUS_UPDATE_GOLDEN=1 and review it")
    assert got == yaml.safe_load(path.read_text())


@pytest.mark.parametrize("name", machine_names() or ["<no captures>"])
def test_every_capture_is_sane(name: str) -> None:
    report = report_of(name)
    assert report.architecture in {"amd64", "arm64", "riscv64"}
    assert report.cpus and all(c.architecture == report.architecture for c in report.cpus)
    assert report.logical_cores >= report.physical_cores > 0
    assert report.memory.total_bytes > GiB
    assert 0 < report.memory.available_bytes <= report.memory.total_bytes
    assert report.disk is not None and report.disk.total_bytes
    assert all(d.integrated is not None and d.gpu is not None for d in report.gpus)
    assert all(d.integrated is None for d in report.devices if d.kind != "gpu")
    # Round-trips through JSON exactly (the CLI's --format json).
    assert report_from_plain(json.loads(json.dumps(to_plain(report)))) == report


def test_i5_3570k_with_gtx_1080_ti_and_arc_a580() -> None:
    r = report_of("i5-3570k+arc-a580+gtx1080ti")
    assert r.architecture == "amd64"
    (cpu,) = r.cpus
    assert cpu.manufacturer_id == "GenuineIntel"
    assert cpu.model_name == "Intel(R) Core(TM) i5-3570K CPU @ 3.40GHz"
    assert (cpu.physical_cores, cpu.logical_cores) == (4, 4)  # no Hyper-Threading
    assert "avx" in cpu.flags and "avx2" not in cpu.flags  # Ivy Bridge
    assert r.memory.total_bytes == 16262132 * 1024
    assert r.memory.available_bytes == 14760924 * 1024
    assert [d.slot for d in r.gpus] == ["0000:00:02.0", "0000:01:00.0", "0000:04:00.0"]

    gtx = device(r, "0000:01:00.0")
    assert (gtx.vendor_id, gtx.device_id) == (0x10DE, 0x1B06)
    assert gtx.gpu is not None
    assert gtx.gpu.vram_bytes == 11264 * MiB
    assert gtx.gpu.compute_capability == "6.1"
    assert gtx.integrated is False and gtx.gpu.unified_memory is False

    # clinfo names 0000:03:00.0 (a bridge); the card is matched by CL_DEVICE_ID_INTEL 0x56a2.
    arc = device(r, "0000:04:00.0")
    assert (arc.vendor_id, arc.device_id) == (0x8086, 0x56A2)
    assert arc.gpu is not None and arc.gpu.vram_bytes == 8096681984
    assert arc.integrated is False and arc.gpu.unified_memory is False

    hd4000 = device(r, "0000:00:02.0")
    assert hd4000.integrated is True and hd4000.gpu is not None
    assert hd4000.gpu.unified_memory is True and hd4000.gpu.vram_bytes is None
    assert r.warnings == [
        "Intel GPU 0000:00:02.0: not reported by clinfo (no OpenCL driver for it?)"
    ]
    assert r.npus == []


def test_xps13_intel_uhd_through_clinfo_and_pci_ids() -> None:
    r = report_of("xps13-7390")
    gpu = device(r, "0000:00:02.0")
    assert gpu.vendor_name == "Intel Corporation"
    assert gpu.device_name == "CometLake-U GT2 [UHD Graphics]"
    assert gpu.integrated is True and gpu.gpu is not None
    assert gpu.gpu.vram_bytes == 14477950976 and gpu.gpu.unified_memory is True
    assert (r.physical_cores, r.logical_cores) == (4, 8)
    assert r.warnings == []


def test_thinkpad_p16s_amd_apu_gfx1152_and_xdna_npu() -> None:
    r = report_of("lenovo-thinkpad-p16s")
    (cpu,) = r.cpus
    assert cpu.manufacturer_id == "AuthenticAMD"
    assert cpu.model_name == "AMD Ryzen AI 7 PRO 350 w/ Radeon 860M"
    assert (cpu.physical_cores, cpu.logical_cores) == (8, 16)
    assert {"avx512f", "avx2"} <= set(cpu.flags)
    (gpu,) = r.gpus
    assert gpu.slot == "0000:c4:00.0" and gpu.device_class == 0x038000
    assert gpu.gpu is not None
    assert gpu.gpu.microarchitecture == "gfx1152"  # gfx_target_version 110502
    assert gpu.gpu.vram_bytes == 8 * GiB  # mem_info_vram_total: the carve-out
    assert gpu.integrated is True and gpu.gpu.unified_memory is True  # kfd local_mem_size 0
    (npu,) = r.npus
    assert (npu.slot, npu.vendor_id, npu.device_id) == ("0000:c5:00.1", 0x1022, 0x17F0)
    assert npu.device_class == 0x118000 and npu.integrated is None
    assert r.warnings == []


@pytest.mark.parametrize(
    ("name", "npu_id"),
    [("hp-zbook-power-16-inch-g11", 0x7D1D), ("intel-core-ultra-7-256v", 0x643E)],
)
def test_intel_npu_class_0x1200(name: str, npu_id: int) -> None:
    r = report_of(name)
    (npu,) = r.npus
    assert (npu.slot, npu.device_class) == ("0000:00:0b.0", 0x120000)
    assert (npu.vendor_id, npu.device_id) == (0x8086, npu_id)


def test_zbook_hybrid_cores_and_unprobed_nvidia() -> None:
    r = report_of("hp-zbook-power-16-inch-g11")
    groups = [(c.core_type, c.physical_cores, c.logical_cores) for c in r.cpus]
    # Core Ultra 7 165H: 6 P-cores with HT, 8 E-cores, 2 low-power E-cores (smaller cache).
    assert groups == [("performance", 6, 12), ("efficient", 8, 8), ("efficient", 2, 2)]
    assert (r.physical_cores, r.logical_cores) == (16, 22)
    assert "intel_ppin" not in r.cpus[0].flags  # shown on some cores only
    nvidia = device(r, "0000:01:00.0")
    assert nvidia.device_class == 0x030200 and nvidia.integrated is False
    assert nvidia.gpu is not None and nvidia.gpu.vram_bytes is None
    assert any("NVIDIA GPU 0000:01:00.0" in w and "nvidia-smi" in w for w in r.warnings)
    assert any("clinfo is not installed" in w for w in r.warnings)


def test_lunar_lake_p_and_e_cores_without_hyperthreading() -> None:
    r = report_of("intel-core-ultra-7-256v")
    assert [(c.core_type, c.physical_cores, c.logical_cores) for c in r.cpus] == [
        ("performance", 4, 4),
        ("efficient", 4, 4),
    ]


@pytest.mark.parametrize("name", ["mustang", "system76-addw4"])
def test_raptor_lake_8p_16e(name: str) -> None:
    r = report_of(name)
    assert [(c.core_type, c.physical_cores, c.logical_cores) for c in r.cpus] == [
        ("performance", 8, 16),
        ("efficient", 16, 16),
    ]


def test_mustang_battlemage_is_discrete() -> None:
    r = report_of("mustang")
    (gpu,) = r.gpus
    assert (gpu.slot, gpu.vendor_id, gpu.device_id) == ("0000:03:00.0", 0x8086, 0xE20B)
    assert gpu.integrated is False
    # meminfo holds only totals, written in bytes.
    assert r.memory.total_bytes == 32876765184
    assert r.memory.available_bytes == r.memory.total_bytes
    assert any("MemAvailable" in w for w in r.warnings)


@pytest.mark.parametrize(
    ("name", "part", "model", "cores"),
    [
        ("ampere-one-siryn", 0xAC3, "AmpereOne (AC03)", 160),
        ("ampere-one-m-banshee-12", 0xAC4, "AmpereOne (AC04)", 192),
    ],
)
def test_ampere_one(name: str, part: int, model: str, cores: int) -> None:
    r = report_of(name)
    assert r.architecture == "arm64"
    (cpu,) = r.cpus
    assert cpu.implementer_id == 0xC0 and cpu.part_number == part
    assert cpu.model_name == model and cpu.manufacturer_id is None
    assert (cpu.physical_cores, cpu.logical_cores) == (cores, cores)
    assert {"asimd", "asimddp", "i8mm", "bf16"} <= set(cpu.flags)


def test_ampere_one_m_bmc_display_is_an_integrated_gpu() -> None:
    (gpu,) = report_of("ampere-one-m-banshee-12").gpus
    assert (gpu.vendor_id, gpu.device_id) == (0x1A03, 0x2000)  # ASPEED BMC VGA
    assert gpu.integrated is True and gpu.gpu is not None and gpu.gpu.vram_bytes is None


def test_altra_neoverse_n1() -> None:
    r = report_of("hp-proliant-rl300-gen11-altra")
    (cpu,) = r.cpus
    assert (cpu.implementer_id, cpu.part_number, cpu.model_name) == (0x41, 0xD0C, "Neoverse-N1")
    assert cpu.logical_cores == 128
    assert "asimddp" in cpu.flags and "i8mm" not in cpu.flags
    (gpu,) = r.gpus  # Matrox G200 of the iLO
    assert gpu.vendor_id == 0x102B and gpu.integrated is True
    assert r.memory.total_bytes == 32357668 * 1024


def test_raspberry_pi_5_cortex_a76() -> None:
    r = report_of("raspberry-pi-5")
    assert r.architecture == "arm64"
    (cpu,) = r.cpus
    assert (cpu.implementer_id, cpu.part_number) == (0x41, 0xD0B)
    assert cpu.model_name == "Cortex-A76"
    assert (cpu.physical_cores, cpu.logical_cores) == (4, 4)
    assert "asimddp" in cpu.flags
    assert r.gpus == [] and r.npus == []
    bridge = device(r, "0000:00:00.0")
    assert bridge.vendor_name == "Broadcom Inc. and subsidiaries"
    assert bridge.device_name == "BCM2712 PCIe Bridge"
    assert bridge.subsystem_vendor_id is None  # not captured
    assert r.memory.swap_total_bytes == 0
    assert r.warnings == []


def test_orange_pi_rv2_risc_v_with_vector() -> None:
    r = report_of("orange-pi-rv2")
    assert r.architecture == "riscv64"
    (cpu,) = r.cpus
    assert cpu.manufacturer_id == "0x710" and cpu.model_name == "Ky(R) X1"
    assert (cpu.physical_cores, cpu.logical_cores) == (8, 8)
    assert cpu.flags[:7] == ["i", "m", "a", "f", "d", "c", "v"]
    assert {"zvfh", "zba", "zbb"} <= set(cpu.flags)
    assert r.disk is not None and r.disk.path == "/var/lib/snapd/snaps"


def test_sifive_p550_risc_v_without_vector() -> None:
    r = report_of("sifive-p550-premier")
    (cpu,) = r.cpus
    assert cpu.manufacturer_id == "0x489" and cpu.model_name == "SiFive P550"
    assert cpu.logical_cores == 4
    assert cpu.flags == [
        "i",
        "m",
        "a",
        "f",
        "d",
        "c",
        "h",
        "zicsr",
        "zifencei",
        "zba",
        "zbb",
        "sscofpmf",
    ]
    assert "v" not in cpu.flags
    assert r.memory.total_bytes == 16350684 * 1024
    assert r.warnings == []
