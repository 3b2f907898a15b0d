"""The typed description of a machine that the matchmaker scores engines against.

Every size is in bytes; ids are integers (printed as hex). A probe that failed leaves its
field empty and adds a line to ``warnings`` instead of raising.

Plain dataclasses, not pydantic models: the report is built by famous's own probes (never
parsed from a user's file), and the read-only commands print it without importing pydantic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DeviceKind = Literal["gpu", "npu", "other"]


@dataclass(kw_only=True)
class CpuGroup:
    """One kind of core; identical cores are collapsed into a single group."""

    architecture: str  # Debian-style name: amd64, arm64, riscv64, armhf, …
    manufacturer_id: str | None = None  # x86 vendor_id (GenuineIntel, AuthenticAMD) or mvendorid
    model_name: str | None = None
    flags: list[str] = field(default_factory=list)  # x86 flags / arm64 Features / riscv isa
    implementer_id: int | None = None  # arm64 'CPU implementer'
    part_number: int | None = None  # arm64 'CPU part'
    physical_cores: int = 0
    logical_cores: int = 0
    core_type: str | None = None  # 'performance' / 'efficient' on hybrid x86, when the kernel says


@dataclass(kw_only=True)
class MemoryInfo:
    total_bytes: int = 0
    available_bytes: int = 0
    swap_total_bytes: int = 0
    swap_free_bytes: int = 0


@dataclass(kw_only=True)
class DiskInfo:
    path: str
    total_bytes: int | None = None
    available_bytes: int | None = None


@dataclass(kw_only=True)
class GpuInfo:
    """What a vendor probe learned about one GPU."""

    vram_bytes: int | None = None
    compute_capability: str | None = None  # NVIDIA, e.g. '8.6'
    microarchitecture: str | None = None  # AMD gfx target, e.g. gfx1100
    unified_memory: bool = False  # shares system RAM (iGPU, Apple)
    driver: str | None = None


@dataclass(kw_only=True)
class Device:
    """A PCI device (or an Apple SoC GPU, bus 'soc') with its classification."""

    bus: Literal["pci", "soc"] = "pci"
    slot: str
    kind: DeviceKind
    device_class: int  # 24-bit PCI class code, e.g. 0x030000
    vendor_id: int
    device_id: int
    subsystem_vendor_id: int | None = None
    subsystem_device_id: int | None = None
    vendor_name: str | None = None
    device_name: str | None = None
    integrated: bool | None = None  # None for non-GPUs
    gpu: GpuInfo | None = None


@dataclass(kw_only=True)
class HardwareReport:
    """Everything famous knows about a machine, as a person reading its files would say."""

    architecture: str
    cpus: list[CpuGroup] = field(default_factory=list)
    memory: MemoryInfo = field(default_factory=MemoryInfo)
    disk: DiskInfo | None = None
    devices: list[Device] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def gpus(self) -> list[Device]:
        return [d for d in self.devices if d.kind == "gpu"]

    @property
    def npus(self) -> list[Device]:
        return [d for d in self.devices if d.kind == "npu"]

    @property
    def physical_cores(self) -> int:
        return sum(c.physical_cores for c in self.cpus)

    @property
    def logical_cores(self) -> int:
        return sum(c.logical_cores for c in self.cpus)


def report_from_plain(data: dict) -> HardwareReport:
    """Rebuild a report from its JSON form (``to_plain``), e.g. a cached detection."""
    devices = []
    for raw in data.get("devices", []):
        gpu = raw.get("gpu")
        devices.append(Device(**{**raw, "gpu": GpuInfo(**gpu) if gpu is not None else None}))
    disk = data.get("disk")
    return HardwareReport(
        architecture=data["architecture"],
        cpus=[CpuGroup(**c) for c in data.get("cpus", [])],
        memory=MemoryInfo(**data.get("memory", {})),
        disk=DiskInfo(**disk) if disk is not None else None,
        devices=devices,
        warnings=list(data.get("warnings", [])),
    )
