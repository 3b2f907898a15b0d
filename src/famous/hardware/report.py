"""The typed description of a machine that the matchmaker scores engines against.

Every size is in bytes; ids are integers (printed as hex). A probe that failed leaves its
field empty and adds a line to ``warnings`` instead of raising.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DeviceKind = Literal["gpu", "npu", "other"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CpuGroup(_Model):
    """One kind of core; identical cores are collapsed into a single group."""

    architecture: str = Field(description="Debian-style name: amd64, arm64, riscv64, armhf, …")
    manufacturer_id: str | None = Field(
        default=None, description="x86 vendor_id (GenuineIntel, AuthenticAMD) or riscv mvendorid"
    )
    model_name: str | None = None
    flags: list[str] = Field(default_factory=list, description="x86 flags / arm64 Features / isa")
    implementer_id: int | None = Field(default=None, description="arm64 'CPU implementer'")
    part_number: int | None = Field(default=None, description="arm64 'CPU part'")
    physical_cores: int = 0
    logical_cores: int = 0
    core_type: str | None = Field(
        default=None,
        description="'performance' or 'efficient' on hybrid x86 when the kernel says so",
    )


class MemoryInfo(_Model):
    total_bytes: int = 0
    available_bytes: int = 0
    swap_total_bytes: int = 0
    swap_free_bytes: int = 0


class DiskInfo(_Model):
    path: str
    total_bytes: int | None = None
    available_bytes: int | None = None


class GpuInfo(_Model):
    """What a vendor probe learned about one GPU."""

    vram_bytes: int | None = None
    compute_capability: str | None = Field(default=None, description="NVIDIA, e.g. '8.6'")
    microarchitecture: str | None = Field(default=None, description="AMD gfx target, e.g. gfx1100")
    unified_memory: bool = Field(default=False, description="shares system RAM (iGPU, Apple)")
    driver: str | None = None


class Device(_Model):
    """A PCI device (or an Apple SoC GPU, bus 'soc') with its classification."""

    bus: Literal["pci", "soc"] = "pci"
    slot: str
    kind: DeviceKind
    device_class: int = Field(description="24-bit PCI class code, e.g. 0x030000")
    vendor_id: int
    device_id: int
    subsystem_vendor_id: int | None = None
    subsystem_device_id: int | None = None
    vendor_name: str | None = None
    device_name: str | None = None
    integrated: bool | None = Field(default=None, description="None for non-GPUs")
    gpu: GpuInfo | None = None


class HardwareReport(_Model):
    """Everything famous knows about a machine, as a person reading its files would say."""

    architecture: str
    cpus: list[CpuGroup] = Field(default_factory=list)
    memory: MemoryInfo = Field(default_factory=MemoryInfo)
    disk: DiskInfo | None = None
    devices: list[Device] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

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
