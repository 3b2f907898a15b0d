"""What ``famous show-machine`` prints: the hardware report as a table, JSON or YAML."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from famous.cli.render import OutputFormat, emit, print_fields, print_table
from famous.units import format_size

if TYPE_CHECKING:
    from famous.hardware.report import Device, HardwareReport

#: Short vendor names for the table when the machine has no pci.ids.
_VENDORS = {
    0x10DE: "NVIDIA",
    0x1002: "AMD",
    0x1022: "AMD",
    0x8086: "Intel",
    0x106B: "Apple",
    0x1A03: "ASPEED",
    0x102B: "Matrox",
    0x14E4: "Broadcom",
    0x1DE4: "Raspberry Pi",
}


def show_machine(root: Path | None, all_devices: bool, fmt: OutputFormat) -> None:
    from famous.services.machine import detect_machine

    report = detect_machine(root, recent=True)
    emit(report, fmt, lambda: _table(report, all_devices))


def _table(report: HardwareReport, all_devices: bool) -> None:
    from famous.hardware.cpu import notable_flags

    out = sys.stdout
    rows = []
    for cpu in report.cpus:
        model = cpu.model_name or "-"
        if cpu.core_type:
            model = f"{model} ({cpu.core_type})"
        ids = "-"
        if cpu.implementer_id is not None:
            ids = f"0x{cpu.implementer_id:02x}/0x{(cpu.part_number or 0):03x}"
        notable = " ".join(notable_flags(cpu))
        flags = f"{len(cpu.flags)}" + (f" ({notable})" if notable else "")
        rows.append(
            (
                cpu.architecture,
                cpu.manufacturer_id,
                model,
                ids,
                cpu.physical_cores,
                cpu.logical_cores,
                flags,
            )
        )
    print_table(
        ("arch", "vendor", "model", "impl/part", "cores", "threads", "flags"),
        rows,
        title=f"CPU ({report.architecture})",
    )
    mem = report.memory
    out.write("\nMEMORY\n")
    print_fields(
        [
            ("total", format_size(mem.total_bytes)),
            ("available", format_size(mem.available_bytes)),
            (
                "swap",
                f"{format_size(mem.swap_free_bytes)} free of {format_size(mem.swap_total_bytes)}",
            ),
        ]
    )
    out.write("\nDISK\n")
    if report.disk is None:
        out.write("unknown\n")
    else:
        print_fields(
            [
                ("path", report.disk.path),
                ("total", format_size(report.disk.total_bytes)),
                ("available", format_size(report.disk.available_bytes)),
            ]
        )
    out.write("\n")
    shown = [d for d in report.devices if all_devices or d.kind != "other"]
    print_table(
        ("slot", "kind", "class", "id", "vendor", "device", "memory", "arch", "integrated"),
        [_device_row(d) for d in shown],
        title="DEVICES",
    )
    hidden = len(report.devices) - len(shown)
    if hidden:
        out.write(f"(+{hidden} other PCI devices; --all lists them)\n")
    out.write("\nWARNINGS\n")
    for warning in report.warnings:
        out.write(f"- {warning}\n")
    if not report.warnings:
        out.write("none\n")


def _device_row(dev: Device) -> tuple[object, ...]:
    from famous.hardware.pci import KNOWN_NPUS

    gpu = dev.gpu
    memory = arch = None
    if gpu is not None:
        if gpu.vram_bytes is not None:
            memory = format_size(gpu.vram_bytes) + (" shared" if gpu.unified_memory else "")
        elif gpu.unified_memory:
            memory = "shared"
        if gpu.compute_capability:
            arch = f"cc {gpu.compute_capability}"
        elif gpu.microarchitecture:
            arch = gpu.microarchitecture
    integrated = None if dev.integrated is None else ("yes" if dev.integrated else "no")
    return (
        dev.slot,
        dev.kind,
        f"0x{dev.device_class:06x}",
        f"{dev.vendor_id:04x}:{dev.device_id:04x}",
        dev.vendor_name or _VENDORS.get(dev.vendor_id),
        dev.device_name or KNOWN_NPUS.get((dev.vendor_id, dev.device_id)),
        memory,
        arch,
        integrated,
    )
