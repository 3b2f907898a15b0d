"""What to tell a person when the choice is empty or a device goes unused.

- No engine is picked while an experimental one is compatible: say it is there, and how to
  opt in (experimental engines are never picked automatically, only by name).
- A GPU or NPU that no engine's requirement can ever match (a Hailo-8, an AMD XDNA NPU):
  name it as detected but unused, so it is not silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # loaded on use: show-machine asks only `unused_accelerator_notes`
    from famous.hardware.report import Device, HardwareReport
    from famous.manifests.schema import EngineManifest, PciDevice
    from famous.matchmaker.select import EngineEvaluation


def no_engine_message(package: str, evaluations: Sequence[EngineEvaluation]) -> str:
    """The line `famous engines` ends with when it marks no engine."""
    from famous.matchmaker.select import opt_in_hint

    hint = opt_in_hint(package, evaluations)
    if hint:
        return f"no engine runs here automatically; {hint}"
    return "no engine can run here; see `famous show-engine MODEL ENGINE` for reasons"


def _could_use(req: PciDevice, dev: Device) -> bool:
    return (
        req.type == dev.kind
        and req.bus == dev.bus
        and (req.vendor_id is None or req.vendor_id == dev.vendor_id)
        and (not req.device_id or dev.device_id in req.device_id)
    )


def _label(dev: Device) -> str:
    from famous.hardware.pci import KNOWN_NPUS

    name = KNOWN_NPUS.get((dev.vendor_id, dev.device_id)) or dev.device_name
    ids = f"{dev.vendor_id:04x}:{dev.device_id:04x}"
    return (
        f"{dev.kind.upper()} {dev.slot} ({name}, {ids})"
        if name
        else f"{dev.kind.upper()} {dev.slot} ({ids})"
    )


def unused_accelerators(report: HardwareReport, engines: Iterable[EngineManifest]) -> list[str]:
    """'NPU 0000:02:00.0 (Hailo-8, 1e60:2864): detected, no engine uses it' for each NPU and
    discrete GPU that no requirement of ``engines`` could match (by kind, bus, vendor, id)."""
    from famous.manifests.schema import PciDevice

    reqs = [
        r for e in engines for r in (*e.devices.allof, *e.devices.anyof) if isinstance(r, PciDevice)
    ]
    return [
        f"{_label(dev)}: detected, no engine uses it"
        for dev in report.devices
        if (dev.kind == "npu" or (dev.kind == "gpu" and dev.integrated is False))
        and not any(_could_use(r, dev) for r in reqs)
    ]


def builtin_engines() -> list[EngineManifest]:
    """Every engine of every built-in package (what `show-machine` checks devices against)."""
    from famous.manifests.loader import builtin_package_names, find_package

    return [e for name in builtin_package_names() for e in find_package(name).engines.values()]


#: (kind, vendor) pairs the built-in engines cover: show-machine skips them without loading
#: every package (a test checks this agrees with the full check on every capture).
_COVERED = {("gpu", 0x10DE), ("gpu", 0x1002), ("gpu", 0x8086), ("npu", 0x8086)}


def _candidate(dev: Device) -> bool:
    if dev.kind == "npu" or (dev.kind == "gpu" and dev.integrated is False):
        return (dev.kind, dev.vendor_id) not in _COVERED
    return False


def unused_accelerator_notes(report: HardwareReport) -> list[str]:
    """``unused_accelerators`` against every built-in engine, for `show-machine`; packages
    are loaded only when the machine has an NPU or discrete GPU of a vendor they may not
    cover (a Hailo-8, an AMD XDNA NPU), so the common machine pays nothing."""
    if not any(_candidate(d) for d in report.devices):
        return []
    return unused_accelerators(report, builtin_engines())
