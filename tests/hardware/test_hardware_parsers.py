"""The small parsers and rules, one behaviour each."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from hw_fakes import linux_root, pci, write

from famous.hardware import Host, detect
from famous.hardware.amd import gfx_target, location_slot
from famous.hardware.cpu import debian_arch, parse_cpuinfo, riscv_extensions
from famous.hardware.host import FakeHost, _pick_disk
from famous.hardware.memory import parse_meminfo
from famous.hardware.nvidia import normalise_bus_id, parse_smi_cc, parse_smi_memory
from famous.hardware.pci import classify
from famous.hardware.pciids import parse_pci_ids


@pytest.mark.parametrize(
    ("machine", "debian"),
    [
        ("x86_64", "amd64"),
        ("aarch64", "arm64"),
        ("riscv64", "riscv64"),
        ("armv7l", "armhf"),
        ("i686", "i386"),
        ("ppc64le", "ppc64el"),
        ("s390x", "s390x"),
    ],
)
def test_debian_arch(machine: str, debian: str) -> None:
    assert debian_arch(machine) == debian


def test_riscv_extensions_expand_g() -> None:
    assert riscv_extensions("rv64gc_zba") == [
        "i",
        "m",
        "a",
        "f",
        "d",
        "zicsr",
        "zifencei",
        "c",
        "zba",
    ]


@pytest.mark.parametrize(
    ("version", "target"),
    [(110502, "gfx1152"), (90010, "gfx90a"), (100300, "gfx1030"), (90400, "gfx940")],
)
def test_gfx_target(version: int, target: str) -> None:
    assert gfx_target(version) == target


def test_location_slot() -> None:
    assert location_slot(0, 50176) == "0000:c4:00.0"
    assert location_slot(1, (0x03 << 8) | (0x1F << 3) | 7) == "0001:03:1f.7"


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("11264 MiB\n", 11264 * 1024**2),
        ("24 GiB", 24 * 1024**3),
        ("8192", 8192 * 1024**2),
        ("[N/A]", None),
        ("", None),
        ("1 MiB\n2 MiB", None),
    ],
)
def test_parse_smi_memory(text: str, size: int | None) -> None:
    assert parse_smi_memory(text) == size


def test_parse_smi_cc() -> None:
    assert parse_smi_cc("6.1\n\n") == "6.1"
    assert parse_smi_cc("10.0") == "10.0"
    assert parse_smi_cc("sm_61") is None


def test_normalise_bus_id() -> None:
    assert normalise_bus_id("00000000:01:00.0") == "0000:01:00.0"
    assert normalise_bus_id("00000001:81:00.0") == "0001:81:00.0"


def test_meminfo_units() -> None:
    values = parse_meminfo(
        "MemTotal: 2 kB\nSwapTotal:       8589930496\nHugePages_Total: 0\nBad: x kB"
    )
    assert values == {"MemTotal": 2048, "SwapTotal": 8589930496, "HugePages_Total": 0}


def test_meminfo_estimates_available_from_free_buffers_cached(tmp_path: Path) -> None:
    root = linux_root(tmp_path)
    write(root, "proc/meminfo", "MemTotal: 100 kB\nMemFree: 10 kB\nBuffers: 5 kB\nCached: 20 kB\n")
    report = detect(Host.fake(root))
    assert report.memory.available_bytes == 35 * 1024
    assert any("MemFree + Buffers + Cached" in w for w in report.warnings)


@pytest.mark.parametrize(
    ("cls", "vendor", "device", "kind"),
    [
        (0x030000, 0x10DE, 1, "gpu"),
        (0x030200, 0x10DE, 1, "gpu"),
        (0x038000, 0x1002, 1, "gpu"),
        (0x120000, 0x8086, 0x643E, "npu"),
        (0x0B4000, 0x1234, 1, "npu"),
        (0x118000, 0x1022, 0x17F0, "npu"),
        (0x118000, 0x8086, 0x1903, "other"),
        (0x060400, 0x8086, 1, "other"),
    ],
)
def test_classify(cls: int, vendor: int, device: int, kind: str) -> None:
    assert classify(cls, vendor, device) == kind


def test_pci_ids_only_wanted_and_stops_at_classes() -> None:
    text = (
        "# comment\n10de  NVIDIA Corporation\n\t1b06  GP102 [GeForce GTX 1080 Ti]\n"
        "\t\t10de 120f  subsystem\n\t2684  AD102\n8086  Intel Corporation\n"
        "C 03  Display controller\n\t00  VGA compatible controller\n"
    )
    names = parse_pci_ids(text, [(0x10DE, 0x1B06)])
    assert names.vendor(0x10DE) == "NVIDIA Corporation"
    assert names.device(0x10DE, 0x1B06) == "GP102 [GeForce GTX 1080 Ti]"
    assert names.device(0x10DE, 0x2684) is None and names.vendor(0x8086) is None


def test_fake_root_never_uses_this_machines_pci_ids(tmp_path: Path) -> None:
    root = linux_root(tmp_path)
    pci(root, "0000:00:02.0", 0x030000, 0x8086, 0x9A49)
    assert detect(Host.fake(root)).gpus[0].vendor_name is None


def test_pick_disk_longest_mount_and_flat_form() -> None:
    data = {"/": {"total": 10, "avail": 5}, "/home": {"total": 20, "avail": 7}}
    assert _pick_disk(data, Path("/home/u/.local/share/famous")).path == "/home"
    assert _pick_disk(data, Path("/opt/famous")).path == "/"
    only = {"/var/lib/snapd/snaps": {"total": 3, "avail": 1}}
    assert _pick_disk(only, Path("/home/u")).path == "/var/lib/snapd/snaps"
    assert _pick_disk({"total": 4, "available": 2}, Path("/x")).available_bytes == 2


def test_cpuinfo_machine_wide_lines_are_kept_apart() -> None:
    procs, machine = parse_cpuinfo("processor : 0\nCPU part : 0xd0b\n\nModel : Raspberry Pi 5\n")
    assert procs == [{"processor": "0", "CPU part": "0xd0b"}]
    assert machine == {"Model": "Raspberry Pi 5"}


def test_big_little_arm_cores_kept_apart(tmp_path: Path) -> None:
    little = (
        "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU part\t: 0xd05\nFeatures\t: fp asimd\n"
    )
    big = little.replace("0xd05", "0xd0b").replace("fp asimd", "fp asimd asimddp")
    blocks = [f"processor\t: {i}\n" + (little if i < 4 else big) for i in range(8)]
    root = linux_root(tmp_path)
    write(root, "proc/cpuinfo", "\n".join(blocks))
    write(root, "proc/sys/kernel/arch", "aarch64")
    cpus = detect(Host.fake(root)).cpus
    assert [(c.model_name, c.part_number, c.logical_cores) for c in cpus] == [
        ("Cortex-A55", 0xD05, 4),
        ("Cortex-A76", 0xD0B, 4),
    ]
    assert cpus[1].flags == ["fp", "asimd", "asimddp"]


def test_sysfs_core_types_split_hybrid_intel(tmp_path: Path) -> None:
    root = linux_root(tmp_path)
    write(root, "sys/devices/cpu_core/cpus", "0\n")
    write(root, "sys/devices/cpu_atom/cpus", "1\n")
    cpus = detect(Host.fake(root)).cpus
    assert [(c.core_type, c.logical_cores) for c in cpus] == [("performance", 1), ("efficient", 1)]


def test_render_node_symlink_matches_amd_gpu(tmp_path: Path) -> None:
    root = linux_root(tmp_path)
    pci(root, "0000:0a:00.0", 0x030000, 0x1002, 0x73BF)
    (root / "sys/class/drm").mkdir(parents=True)
    (root / "sys/class/drm/renderD129").symlink_to(
        "../../devices/pci0000:00/0000:00:01.1/0000:0a:00.0/drm/renderD129"
    )
    props = "gfx_target_version 100300\ndrm_render_minor 129\nlocal_mem_size 17163091968\n"
    write(root, "sys/class/kfd/kfd/topology/nodes/1/properties", props)
    (gpu,) = detect(Host.fake(root)).gpus
    assert gpu.gpu is not None and gpu.gpu.microarchitecture == "gfx1030"
    assert gpu.integrated is False


SYSCTL = """hw.machine: arm64
hw.memsize: 34359738368
hw.pagesize: 16384
hw.physicalcpu: 12
hw.logicalcpu: 12
hw.nperflevels: 2
hw.perflevel0.physicalcpu: 8
hw.perflevel0.logicalcpu: 8
hw.perflevel0.name: Performance
hw.perflevel1.physicalcpu: 4
hw.perflevel1.logicalcpu: 4
hw.perflevel1.name: Efficiency
hw.optional.AdvSIMD: 1
hw.optional.arm.FEAT_DotProd: 1
hw.optional.arm.FEAT_I8MM: 0
hw.optional.arm.FEAT_BF16: 1
machdep.cpu.brand_string: Apple M2 Pro
vm.swapusage: total = 2048.00M  used = 512.00M  free = 1536.00M  (encrypted)
"""

VM_STAT = """Mach Virtual Memory Statistics: (page size of 16384 bytes)
Pages free:                               100000.
Pages active:                             500000.
Pages inactive:                           200000.
Pages speculative:                         10000.
"""


def test_apple_silicon_through_the_host_seam(tmp_path: Path) -> None:
    write(tmp_path, "run/sysctl", SYSCTL)
    write(tmp_path, "run/vm_stat", VM_STAT)
    host = Host.fake(tmp_path)
    assert host.system == "Darwin"
    report = detect(host)
    assert report.architecture == "arm64"
    assert [(c.core_type, c.physical_cores, c.model_name) for c in report.cpus] == [
        ("performance", 8, "Apple M2 Pro"),
        ("efficient", 4, "Apple M2 Pro"),
    ]
    assert report.cpus[0].implementer_id == 0x61
    assert report.cpus[0].flags == ["asimd", "asimddp", "bf16"]
    assert report.memory.total_bytes == 32 * 1024**3
    assert report.memory.available_bytes == 310000 * 16384
    assert report.memory.swap_total_bytes == 2048 * 1024**2
    assert report.memory.swap_free_bytes == 1536 * 1024**2
    (gpu,) = report.gpus
    assert gpu.bus == "soc" and gpu.integrated is True and gpu.gpu is not None
    assert gpu.gpu.unified_memory is True and gpu.gpu.vram_bytes == 32 * 1024**3
    (npu,) = report.npus
    assert npu.bus == "soc" and npu.device_name == "Apple Neural Engine"
    assert report.warnings == []


def test_mac_without_vm_stat_assumes_all_memory_available(tmp_path: Path) -> None:
    write(tmp_path, "run/sysctl", SYSCTL)
    report = detect(Host.fake(tmp_path, system="Darwin"))
    assert report.memory.available_bytes == report.memory.total_bytes
    assert any("vm_stat" in w for w in report.warnings)


def test_nvml_path_on_a_real_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The NVML branch, with a stand-in module where the real library would be."""
    calls: list[str] = []
    stub = types.ModuleType("pynvml")
    stub.nvmlInit = lambda: calls.append("init")  # type: ignore[attr-defined]
    stub.nvmlShutdown = lambda: calls.append("shutdown")  # type: ignore[attr-defined]
    stub.nvmlDeviceGetCount = lambda: 1  # type: ignore[attr-defined]
    stub.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    stub.nvmlDeviceGetPciInfo = lambda h: types.SimpleNamespace(busId=b"00000000:01:00.0")  # type: ignore[attr-defined]
    stub.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=24 * 1024**3)  # type: ignore[attr-defined]
    stub.nvmlDeviceGetCudaComputeCapability = lambda h: (8, 9)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", stub)

    class LiveLike(FakeHost):
        is_real = True

    root = linux_root(tmp_path)
    pci(root, "0000:01:00.0", 0x030000, 0x10DE, 0x2684)
    report = detect(LiveLike(root))
    (gpu,) = report.gpus
    assert gpu.gpu is not None
    assert (gpu.gpu.vram_bytes, gpu.gpu.compute_capability) == (24 * 1024**3, "8.9")
    assert calls == ["init", "shutdown"] and report.warnings == []


def test_nvml_that_cannot_initialise_falls_back_to_nvidia_smi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub = types.ModuleType("pynvml")

    def fail() -> None:
        raise RuntimeError("NVML Shared Library Not Found")

    stub.nvmlInit = fail  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", stub)

    class LiveLike(FakeHost):
        is_real = True

    root = linux_root(tmp_path)
    pci(root, "0000:01:00.0", 0x030000, 0x10DE, 0x2684)
    write(root, "run/nvidia-smi/0000:01:00.0/memory.total", "24564 MiB\n")
    write(root, "run/nvidia-smi/0000:01:00.0/compute_cap", "8.9\n")
    (gpu,) = detect(LiveLike(root)).gpus
    assert gpu.gpu is not None and gpu.gpu.compute_capability == "8.9"
