"""Integrated or discrete: the rule, for GPUs a vendor probe did not already settle.

- NVIDIA: discrete (its PCI GPUs are add-in cards or laptop dGPUs).
- AMD: the kfd topology decides when present (see ``amd.py``); without it, integrated when
  on bus 00 or when amdgpu reports at most 1 GiB of VRAM (a BIOS carve-out), else discrete.
- Intel: integrated on bus 00 of domain 0 (the iGPU lives at 0000:00:02.0); Arc and
  Battlemage cards sit behind PCIe bridges on another bus, so they are discrete.
- Any other vendor (ASPEED, Matrox … server BMC display controllers): integrated when no
  VRAM is reported, since such a device has no memory of its own to run models in.

An integrated GPU shares system RAM, so ``unified_memory`` is set with it.
"""

from __future__ import annotations

from famous.hardware.pci import VENDOR_AMD, VENDOR_INTEL, VENDOR_NVIDIA, slot_bus
from famous.hardware.report import Device, GpuInfo

_CARVE_OUT_MAX = 1024**3


def is_integrated(dev: Device) -> bool:
    domain, bus = slot_bus(dev.slot)
    on_root_bus = domain == 0 and bus == 0
    vram = dev.gpu.vram_bytes if dev.gpu else None
    if dev.bus == "soc":
        return True
    if dev.vendor_id == VENDOR_NVIDIA:
        return False
    if dev.vendor_id == VENDOR_INTEL:
        return on_root_bus
    if dev.vendor_id == VENDOR_AMD:
        return on_root_bus or (vram is not None and vram <= _CARVE_OUT_MAX)
    return vram is None


def apply_integrated_rule(devices: list[Device]) -> None:
    for dev in devices:
        if dev.kind != "gpu":
            continue
        if dev.gpu is None:
            dev.gpu = GpuInfo()
        if dev.integrated is None:
            dev.integrated = is_integrated(dev)
        if dev.integrated:
            dev.gpu.unified_memory = True
