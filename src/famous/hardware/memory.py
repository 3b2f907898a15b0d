"""RAM and swap from /proc/meminfo.

The kernel writes sizes in ``kB`` (KiB). Some captures write plain byte counts without a
unit; those are taken as bytes. When ``MemAvailable`` is absent (kernels before 3.14, or a
capture that kept only totals) it is estimated from MemFree + Buffers + Cached, and failing
that assumed equal to the total, with a warning, so a capture without it still fits models.
"""

from __future__ import annotations

from famous.hardware.host import Host
from famous.hardware.report import MemoryInfo
from famous.units import format_size

_MEMINFO = "/proc/meminfo"
_UNITS = {"": 1, "b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}


def parse_meminfo(text: str) -> dict[str, int]:
    """``MemTotal: 7484328 kB`` → {'MemTotal': 7664, …} in bytes; odd lines are skipped."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        fields = rest.split()
        if not fields or not fields[0].isdigit():
            continue
        unit = fields[1].lower() if len(fields) > 1 else ""
        if unit not in _UNITS:
            continue
        values[key.strip()] = int(fields[0]) * _UNITS[unit]
    return values


def detect_memory(host: Host, warnings: list[str]) -> MemoryInfo:
    text = host.read_text(_MEMINFO)
    if text is None:
        warnings.append(f"cannot read {_MEMINFO}: memory unknown")
        return MemoryInfo()
    values = parse_meminfo(text)
    total = values.get("MemTotal")
    if not total:
        warnings.append(f"{_MEMINFO} has no MemTotal: memory unknown")
        return MemoryInfo()
    available = values.get("MemAvailable")
    if available is None:
        parts = [values.get(k) for k in ("MemFree", "Buffers", "Cached")]
        if all(p is not None for p in parts):
            available = sum(p for p in parts if p is not None)
            warnings.append(
                f"{_MEMINFO} has no MemAvailable: estimated {format_size(available)} "
                "from MemFree + Buffers + Cached"
            )
        else:
            available = total
            warnings.append(
                f"{_MEMINFO} has no MemAvailable: assuming all {format_size(total)} is available"
            )
    swap_total = values.get("SwapTotal", 0)
    swap_free = values.get("SwapFree", swap_total)
    return MemoryInfo(
        total_bytes=total,
        available_bytes=available,
        swap_total_bytes=swap_total,
        swap_free_bytes=swap_free,
    )
