"""macOS: CPUs, memory and the Apple Silicon GPU / Neural Engine, from sysctl and vm_stat.

One ``sysctl`` call asks for every name at once (a subprocess each would be slow). Apple
Silicon's cores are grouped by performance level (``hw.perflevelN``); its GPU and Neural
Engine are reported as devices on bus ``soc`` sharing the machine's unified memory, so the
GPU's ``vram_bytes`` is ``hw.memsize`` with ``unified_memory`` set. Arm features come from
``hw.optional.arm.FEAT_*`` and are written with Linux's names (asimddp, i8mm, bf16 …) so one
engine manifest matches both systems.
"""

from __future__ import annotations

import re

from famous.hardware.host import Host
from famous.hardware.report import CpuGroup, Device, GpuInfo, MemoryInfo

VENDOR_APPLE = 0x106B
IMPLEMENTER_APPLE = 0x61

_SYSCTL_NAMES = (
    "hw.machine",
    "hw.memsize",
    "hw.pagesize",
    "hw.physicalcpu",
    "hw.logicalcpu",
    "hw.nperflevels",
    "hw.perflevel0",
    "hw.perflevel1",
    "hw.optional",
    "machdep.cpu.brand_string",
    "machdep.cpu.vendor",
    "machdep.cpu.features",
    "machdep.cpu.leaf7_features",
    "vm.swapusage",
)

#: ``hw.optional`` keys → Linux /proc/cpuinfo feature names.
_ARM_FEATURES = {
    "hw.optional.floatingpoint": ["fp"],
    "hw.optional.AdvSIMD": ["asimd"],
    "hw.optional.arm.FEAT_AES": ["aes"],
    "hw.optional.arm.FEAT_PMULL": ["pmull"],
    "hw.optional.arm.FEAT_SHA1": ["sha1"],
    "hw.optional.arm.FEAT_SHA256": ["sha2"],
    "hw.optional.armv8_crc32": ["crc32"],
    "hw.optional.arm.FEAT_LSE": ["atomics"],
    "hw.optional.arm.FEAT_FP16": ["fphp", "asimdhp"],
    "hw.optional.arm.FEAT_RDM": ["asimdrdm"],
    "hw.optional.arm.FEAT_JSCVT": ["jscvt"],
    "hw.optional.arm.FEAT_FCMA": ["fcma"],
    "hw.optional.arm.FEAT_LRCPC": ["lrcpc"],
    "hw.optional.arm.FEAT_DPB": ["dcpop"],
    "hw.optional.arm.FEAT_SHA3": ["sha3"],
    "hw.optional.arm.FEAT_DotProd": ["asimddp"],
    "hw.optional.arm.FEAT_SHA512": ["sha512"],
    "hw.optional.arm.FEAT_FHM": ["asimdfhm"],
    "hw.optional.arm.FEAT_LRCPC2": ["ilrcpc"],
    "hw.optional.arm.FEAT_FlagM": ["flagm"],
    "hw.optional.arm.FEAT_SSBS": ["ssbs"],
    "hw.optional.arm.FEAT_SB": ["sb"],
    "hw.optional.arm.FEAT_DPB2": ["dcpodp"],
    "hw.optional.arm.FEAT_FRINTTS": ["frint"],
    "hw.optional.arm.FEAT_I8MM": ["i8mm"],
    "hw.optional.arm.FEAT_BF16": ["bf16"],
    "hw.optional.arm.FEAT_BTI": ["bti"],
    "hw.optional.arm.FEAT_SME": ["sme"],
    "hw.optional.arm.FEAT_SME2": ["sme2"],
}

_SWAP = re.compile(r"(total|free)\s*=\s*([\d.]+)([KMGT]?)", re.IGNORECASE)
_SCALE = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_sysctl(text: str) -> dict[str, str]:
    """``name: value`` lines → dict (values may contain spaces)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip()] = value.strip()
    return out


def _int(values: dict[str, str], name: str) -> int | None:
    text = values.get(name, "")
    return int(text) if text.isdigit() else None


def _arm_features(values: dict[str, str]) -> list[str]:
    flags: list[str] = []
    for key, names in _ARM_FEATURES.items():
        if values.get(key) == "1":
            flags += names
    return flags


def _x86_features(values: dict[str, str]) -> list[str]:
    words = (
        f"{values.get('machdep.cpu.features', '')} {values.get('machdep.cpu.leaf7_features', '')}"
    )
    flags = []
    for word in words.lower().split():
        flags.append("avx" if word == "avx1.0" else word.replace(".", "_"))
    return flags


def _cpus(values: dict[str, str], arch: str) -> list[CpuGroup]:
    brand = values.get("machdep.cpu.brand_string") or None
    if arch != "arm64":
        return [
            CpuGroup(
                architecture=arch,
                manufacturer_id=values.get("machdep.cpu.vendor") or None,
                model_name=brand,
                flags=_x86_features(values),
                physical_cores=_int(values, "hw.physicalcpu") or 0,
                logical_cores=_int(values, "hw.logicalcpu") or 0,
            )
        ]
    flags = _arm_features(values)
    levels = _int(values, "hw.nperflevels") or 0
    groups = []
    for level in range(min(levels, 2)):
        prefix = f"hw.perflevel{level}"
        name = values.get(f"{prefix}.name", "").lower()
        core_type = {"performance": "performance", "efficiency": "efficient"}.get(name, name)
        groups.append(
            CpuGroup(
                architecture=arch,
                model_name=brand,
                flags=flags,
                implementer_id=IMPLEMENTER_APPLE,
                physical_cores=_int(values, f"{prefix}.physicalcpu") or 0,
                logical_cores=_int(values, f"{prefix}.logicalcpu") or 0,
                core_type=core_type or None,
            )
        )
    if not groups:
        groups.append(
            CpuGroup(
                architecture=arch,
                model_name=brand,
                flags=flags,
                implementer_id=IMPLEMENTER_APPLE,
                physical_cores=_int(values, "hw.physicalcpu") or 0,
                logical_cores=_int(values, "hw.logicalcpu") or 0,
            )
        )
    return groups


def parse_vm_stat(text: str) -> int | None:
    """Available bytes = (free + inactive + speculative pages) × page size."""
    size = re.search(r"page size of (\d+) bytes", text)
    if not size:
        return None
    pages: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        value = value.strip().rstrip(".")
        if sep and value.isdigit():
            pages[name.strip().lower()] = int(value)
    keys = ("pages free", "pages inactive", "pages speculative")
    if "pages free" not in pages:
        return None
    return sum(pages.get(k, 0) for k in keys) * int(size.group(1))


def _swap(values: dict[str, str]) -> tuple[int, int]:
    found = {
        m.group(1).lower(): int(float(m.group(2)) * _SCALE[m.group(3).upper()])
        for m in _SWAP.finditer(values.get("vm.swapusage", ""))
    }
    return found.get("total", 0), found.get("free", 0)


def detect_apple(
    host: Host, warnings: list[str]
) -> tuple[str, list[CpuGroup], MemoryInfo, list[Device]]:
    """Architecture, CPU groups, memory and SoC devices of a Mac."""
    result = host.run(["sysctl", *_SYSCTL_NAMES])
    if result.status in ("missing", "timeout") or not result.stdout.strip():
        warnings.append(f"sysctl {result.describe()}: CPU and memory of this Mac unknown")
        arch = host.kernel_arch() or "unknown"
        return ("arm64" if arch == "arm64" else arch), [], MemoryInfo(), []
    values = parse_sysctl(result.stdout)
    machine = values.get("hw.machine") or host.kernel_arch() or "unknown"
    arch = {"x86_64": "amd64", "arm64": "arm64"}.get(machine, machine)
    total = _int(values, "hw.memsize") or 0
    if not total:
        warnings.append("sysctl hw.memsize missing: memory unknown")
    vm = host.run(["vm_stat"])
    available = parse_vm_stat(vm.stdout) if vm.ok else None
    if available is None:
        warnings.append(
            f"vm_stat {vm.describe() if not vm.ok else 'unreadable'}: "
            "assuming all memory is available"
        )
        available = total
    swap_total, swap_free = _swap(values)
    memory = MemoryInfo(
        total_bytes=total,
        available_bytes=available,
        swap_total_bytes=swap_total,
        swap_free_bytes=swap_free,
    )
    devices: list[Device] = []
    brand = values.get("machdep.cpu.brand_string", "")
    if arch == "arm64" and brand.startswith("Apple"):
        devices.append(
            Device(
                bus="soc",
                slot="soc:gpu",
                kind="gpu",
                device_class=0x030000,
                vendor_id=VENDOR_APPLE,
                device_id=0,
                vendor_name="Apple",
                device_name=f"{brand} GPU",
                integrated=True,
                gpu=GpuInfo(vram_bytes=total or None, unified_memory=True, driver="metal"),
            )
        )
        devices.append(
            Device(
                bus="soc",
                slot="soc:ane",
                kind="npu",
                device_class=0x120000,
                vendor_id=VENDOR_APPLE,
                device_id=0,
                vendor_name="Apple",
                device_name="Apple Neural Engine",
            )
        )
    return arch, _cpus(values, arch), memory, devices
