"""Build small fake roots in a temporary folder for fault and unit tests."""

from __future__ import annotations

import json
from pathlib import Path

from famous.hardware.host import CommandResult, FakeHost

CPUINFO_X86 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Test CPU
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu avx avx2 lm

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Test CPU
physical id\t: 0
core id\t\t: 1
flags\t\t: fpu avx avx2 lm
"""

MEMINFO = (
    "MemTotal:       8000000 kB\nMemAvailable:   4000000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n"
)


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def pci(root: Path, slot: str, cls: int, vendor: int, device: int, **extra: str) -> None:
    base = f"sys/bus/pci/devices/{slot}"
    write(root, f"{base}/class", f"0x{cls:06x}\n")
    write(root, f"{base}/vendor", f"0x{vendor:04x}\n")
    write(root, f"{base}/device", f"0x{device:04x}\n")
    for name, value in extra.items():
        write(root, f"{base}/{name}", value)


def linux_root(root: Path) -> Path:
    write(root, "proc/cpuinfo", CPUINFO_X86)
    write(root, "proc/meminfo", MEMINFO)
    write(root, "proc/sys/kernel/arch", "x86_64\n")
    write(root, "run/disk-stats.json", json.dumps({"/": {"total": 1000, "avail": 400}}))
    return root


class TimeoutHost(FakeHost):
    """A fake root where every command times out."""

    def run(self, argv: list[str], timeout: float = 5.0) -> CommandResult:
        return CommandResult("timeout")
