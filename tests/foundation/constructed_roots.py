"""Machines no capture shows, built as fake roots: each one a finding of the selection audit.

Every builder lays out only what the kernel would expose for the point it makes (a discrete
RDNA2 card whose VRAM is only in kfd's memory banks, an Arc B580 without clinfo, a capture
whose files point at the host or block), on a plain 8-core x86 laptop with 32 GiB of RAM.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

GiB = 1024**3
KFD = "sys/class/kfd/kfd/topology/nodes"
PCI = "sys/bus/pci/devices"


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _cpuinfo(cpus: int) -> str:
    flags = "fpu sse4_2 avx avx2 fma f16c lm"
    return "".join(
        f"processor\t: {n}\nvendor_id\t: AuthenticAMD\nmodel name\t: Laptop CPU\n"
        f"physical id\t: 0\ncore id\t\t: {n}\nflags\t\t: {flags}\n\n"
        for n in range(cpus)
    )


def _device(root: Path, slot: str, cls: int, vendor: int, device: int) -> Path:
    for name, value in (("class", f"0x{cls:06x}"), ("vendor", f"0x{vendor:04x}")):
        _write(root, f"{PCI}/{slot}/{name}", value + "\n")
    _write(root, f"{PCI}/{slot}/device", f"0x{device:04x}\n")
    return root


def laptop(root: Path, ram_gib: float = 32, free_gib: float = 20) -> Path:
    _write(root, "proc/cpuinfo", _cpuinfo(8))
    total, free = int(ram_gib * 1024**2), int(free_gib * 1024**2)
    meminfo = f"MemTotal: {total} kB\nMemAvailable: {free} kB\n"
    _write(root, "proc/meminfo", meminfo + "SwapTotal: 0 kB\nSwapFree: 0 kB\n")
    _write(root, "proc/sys/kernel/arch", "x86_64\n")
    _write(root, "sys/devices/system/cpu/online", "0-7\n")
    disk = {"/": {"total": 1000 * GiB, "avail": 500 * GiB}}
    _write(root, "run/disk-stats.json", json.dumps(disk))
    return root


def rdna2_laptop(root: Path) -> Path:
    """An RX 6600M-class laptop dGPU (gfx1032): ``local_mem_size 0``, 8 GiB in a mem bank."""
    laptop(root)
    _device(root, "0000:03:00.0", 0x030000, 0x1002, 0x73FF)
    _write(root, f"{PCI}/0000:03:00.0/mem_info_vram_total", f"{8 * GiB}\n")
    _write(root, f"{KFD}/0/properties", "cpu_cores_count 8\nsimd_count 0\n")
    props = "simd_count 56\ngfx_target_version 100302\nlocation_id 768\nlocal_mem_size 0\n"
    _write(root, f"{KFD}/1/properties", props)
    _write(root, f"{KFD}/1/mem_banks/0/properties", f"heap_type 1\nsize_in_bytes {8 * GiB}\n")
    return root


def arc_b580_without_clinfo(root: Path) -> Path:
    """An Arc B580 on the xe driver, 12 GiB of VRAM in sysfs, no clinfo installed."""
    laptop(root)
    _device(root, "0000:03:00.0", 0x030000, 0x8086, 0xE20B)
    _write(root, f"{PCI}/0000:03:00.0/tile0/physical_vram_size_bytes", f"{12 * GiB}\n")
    return root


def nvidia_without_driver(root: Path) -> Path:
    """An RTX 4060 laptop GPU on PCI, no NVIDIA driver (no NVML, no nvidia-smi)."""
    return _device(laptop(root), "0000:01:00.0", 0x030000, 0x10DE, 0x28E0)


def host_symlinks(root: Path) -> Path:
    """A capture whose meminfo is an absolute symlink (the host's) and cpuinfo a FIFO."""
    laptop(root)
    (root / "proc/meminfo").unlink()
    (root / "proc/meminfo").symlink_to("/proc/meminfo")
    (root / "proc/cpuinfo").unlink()
    os.mkfifo(root / "proc/cpuinfo")
    return root


def hailo_box(root: Path) -> Path:
    """A board with a Hailo-8 M.2 NPU (class 0x1200), which no engine runs on."""
    return _device(laptop(root), "0000:02:00.0", 0x120000, 0x1E60, 0x2864)


def npu_laptop(root: Path) -> Path:
    """A Lunar Lake-class laptop with 7.4 GiB: an 8B model fits its NPU's int4 build only."""
    laptop(root, ram_gib=7.4, free_gib=5)
    _device(root, "0000:00:02.0", 0x030000, 0x8086, 0x64A0)
    _device(root, "0000:00:0b.0", 0x120000, 0x8086, 0x643E)
    return root


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "rdna2-laptop": rdna2_laptop,
    "arc-b580-without-clinfo": arc_b580_without_clinfo,
    "nvidia-without-driver": nvidia_without_driver,
    "host-symlinks": host_symlinks,
    "hailo-box": hailo_box,
    "npu-laptop": npu_laptop,
}
