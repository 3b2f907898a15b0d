"""Broken or missing probe output gives warnings, never exceptions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hw_fakes import TimeoutHost, linux_root, pci, write

from famous.hardware import Host, detect
from famous.hardware import detector as detector_module

NVIDIA_SLOT = "0000:01:00.0"


def nvidia_root(tmp_path: Path) -> Path:
    root = linux_root(tmp_path)
    pci(root, NVIDIA_SLOT, 0x030000, 0x10DE, 0x2684)
    return root


def test_nvidia_smi_garbage_is_a_warning(tmp_path: Path) -> None:
    root = nvidia_root(tmp_path)
    write(root, f"run/nvidia-smi/{NVIDIA_SLOT}/memory.total", "lots of memory\n")
    write(root, f"run/nvidia-smi/{NVIDIA_SLOT}/compute_cap", "[N/A]\n")
    report = detect(Host.fake(root))
    (gpu,) = report.gpus
    assert gpu.gpu is not None
    assert gpu.gpu.vram_bytes is None and gpu.gpu.compute_capability is None
    assert gpu.integrated is False
    assert any("memory.total" in w and "unreadable" in w for w in report.warnings)
    assert any("compute_cap" in w and "unreadable" in w for w in report.warnings)


def test_nvidia_smi_without_this_gpu_is_a_warning(tmp_path: Path) -> None:
    root = nvidia_root(tmp_path)
    (root / "run/nvidia-smi").mkdir(parents=True)
    report = detect(Host.fake(root))
    assert report.gpus[0].gpu is not None and report.gpus[0].gpu.vram_bytes is None
    assert any("exited with 6" in w and "VRAM unknown" in w for w in report.warnings)
    assert any("compute capability unknown" in w for w in report.warnings)


def test_nvidia_smi_missing_is_one_warning(tmp_path: Path) -> None:
    report = detect(Host.fake(nvidia_root(tmp_path)))
    assert report.warnings == [
        f"NVIDIA GPU {NVIDIA_SLOT}: neither NVML nor nvidia-smi is available "
        "(driver not installed?), VRAM and compute capability unknown; "
        "install the NVIDIA driver (it provides nvidia-smi) so CUDA engines can use it"
    ]


def test_nvidia_smi_timeout_is_a_warning(tmp_path: Path) -> None:
    root = nvidia_root(tmp_path)
    pci(root, "0000:02:00.0", 0x030000, 0x10DE, 0x2684)
    report = detect(TimeoutHost(root))
    # One timeout is enough: nvidia-smi is not asked again for the other field or GPU.
    assert report.warnings == [
        f"nvidia-smi memory.total for {NVIDIA_SLOT} timed out; "
        "not asking nvidia-smi again, NVIDIA GPU details unknown"
    ]
    assert report.gpus[0].gpu is not None and report.gpus[0].gpu.vram_bytes is None


def test_nvidia_smi_in_gib_and_plain(tmp_path: Path) -> None:
    root = nvidia_root(tmp_path)
    write(root, f"run/nvidia-smi/{NVIDIA_SLOT}/memory.total", "24564 MiB\n")
    write(root, f"run/nvidia-smi/{NVIDIA_SLOT}/compute_cap", "8.9\n")
    report = detect(Host.fake(root))
    assert report.gpus[0].gpu is not None
    assert report.gpus[0].gpu.vram_bytes == 24564 * 1024**2
    assert report.gpus[0].gpu.compute_capability == "8.9"
    assert report.warnings == []


def intel_root(tmp_path: Path) -> Path:
    root = linux_root(tmp_path)
    pci(root, "0000:00:02.0", 0x030000, 0x8086, 0x9A49)
    return root


def test_broken_clinfo_json_is_a_warning(tmp_path: Path) -> None:
    root = intel_root(tmp_path)
    write(root, "run/clinfo.json", '{"platforms": [ {"CL_PLATFORM_NAME": ')
    report = detect(Host.fake(root))
    (gpu,) = report.gpus
    assert gpu.integrated is True and gpu.gpu is not None and gpu.gpu.vram_bytes is None
    assert any("clinfo --json printed invalid JSON" in w for w in report.warnings)


def test_clinfo_of_unexpected_shape_is_harmless(tmp_path: Path) -> None:
    root = intel_root(tmp_path)
    write(root, "run/clinfo.json", json.dumps({"devices": "nope"}))
    report = detect(Host.fake(root))
    assert report.warnings == [
        "Intel GPU 0000:00:02.0: not reported by clinfo (no OpenCL driver for it?)"
    ]


def test_clinfo_timeout_is_a_warning(tmp_path: Path) -> None:
    report = detect(TimeoutHost(intel_root(tmp_path)))
    assert report.warnings == ["clinfo --json timed out; Intel GPU memory unknown"]


def test_clinfo_matched_by_bus_info(tmp_path: Path) -> None:
    root = intel_root(tmp_path)
    cl = {
        "CL_DEVICE_TYPE": {"raw": 4, "type": ["CL_DEVICE_TYPE_GPU"]},
        "CL_DEVICE_VENDOR_ID": 0x8086,
        "CL_DEVICE_PCI_BUS_INFO_KHR": "PCI-E, 0000:00:02.0",
        "CL_DEVICE_GLOBAL_MEM_SIZE": 123456789,
        "CL_DEVICE_HOST_UNIFIED_MEMORY": True,
    }
    write(root, "run/clinfo.json", json.dumps({"platforms": [], "devices": [{"online": [cl]}]}))
    report = detect(Host.fake(root))
    assert report.gpus[0].gpu is not None and report.gpus[0].gpu.vram_bytes == 123456789
    assert report.warnings == []


def test_broken_disk_stats_is_a_warning(tmp_path: Path) -> None:
    root = linux_root(tmp_path)
    write(root, "run/disk-stats.json", "{not json")
    report = detect(Host.fake(root))
    assert report.disk is None
    assert any("disk-stats.json is not valid JSON" in w for w in report.warnings)


def test_disk_stats_without_numbers_is_a_warning(tmp_path: Path) -> None:
    root = linux_root(tmp_path)
    write(root, "run/disk-stats.json", json.dumps({"/": {"total": "big"}}))
    report = detect(Host.fake(root))
    assert report.disk is None and any("lacks integer" in w for w in report.warnings)


def test_empty_root_gives_a_report_with_warnings(tmp_path: Path) -> None:
    report = detect(Host.fake(tmp_path))
    assert report.architecture == "unknown"
    assert report.cpus == [] and report.devices == [] and report.disk is None
    assert report.memory.total_bytes == 0
    assert any("/proc/cpuinfo" in w for w in report.warnings)
    assert any("/proc/meminfo" in w for w in report.warnings)


def test_architecture_guessed_from_cpuinfo_without_kernel_arch(tmp_path: Path) -> None:
    root = linux_root(tmp_path)
    (root / "proc/sys/kernel/arch").unlink()
    assert detect(Host.fake(root)).architecture == "amd64"


def test_unreadable_pci_entry_is_skipped_with_a_warning(tmp_path: Path) -> None:
    root = linux_root(tmp_path)
    write(root, "sys/bus/pci/devices/0000:00:1f.0/class", "garbage")
    report = detect(Host.fake(root))
    assert report.devices == []
    assert any("0000:00:1f.0" in w for w in report.warnings)


def test_amd_gpu_without_kfd(tmp_path: Path) -> None:
    root = linux_root(tmp_path)
    pci(root, "0000:03:00.0", 0x030000, 0x1002, 0x744C, mem_info_vram_total="25753026560\n")
    report = detect(Host.fake(root))
    (gpu,) = report.gpus
    assert gpu.integrated is False and gpu.gpu is not None
    assert gpu.gpu.vram_bytes == 25753026560 and gpu.gpu.microarchitecture is None
    assert report.warnings == [
        "AMD GPU 0000:03:00.0: no kfd topology (amdgpu/ROCm not loaded?), gfx target unknown"
    ]


def test_amd_discrete_gpu_via_kfd_location_id(tmp_path: Path) -> None:
    root = linux_root(tmp_path)
    pci(root, "0000:03:00.0", 0x030000, 0x1002, 0x744C)
    props = "gfx_target_version 110000\nlocation_id 768\ndomain 0\nlocal_mem_size 25753026560\n"
    write(root, "sys/class/kfd/kfd/topology/nodes/1/properties", props)
    write(root, "sys/class/kfd/kfd/topology/nodes/0/properties", "cpu_cores_count 16\n")
    report = detect(Host.fake(root))
    (gpu,) = report.gpus
    assert gpu.gpu is not None and gpu.gpu.microarchitecture == "gfx1100"
    assert gpu.gpu.vram_bytes == 25753026560 and gpu.integrated is False
    assert report.warnings == []


def test_kfd_node_without_matching_gpu_is_a_warning(tmp_path: Path) -> None:
    root = linux_root(tmp_path)
    pci(root, "0000:03:00.0", 0x030000, 0x1002, 0x744C)
    props = "gfx_target_version 90010\nlocation_id 2304\ndomain 0\n"
    write(root, "sys/class/kfd/kfd/topology/nodes/1/properties", props)
    report = detect(Host.fake(root))
    assert any("gfx90a" in w and "matches no AMD PCI GPU" in w for w in report.warnings)


def test_a_probe_that_crashes_becomes_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_args: object) -> None:
        raise RuntimeError("unexpected layout")

    monkeypatch.setattr(detector_module, "detect_pci", boom)
    report = detect(Host.fake(linux_root(tmp_path)))
    assert report.devices == []
    assert "PCI probe failed: RuntimeError: unexpected layout" in report.warnings
    assert report.cpus  # the rest of the report is still there


def test_fake_root_reads_stay_inside_the_root(tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text("secret")
    root = tmp_path / "root"
    root.mkdir()
    host = Host.fake(root)
    assert host.read_text("/../outside.txt") is None
    assert host.read_text("../../outside.txt") is None


RDNA2_SLOT = "0000:03:00.0"


def rdna2_laptop_root(root: Path, vram_total: bool = True) -> Path:
    """A discrete RX 6600M-like card whose kfd node says local_mem_size 0 (its VRAM in a bank)."""
    linux_root(root)
    extra = {"mem_info_vram_total": "8573157376\n"} if vram_total else {}
    pci(root, RDNA2_SLOT, 0x030000, 0x1002, 0x73FF, **extra)
    nodes = "sys/class/kfd/kfd/topology/nodes"
    write(root, f"{nodes}/0/properties", "cpu_cores_count 16\nsimd_count 0\n")
    write(root, f"{nodes}/0/mem_banks/0/properties", "heap_type 0\nsize_in_bytes 33554432000\n")
    props = "cpu_cores_count 0\nsimd_count 56\ngfx_target_version 100302\n"
    props += "location_id 768\ndomain 0\nlocal_mem_size 0\n"
    write(root, f"{nodes}/1/properties", props)
    write(root, f"{nodes}/1/mem_banks/0/properties", "heap_type 1\nsize_in_bytes 8573157376\n")
    return root


@pytest.mark.parametrize("vram_total", [True, False])
def test_amd_discrete_gpu_with_vram_only_in_mem_banks(tmp_path: Path, vram_total: bool) -> None:
    report = detect(Host.fake(rdna2_laptop_root(tmp_path, vram_total)))
    (gpu,) = report.gpus
    assert gpu.gpu is not None and gpu.gpu.microarchitecture == "gfx1032"
    assert gpu.integrated is False and gpu.gpu.unified_memory is False
    assert gpu.gpu.vram_bytes == 8573157376
    assert report.warnings == []


def test_amd_apu_whose_bank_is_the_gtt_window_stays_integrated(tmp_path: Path) -> None:
    root = linux_root(tmp_path)
    pci(root, "0000:c4:00.0", 0x038000, 0x1002, 0x1114, mem_info_vram_total="8589934592\n")
    nodes = "sys/class/kfd/kfd/topology/nodes"
    props = "cpu_cores_count 0\nsimd_count 16\ngfx_target_version 110502\n"
    props += "location_id 50176\ndomain 0\nlocal_mem_size 0\n"
    write(root, f"{nodes}/1/properties", props)
    write(root, f"{nodes}/1/mem_banks/0/properties", "heap_type 1\nsize_in_bytes 46206824448\n")
    (gpu,) = detect(Host.fake(root)).gpus
    assert gpu.integrated is True and gpu.gpu is not None and gpu.gpu.unified_memory
    assert gpu.gpu.vram_bytes == 8589934592  # the carve-out, not the GTT window


ARC_SLOT = "0000:03:00.0"


@pytest.mark.parametrize(
    ("rel", "value"),
    [
        (f"sys/bus/pci/devices/{ARC_SLOT}/tile0/physical_vram_size_bytes", "12884901888\n"),
        (f"sys/bus/pci/devices/{ARC_SLOT}/drm/card1/lmem_total_bytes", "0x300000000\n"),
        (f"sys/bus/pci/devices/{ARC_SLOT}/drm/card1/prelim_lmem_total_bytes", "12884901888\n"),
    ],
)
def test_intel_dgpu_vram_from_sysfs_without_clinfo(tmp_path: Path, rel: str, value: str) -> None:
    root = linux_root(tmp_path)
    pci(root, "0000:00:02.0", 0x030000, 0x8086, 0x4680)  # the iGPU: no local memory
    pci(root, ARC_SLOT, 0x030000, 0x8086, 0xE20B)  # Arc B580
    write(root, rel, value)
    report = detect(Host.fake(root))
    igpu, arc = report.gpus
    assert arc.integrated is False and arc.gpu is not None
    assert arc.gpu.vram_bytes == 12 * 1024**3
    assert igpu.gpu is not None and igpu.gpu.vram_bytes is None
    assert report.warnings == [
        "Intel GPU 0000:00:02.0: clinfo is not installed, GPU memory unknown",
        f"Intel GPU {ARC_SLOT}: clinfo is not installed, VRAM read from sysfs; "
        "OpenVINO on it needs Intel's OpenCL runtime (intel-opencl-icd)",
    ]


def test_xe_tiles_are_summed(tmp_path: Path) -> None:
    root = linux_root(tmp_path)
    pci(root, ARC_SLOT, 0x038000, 0x8086, 0x0BD5)
    for tile in ("tile0", "tile1"):
        write(root, f"sys/bus/pci/devices/{ARC_SLOT}/{tile}/physical_vram_size_bytes", "1024\n")
    (gpu,) = detect(Host.fake(root)).gpus
    assert gpu.gpu is not None and gpu.gpu.vram_bytes == 2048
