"""A stable name for "this machine" that benchmark measurements are filed under.

A measurement only predicts speed on the same silicon, so the fingerprint hashes what
decides it: the architecture, each CPU group's model name, vendor, ISA flags and core
counts, the installed RAM (whole GiB: the kernel's total moves by a few MiB between
boots), and each GPU / NPU by PCI vendor and device id and its memory (whole GiB). What
changes from minute to minute (free memory, disk, warnings, PCI slots) is left out, so
the same machine keeps its fingerprint across reboots and a changed part gets a new one.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from famous.hardware.report import HardwareReport

GIB = 1 << 30


def fingerprint_parts(report: HardwareReport) -> dict[str, Any]:
    """What the fingerprint hashes, as plain data (``famous bench --format json`` shows it)."""
    cpus = sorted(
        [
            c.architecture,
            c.manufacturer_id or "",
            c.model_name or "",
            sorted(set(c.flags)),
            c.physical_cores,
            c.logical_cores,
        ]
        for c in report.cpus
    )
    accelerators = sorted(
        [
            d.kind,
            f"{d.vendor_id:04x}:{d.device_id:04x}",
            round((d.gpu.vram_bytes or 0) / GIB) if d.gpu else 0,
        ]
        for d in report.devices
        if d.kind in ("gpu", "npu")
    )
    return {
        "architecture": report.architecture,
        "cpus": cpus,
        "memory_gib": round(report.memory.total_bytes / GIB),
        "accelerators": accelerators,
    }


def machine_fingerprint(report: HardwareReport) -> str:
    """16 hex digits of sha256 over ``fingerprint_parts`` in canonical JSON."""
    canonical = json.dumps(fingerprint_parts(report), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def machine_summary(report: HardwareReport) -> str:
    """One line a person recognises the fingerprinted machine by."""
    names = sorted({c.model_name or c.architecture for c in report.cpus}) or [report.architecture]
    parts = [
        " + ".join(names),
        f"{report.logical_cores} threads",
        f"{round(report.memory.total_bytes / GIB)} GiB",
    ]
    accelerators = [d.device_name or f"{d.vendor_id:04x}:{d.device_id:04x}" for d in report.gpus]
    parts.append(", ".join(accelerators) if accelerators else "no GPU")
    return " · ".join(parts)
