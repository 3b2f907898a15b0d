"""NVIDIA GPUs: VRAM and compute capability.

On the live host NVML (``nvidia-ml-py``) is tried first, imported here and only here so the
rest of famous never pays for it; when it does not import or initialise (no driver), each GPU
is asked with ``nvidia-smi --id=SLOT --query-gpu=FIELD --format=csv,noheader`` under a
timeout. A fake root answers those calls from ``run/nvidia-smi/SLOT/FIELD``.
"""

from __future__ import annotations

import contextlib
import re

from famous.hardware.host import Host
from famous.hardware.pci import VENDOR_NVIDIA
from famous.hardware.report import Device

INSTALL_DRIVER = "install the NVIDIA driver (it provides nvidia-smi) so CUDA engines can use it"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(MiB|GiB|KiB|B)?\s*$", re.IGNORECASE)
_CC = re.compile(r"^\s*(\d+)\.(\d+)\s*$")
_MULT = {"b": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3}


def parse_smi_memory(text: str) -> int | None:
    """'11264 MiB' → bytes; None for '[N/A]' or garbage (nvidia-smi defaults to MiB)."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if len(lines) != 1:
        return None
    match = _SIZE.match(lines[0])
    if not match:
        return None
    unit = (match.group(2) or "MiB").lower()
    return int(float(match.group(1)) * _MULT[unit])


def parse_smi_cc(text: str) -> str | None:
    """'6.1' → '6.1'; None for anything that is not MAJOR.MINOR."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if len(lines) != 1:
        return None
    match = _CC.match(lines[0])
    return f"{int(match.group(1))}.{int(match.group(2))}" if match else None


def normalise_bus_id(bus_id: str) -> str:
    """NVML's '00000000:01:00.0' → sysfs's '0000:01:00.0'."""
    domain, _, rest = bus_id.strip().lower().partition(":")
    try:
        return f"{int(domain, 16):04x}:{rest}"
    except ValueError:
        return bus_id.strip().lower()


def _probe_nvml(gpus: list[Device], warnings: list[str]) -> bool:
    """Fill from NVML; False when NVML is unusable here (then nvidia-smi is tried)."""
    try:
        import pynvml  # nvidia-ml-py; optional extra 'nvidia'
    except ImportError:
        return False
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded, …
        return False
    try:
        by_slot = {d.slot: d for d in gpus}
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            slot = normalise_bus_id(_text(pynvml.nvmlDeviceGetPciInfo(handle).busId))
            dev = by_slot.get(slot)
            if dev is None or dev.gpu is None:
                continue
            dev.gpu.vram_bytes = int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            dev.gpu.compute_capability = f"{major}.{minor}"
            dev.gpu.driver = dev.gpu.driver or "nvidia"
    except Exception as exc:
        warnings.append(f"NVML query failed ({exc}); trying nvidia-smi")
        return False
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
    return True


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _smi(host: Host, slot: str, field: str) -> tuple[str | None, str | None]:
    """(output, None) or (None, why it failed)."""
    result = host.run(
        ["nvidia-smi", f"--id={slot}", f"--query-gpu={field}", "--format=csv,noheader"]
    )
    if result.status == "missing":
        return None, "missing"
    if not result.ok:
        return None, f"nvidia-smi {field} for {slot} {result.describe()}"
    return result.stdout, None


def _probe_smi(host: Host, gpus: list[Device], warnings: list[str]) -> None:
    for dev in gpus:
        assert dev.gpu is not None
        memory, why = _smi(host, dev.slot, "memory.total")
        if why == "missing":
            slots = ", ".join(d.slot for d in gpus)
            warnings.append(
                f"NVIDIA GPU {slots}: neither NVML nor nvidia-smi is available "
                "(driver not installed?), VRAM and compute capability unknown; "
                f"{INSTALL_DRIVER}"
            )
            return
        if memory is None and why and "timed out" in why:
            warnings.append(f"{why}; not asking nvidia-smi again, NVIDIA GPU details unknown")
            return
        if memory is None:
            warnings.append(f"{why}; VRAM unknown")
        else:
            dev.gpu.vram_bytes = parse_smi_memory(memory)
            if dev.gpu.vram_bytes is None:
                warnings.append(
                    f"nvidia-smi memory.total for {dev.slot} unreadable: {memory.strip()[:80]!r}"
                )
        cc, why = _smi(host, dev.slot, "compute_cap")
        if cc is None:
            warnings.append(f"{why}; compute capability unknown")
        else:
            dev.gpu.compute_capability = parse_smi_cc(cc)
            if dev.gpu.compute_capability is None:
                warnings.append(
                    f"nvidia-smi compute_cap for {dev.slot} unreadable: {cc.strip()[:80]!r}"
                )


def probe_nvidia(host: Host, devices: list[Device], warnings: list[str]) -> None:
    """Fill VRAM and compute capability of every NVIDIA GPU; nothing to do without one."""
    gpus = [d for d in devices if d.kind == "gpu" and d.vendor_id == VENDOR_NVIDIA]
    if not gpus:
        return
    if host.is_real and _probe_nvml(gpus, warnings):
        return
    _probe_smi(host, gpus, warnings)
