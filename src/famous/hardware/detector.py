"""Put the probes together: ``detect(host) -> HardwareReport``.

Each probe adds to ``warnings`` instead of raising; a probe that raises anyway is caught
here and reported as a warning, so a strange machine still gets a report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from famous.hardware.amd import probe_amd
from famous.hardware.apple import detect_apple
from famous.hardware.cpu import detect_cpus
from famous.hardware.disk import detect_disk
from famous.hardware.gpu import apply_integrated_rule
from famous.hardware.host import Host
from famous.hardware.intel import probe_intel
from famous.hardware.memory import detect_memory
from famous.hardware.nvidia import probe_nvidia
from famous.hardware.pci import detect_pci
from famous.hardware.report import CpuGroup, Device, HardwareReport, MemoryInfo

T = TypeVar("T")


def _guarded(name: str, probe: Callable[[], T], fallback: T, warnings: list[str]) -> T:
    try:
        return probe()
    except Exception as exc:  # a bug or an unforeseen layout must not cost the whole report
        warnings.append(f"{name} probe failed: {type(exc).__name__}: {exc}")
        return fallback


def detect(host: Host | None = None) -> HardwareReport:
    """Describe the machine behind ``host`` (default: ``$FAMOUS_HARDWARE_ROOT`` or ``/``)."""
    host = host if host is not None else Host.from_env()
    warnings: list[str] = []
    devices: list[Device] = []
    cpus: list[CpuGroup] = []
    memory = MemoryInfo()
    if host.system == "Darwin":
        arch, cpus, memory, devices = _guarded(
            "macOS",
            lambda: detect_apple(host, warnings),
            ("unknown", [], MemoryInfo(), []),
            warnings,
        )
    else:
        arch, cpus = _guarded("CPU", lambda: detect_cpus(host, warnings), ("unknown", []), warnings)
        memory = _guarded("memory", lambda: detect_memory(host, warnings), MemoryInfo(), warnings)
        devices = _guarded("PCI", lambda: detect_pci(host, warnings), [], warnings)
        _guarded("NVIDIA", lambda: probe_nvidia(host, devices, warnings), None, warnings)
        _guarded("AMD", lambda: probe_amd(host, devices, warnings), None, warnings)
        apply_integrated_rule(devices)
        _guarded("Intel", lambda: probe_intel(host, devices, warnings), None, warnings)
    disk = _guarded("disk", lambda: detect_disk(host, warnings), None, warnings)
    warnings.extend(host.refused())
    return HardwareReport(
        architecture=arch,
        cpus=cpus,
        memory=memory,
        disk=disk,
        devices=devices,
        warnings=warnings,
    )
