"""PCI devices from ``/sys/bus/pci/devices/*`` and what kind of device each one is.

Classification by the 24-bit class code:

- ``0x03xxxx`` display controller → ``gpu``;
- ``0x12xxxx`` processing accelerator and ``0x0b40xx`` co-processor → ``npu``;
- a few NPUs that announce a generic class are known by id (AMD XDNA: class 0x1180 "signal
  processing controller") → ``npu``;
- everything else → ``other``.
"""

from __future__ import annotations

from famous.hardware.host import Host
from famous.hardware.pciids import load_pci_names
from famous.hardware.report import Device, DeviceKind, GpuInfo

PCI_DEVICES = "/sys/bus/pci/devices"

VENDOR_NVIDIA = 0x10DE
VENDOR_AMD = 0x1002  # ATI/AMD graphics
VENDOR_AMD_CPU = 0x1022  # AMD's platform devices (its NPUs live here)
VENDOR_INTEL = 0x8086
VENDOR_HAILO = 0x1E60

#: NPUs whose PCI class does not say so.
KNOWN_NPUS: dict[tuple[int, int], str] = {
    (VENDOR_AMD_CPU, 0x1502): "AMD XDNA (Phoenix / Hawk Point)",
    (VENDOR_AMD_CPU, 0x17F0): "AMD XDNA 2 (Strix / Krackan)",
    (VENDOR_HAILO, 0x2864): "Hailo-8",
}


def classify(device_class: int, vendor_id: int, device_id: int) -> DeviceKind:
    if device_class >> 16 == 0x03:
        return "gpu"
    if device_class >> 16 == 0x12 or device_class >> 8 == 0x0B40:
        return "npu"
    if (vendor_id, device_id) in KNOWN_NPUS:
        return "npu"
    return "other"


def _hex(host: Host, path: str) -> int | None:
    text = host.read_text(path)
    if text is None:
        return None
    try:
        return int(text.strip(), 16)
    except ValueError:
        return None


def driver_of(host: Host, slot: str) -> str | None:
    """The bound kernel driver (nvidia, amdgpu, i915, xe, intel_vpu …) from sysfs."""
    link = host.read_link(f"{PCI_DEVICES}/{slot}/driver")
    return link.rstrip("/").rsplit("/", 1)[-1] if link else None


def slot_bus(slot: str) -> tuple[int, int]:
    """'0000:c4:00.0' → (domain 0, bus 0xc4)."""
    parts = slot.split(":")
    try:
        return int(parts[0], 16), int(parts[1], 16)
    except (IndexError, ValueError):
        return -1, -1


def detect_pci(host: Host, warnings: list[str]) -> list[Device]:
    """Every PCI device, sorted by slot, named from pci.ids when the host has one."""
    raw: list[tuple[str, int, int, int, int | None, int | None]] = []
    for slot in host.list_dir(PCI_DEVICES):
        base = f"{PCI_DEVICES}/{slot}"
        cls, vendor, device = (_hex(host, f"{base}/{f}") for f in ("class", "vendor", "device"))
        if cls is None or vendor is None or device is None:
            warnings.append(f"PCI device {slot}: class/vendor/device unreadable, skipped")
            continue
        sub_vendor = _hex(host, f"{base}/subsystem_vendor")
        sub_device = _hex(host, f"{base}/subsystem_device")
        raw.append((slot, cls, vendor, device, sub_vendor, sub_device))
    names = load_pci_names(host, [(r[2], r[3]) for r in raw])
    devices: list[Device] = []
    for slot, cls, vendor, device, sub_vendor, sub_device in raw:
        kind = classify(cls, vendor, device)
        devices.append(
            Device(
                bus="pci",
                slot=slot,
                kind=kind,
                device_class=cls,
                vendor_id=vendor,
                device_id=device,
                subsystem_vendor_id=sub_vendor,
                subsystem_device_id=sub_device,
                vendor_name=names.vendor(vendor),
                device_name=names.device(vendor, device),
                gpu=GpuInfo(driver=driver_of(host, slot)) if kind == "gpu" else None,
            )
        )
    return devices
