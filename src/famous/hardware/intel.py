"""Intel GPUs: global memory and unified-memory flag from ``clinfo --json``, else VRAM from sysfs.

clinfo is run only when an Intel GPU is present (it can take a moment). Each OpenCL GPU
device of vendor 0x8086 is matched to a PCI GPU by, in order: ``CL_DEVICE_ID_INTEL`` equal to
the PCI device id, the slot in ``CL_DEVICE_PCI_BUS_INFO_KHR``, and finally the only Intel GPU
left whose integrated-ness agrees with ``CL_DEVICE_HOST_UNIFIED_MEMORY``. (Real captures show
a bus info that names a bridge rather than the card, so the device id comes first.)

Without clinfo (or for a GPU it does not report), a discrete card's VRAM is read from what
the kernel exposes under its PCI device: xe's ``tile*/physical_vram_size_bytes`` (summed over
tiles), else i915's ``drm/card*/lmem_total_bytes`` or the DKMS backport's
``prelim_lmem_total_bytes``. An integrated GPU has no local memory and keeps none.
"""

from __future__ import annotations

import json
import re
from typing import Any

from famous.hardware.host import Host
from famous.hardware.pci import PCI_DEVICES, VENDOR_INTEL
from famous.hardware.report import Device

_SLOT = re.compile(r"([0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])")


def cl_gpu_devices(data: Any) -> list[dict[str, Any]]:
    """Every OpenCL GPU device in clinfo's JSON (``devices: [{online: [...]}]``)."""
    out: list[dict[str, Any]] = []
    groups = data.get("devices", []) if isinstance(data, dict) else []
    for group in groups if isinstance(groups, list) else []:
        entries = group.get("online", []) if isinstance(group, dict) else group
        for dev in entries if isinstance(entries, list) else []:
            if not isinstance(dev, dict):
                continue
            kind = dev.get("CL_DEVICE_TYPE")
            types = kind.get("type", []) if isinstance(kind, dict) else [str(kind)]
            if any("GPU" in str(t) for t in types):
                out.append(dev)
    return out


def _bus_slot(dev: dict[str, Any]) -> str | None:
    info = dev.get("CL_DEVICE_PCI_BUS_INFO_KHR")
    match = _SLOT.search(str(info)) if info else None
    return match.group(1).lower() if match else None


def _match(cl: dict[str, Any], free: list[Device]) -> Device | None:
    device_id = cl.get("CL_DEVICE_ID_INTEL")
    for dev in free:
        if isinstance(device_id, int) and dev.device_id == device_id:
            return dev
    slot = _bus_slot(cl)
    for dev in free:
        if slot and dev.slot == slot:
            return dev
    unified = cl.get("CL_DEVICE_HOST_UNIFIED_MEMORY")
    if isinstance(unified, bool):
        candidates = [d for d in free if d.integrated is unified]
        if len(candidates) == 1:
            return candidates[0]
    return None


def _sysfs_int(host: Host, path: str) -> int | None:
    text = host.read_text(path)
    try:
        value = int(text.strip(), 0) if text is not None else None
    except ValueError:
        return None
    return value if value and value > 0 else None


def sysfs_vram(host: Host, slot: str) -> int | None:
    """Local memory of an Intel card as the xe or i915 driver exposes it, or None."""
    base = f"{PCI_DEVICES}/{slot}"
    tiles = [t for t in host.list_dir(base) if t.startswith("tile")]
    sizes = [_sysfs_int(host, f"{base}/{t}/physical_vram_size_bytes") for t in tiles]
    if any(sizes):
        return sum(s for s in sizes if s)
    for card in (c for c in host.list_dir(f"{base}/drm") if c.startswith("card")):
        for name in ("lmem_total_bytes", "prelim_lmem_total_bytes"):
            value = _sysfs_int(host, f"{base}/drm/{card}/{name}")
            if value:
                return value
    return None


def _from_sysfs(host: Host, gpus: list[Device], warnings: list[str]) -> None:
    """Without clinfo: the discrete cards' VRAM from sysfs; a warning for the rest."""
    unknown: list[str] = []
    known: list[str] = []
    for dev in gpus:
        vram = None if dev.integrated else sysfs_vram(host, dev.slot)
        if vram and dev.gpu is not None:
            dev.gpu.vram_bytes = vram
            known.append(dev.slot)
        else:
            unknown.append(dev.slot)
    if unknown:
        warnings.append(
            f"Intel GPU {', '.join(unknown)}: clinfo is not installed, GPU memory unknown"
        )
    if known:
        warnings.append(
            f"Intel GPU {', '.join(known)}: clinfo is not installed, VRAM read from sysfs; "
            "OpenVINO on it needs Intel's OpenCL runtime (intel-opencl-icd)"
        )


def probe_intel(host: Host, devices: list[Device], warnings: list[str]) -> None:
    """Fill global memory of every Intel GPU that OpenCL reports. Run after the integrated rule."""
    gpus = [d for d in devices if d.kind == "gpu" and d.vendor_id == VENDOR_INTEL]
    if not gpus:
        return
    result = host.run(["clinfo", "--json"])
    if result.status == "missing":
        _from_sysfs(host, gpus, warnings)
        return
    if not result.ok:
        warnings.append(f"clinfo --json {result.describe()}; Intel GPU memory unknown")
        return
    try:
        data = json.loads(result.stdout)
    except ValueError as exc:
        warnings.append(f"clinfo --json printed invalid JSON ({exc}); Intel GPU memory unknown")
        return
    free = list(gpus)
    for cl in cl_gpu_devices(data):
        if cl.get("CL_DEVICE_VENDOR_ID") not in (VENDOR_INTEL, None):
            continue
        dev = _match(cl, free)
        if dev is None or dev.gpu is None:
            continue
        free.remove(dev)
        memory = cl.get("CL_DEVICE_GLOBAL_MEM_SIZE")
        if isinstance(memory, int) and memory > 0:
            dev.gpu.vram_bytes = memory
        unified = cl.get("CL_DEVICE_HOST_UNIFIED_MEMORY")
        if isinstance(unified, bool):
            dev.gpu.unified_memory = unified
    for dev in free:
        vram = None if dev.integrated else sysfs_vram(host, dev.slot)
        if vram and dev.gpu is not None:
            dev.gpu.vram_bytes = vram
        read = ", VRAM read from sysfs" if vram else ""
        warnings.append(
            f"Intel GPU {dev.slot}: not reported by clinfo (no OpenCL driver for it?){read}"
        )
