"""Does a machine have the device an engine asks for? And how specifically does it match?

Scoring weights (the README repeats them). A matched device earns its base weight plus a
bonus for every constraint it satisfied, so an engine written for this exact hardware
beats a generic one:

=====================  ======  ==========================================================
what matched           points  why
=====================  ======  ==========================================================
discrete GPU           100     a dedicated accelerator beats everything else
NPU                     60
integrated GPU          40     shares RAM bandwidth with the CPU
CPU                     10     always there; the fallback
any PCI device           5     e.g. a platform's root complex, only refines a CPU match
vendor-id               10
device-id               20     written for this exact chip
manufacturer-id          5     x86 vendor_id
implementer-id          10     arm64 implementer (Ampere 0xc0, Arm 0x41)
part-number             10     arm64 core type
each CPU flag/feature    3     avx512f, avx2, asimddp, …
vram                     5
compute-capability      10
microarchitecture       10     AMD gfx target
=====================  ======  ==========================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from famous.hardware.report import CpuGroup, Device, HardwareReport
    from famous.manifests.schema import CpuDevice, DeviceRequirement, PciDevice
from famous.units import format_size, format_sizes

BASE = {"gpu-discrete": 100, "npu": 60, "gpu-integrated": 40, "cpu": 10, "pci": 5}
BONUS = {
    "vendor-id": 10,
    "device-id": 20,
    "manufacturer-id": 5,
    "implementer-id": 10,
    "part-number": 10,
    "flag": 3,
    "vram": 5,
    "compute-capability": 10,
    "microarchitecture": 10,
}


@dataclass(kw_only=True)
class DeviceMatch:
    """The outcome of one requirement: which device satisfied it, or why none did."""

    requirement: str
    matched: bool
    device: str | None = None
    score: int = 0
    reasons: list[str]


def describe(req: DeviceRequirement) -> str:
    """A short human description: 'gpu vendor 0x10de, cc >=7.0'."""
    if req.type == "cpu":
        parts = [f"cpu {req.architecture}"]
        if req.manufacturer_id:
            parts.append(req.manufacturer_id)
        if req.implementer_id is not None:
            parts.append(f"implementer 0x{req.implementer_id:02x}")
        if req.part_number:
            parts.append("part " + "|".join(f"0x{p:03x}" for p in req.part_number))
        if req.flags or req.features:
            parts.append("+".join([*req.flags, *req.features]))
        return " ".join(parts)
    parts = [req.type]
    if req.vendor_id is not None:
        parts.append(f"vendor 0x{req.vendor_id:04x}")
    if req.device_id:
        parts.append("device " + "|".join(f"0x{d:04x}" for d in req.device_id))
    if req.vram:
        parts.append(f"vram>={format_size(req.vram)}")
    if req.compute_capability:
        parts.append("cc " + ",".join(req.compute_capability))
    if req.microarchitecture:
        parts.append("|".join(req.microarchitecture))
    return " ".join(parts)


Check = tuple[int, list[str], bool]  # score, reasons it fails, identity mismatch


def _check_cpu(req: CpuDevice, cpu: CpuGroup) -> Check:
    """Score, the reasons this CPU group fails (empty when it matches), identity mismatch."""
    reasons: list[str] = []
    score = BASE["cpu"]
    if cpu.architecture != req.architecture:
        return 0, [f"architecture {cpu.architecture} is not {req.architecture}"], True
    if req.manufacturer_id:
        if (cpu.manufacturer_id or "").lower() == req.manufacturer_id.lower():
            score += BONUS["manufacturer-id"]
        else:
            reasons.append(
                f"manufacturer {cpu.manufacturer_id or 'unknown'} is not {req.manufacturer_id}"
            )
    if req.implementer_id is not None:
        if cpu.implementer_id == req.implementer_id:
            score += BONUS["implementer-id"]
        else:
            have = "unknown" if cpu.implementer_id is None else f"0x{cpu.implementer_id:02x}"
            reasons.append(f"implementer {have} is not 0x{req.implementer_id:02x}")
    if req.part_number:
        if cpu.part_number in req.part_number:
            score += BONUS["part-number"]
        else:
            have = "unknown" if cpu.part_number is None else f"0x{cpu.part_number:03x}"
            want = " or ".join(f"0x{p:03x}" for p in req.part_number)
            reasons.append(f"part {have} is not {want}")
    flags = {f.lower() for f in cpu.flags}
    for flag in [*req.flags, *req.features]:
        if flag.lower() in flags:
            score += BONUS["flag"]
        else:
            reasons.append(f"flag {flag} missing")
    return (0 if reasons else score), reasons, False


def _version(text: str | None):  # -> packaging.version.Version | None
    from packaging.version import InvalidVersion, Version

    try:
        return Version(text) if text else None
    except InvalidVersion:
        return None


def _check_pci(req: PciDevice, dev: Device) -> Check:
    reasons: list[str] = []
    if req.type != "pci" and dev.kind != req.type:
        return 0, [f"{dev.slot} is not a {req.type}"], True
    if req.bus != dev.bus and req.type != "pci":
        return 0, [f"{dev.slot} is on bus {dev.bus}, not {req.bus}"], True
    if req.type == "pci":
        score = BASE["pci"]
    elif dev.kind == "npu":
        score = BASE["npu"]
    else:
        score = BASE["gpu-integrated" if dev.integrated else "gpu-discrete"]
    if req.vendor_id is not None:
        if dev.vendor_id != req.vendor_id:
            return (
                0,
                [f"{dev.slot} vendor 0x{dev.vendor_id:04x} is not 0x{req.vendor_id:04x}"],
                True,
            )
        score += BONUS["vendor-id"]
    if req.device_id:
        if dev.device_id not in req.device_id:
            want = " or ".join(f"0x{d:04x}" for d in req.device_id)
            return 0, [f"{dev.slot} device 0x{dev.device_id:04x} is not {want}"], True
        score += BONUS["device-id"]
    if req.discrete is not None and bool(dev.integrated) == req.discrete:
        kind = "integrated" if dev.integrated else "discrete"
        want = "discrete" if req.discrete else "integrated"
        reasons.append(f"{dev.slot} is {kind}, the engine needs a {want} GPU")
    gpu = dev.gpu
    if req.vram:
        have = gpu.vram_bytes if gpu else None
        if have is None:
            reasons.append(f"needs {format_size(req.vram)} VRAM, device {dev.slot} reports none")
        elif have < req.vram:
            need_text, have_text = format_sizes(req.vram, have)
            reasons.append(f"needs {need_text} VRAM, device {dev.slot} has {have_text}")
        else:
            score += BONUS["vram"]
    if req.compute_capability:
        have_cc = gpu.compute_capability if gpu else None
        version = _version(have_cc)
        from packaging.specifiers import SpecifierSet

        spec = SpecifierSet(",".join(req.compute_capability))
        if version is None:
            reasons.append(f"compute capability of {dev.slot} is unknown, needs {spec}")
        elif version not in spec:
            reasons.append(f"compute capability {have_cc} does not satisfy {spec}")
        else:
            score += BONUS["compute-capability"]
    if req.microarchitecture:
        have_arch = gpu.microarchitecture if gpu else None
        if have_arch in req.microarchitecture:
            score += BONUS["microarchitecture"]
        else:
            want = " or ".join(req.microarchitecture)
            reasons.append(f"{dev.slot} microarchitecture {have_arch or 'unknown'} is not {want}")
    return (0 if reasons else score), reasons, False


def match_device(req: DeviceRequirement, report: HardwareReport) -> DeviceMatch:
    """The best-scoring device that satisfies ``req``, else the closest miss's reasons."""
    text = describe(req)
    candidates: list[tuple[str, Check]] = []
    if req.type == "cpu":
        candidates = [(c.model_name or c.architecture, _check_cpu(req, c)) for c in report.cpus]
        if not report.cpus:
            return DeviceMatch(
                requirement=text,
                matched=False,
                reasons=["no CPU information (cpuinfo probe failed)"],
            )
    else:
        candidates = [(d.slot, _check_pci(req, d)) for d in report.devices]
    matched = [(name, c[0]) for name, c in candidates if not c[1]]
    if matched:
        name, score = max(matched, key=lambda m: (m[1], m[0]))
        return DeviceMatch(requirement=text, matched=True, device=name, score=score, reasons=[])
    near = [(name, c[1]) for name, c in candidates if not c[2]]
    if near:  # the right kind of device, failing on a property: say which and why
        _, reasons = min(near, key=lambda m: (len(m[1]), m[0]))
    elif req.type == "cpu":
        reasons = sorted({r for _, c in candidates for r in c[1]})
    else:
        found = [d for d in report.devices if req.type == "pci" or d.kind == req.type]
        seen = ", ".join(f"{d.slot} 0x{d.vendor_id:04x}:0x{d.device_id:04x}" for d in found)
        reasons = [f"no matching {req.type} device" + (f" (found {seen})" if seen else " found")]
    return DeviceMatch(requirement=text, matched=False, reasons=reasons)
