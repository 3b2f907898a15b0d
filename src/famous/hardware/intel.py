"""Intel GPUs: global memory and unified-memory flag from ``clinfo --json``.

clinfo is run only when an Intel GPU is present (it can take a moment). Each OpenCL GPU
device of vendor 0x8086 is matched to a PCI GPU by, in order: ``CL_DEVICE_ID_INTEL`` equal to
the PCI device id, the slot in ``CL_DEVICE_PCI_BUS_INFO_KHR``, and finally the only Intel GPU
left whose integrated-ness agrees with ``CL_DEVICE_HOST_UNIFIED_MEMORY``. (Real captures show
a bus info that names a bridge rather than the card, so the device id comes first.)
"""

from __future__ import annotations

import json
import re
from typing import Any

from famous.hardware.host import Host
from famous.hardware.pci import VENDOR_INTEL
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


def probe_intel(host: Host, devices: list[Device], warnings: list[str]) -> None:
    """Fill global memory of every Intel GPU that OpenCL reports. Run after the integrated rule."""
    gpus = [d for d in devices if d.kind == "gpu" and d.vendor_id == VENDOR_INTEL]
    if not gpus:
        return
    slots = ", ".join(d.slot for d in gpus)
    result = host.run(["clinfo", "--json"])
    if result.status == "missing":
        warnings.append(f"Intel GPU {slots}: clinfo is not installed, GPU memory unknown")
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
        warnings.append(f"Intel GPU {dev.slot}: not reported by clinfo (no OpenCL driver for it?)")
