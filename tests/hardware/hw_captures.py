"""Where the real-machine captures live and how a report is summarised for golden files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from famous.hardware.cpu import notable_flags
from famous.hardware.report import HardwareReport
from famous.plain import to_plain

REPO_ROOT = Path(__file__).resolve().parents[2]
MACHINES = (REPO_ROOT / ".." / "shared" / "machines").resolve()
GOLDEN = Path(__file__).resolve().parent / "golden"


def machine_names() -> list[str]:
    if not MACHINES.is_dir():
        return []
    return sorted(p.name for p in MACHINES.iterdir() if (p / "machine-root").is_dir())


def machine_root(name: str) -> Path:
    if not MACHINES.is_dir():
        pytest.skip(f"real-machine captures not found at {MACHINES} (../shared/machines)")
    root = MACHINES / name / "machine-root"
    if not root.is_dir():
        pytest.skip(f"capture {name} not found under {MACHINES}")
    return root


_HEX = {
    "device_class": 6,
    "vendor_id": 4,
    "device_id": 4,
    "subsystem_vendor_id": 4,
    "subsystem_device_id": 4,
    "implementer_id": 2,
    "part_number": 3,
}


def _hexed(data: dict[str, Any]) -> dict[str, Any]:
    """Ids as people write them (0x10de), so a golden file reads like lspci."""
    return {
        k: f"0x{v:0{_HEX[k]}x}" if k in _HEX and isinstance(v, int) else v for k, v in data.items()
    }


def _without_none(data: Any) -> Any:
    """Drop None values at every depth (the golden files leave unknown fields out)."""
    if isinstance(data, dict):
        return {k: _without_none(v) for k, v in data.items() if v is not None}
    return data


def summary(report: HardwareReport) -> dict[str, Any]:
    """A compact, reviewable view: every field except the long flag lists and 'other' devices."""
    return {
        "architecture": report.architecture,
        "cpus": [
            {
                **_hexed(_without_none({**to_plain(cpu), "flags": None})),
                "flag_count": len(cpu.flags),
                "notable_flags": notable_flags(cpu),
            }
            for cpu in report.cpus
        ],
        "memory": to_plain(report.memory),
        "disk": to_plain(report.disk),
        "devices": [
            _hexed(_without_none(to_plain(d))) for d in report.devices if d.kind != "other"
        ],
        "other_devices": sum(1 for d in report.devices if d.kind == "other"),
        "warnings": report.warnings,
    }
