"""Vendor and device names from a local ``pci.ids`` (never the network).

Only the ids asked for are kept, and parsing stops at the class section, so even the full
1.3 MB database costs a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable

from famous.hardware.host import Host

#: Where distributions install the database (looked up inside a fake root too).
PCI_IDS_PATHS = (
    "/usr/share/misc/pci.ids",
    "/usr/share/hwdata/pci.ids",
    "/usr/share/pci.ids",
    "/usr/local/share/pci.ids",
)


class PciNames:
    """Names for (vendor) and (vendor, device) ids; empty when no database exists."""

    def __init__(
        self,
        vendors: dict[int, str] | None = None,
        devices: dict[tuple[int, int], str] | None = None,
    ) -> None:
        self.vendors = vendors or {}
        self.devices = devices or {}

    def vendor(self, vendor_id: int) -> str | None:
        return self.vendors.get(vendor_id)

    def device(self, vendor_id: int, device_id: int) -> str | None:
        return self.devices.get((vendor_id, device_id))


def parse_pci_ids(text: str, wanted: Iterable[tuple[int, int]]) -> PciNames:
    """Pick the vendor and device lines for the wanted (vendor, device) pairs."""
    want = set(wanted)
    want_vendors = {v for v, _ in want}
    vendors: dict[int, str] = {}
    devices: dict[tuple[int, int], str] = {}
    current: int | None = None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("C "):
            break  # the device-class section follows the vendors
        if line[0] != "\t":
            ident, _, name = line.partition(" ")
            try:
                vendor = int(ident, 16)
            except ValueError:
                current = None
                continue
            current = vendor if vendor in want_vendors else None
            if current is not None:
                vendors[vendor] = name.strip()
        elif current is not None and not line.startswith("\t\t"):
            ident, _, name = line.strip().partition(" ")
            try:
                device = int(ident, 16)
            except ValueError:
                continue
            if (current, device) in want:
                devices[(current, device)] = name.strip()
    return PciNames(vendors, devices)


def load_pci_names(host: Host, wanted: Iterable[tuple[int, int]]) -> PciNames:
    """Names from the first pci.ids the host has; empty (no warning) when there is none."""
    for path in PCI_IDS_PATHS:
        text = host.read_text(path)
        if text is not None:
            return parse_pci_ids(text, wanted)
    return PciNames()
