"""The machine as famous sees it: detected here, or read from a captured root."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from famous.hardware.report import HardwareReport


def detect_machine(root: Path | None = None) -> HardwareReport:
    """What the detector sees: this machine, or a captured root laid out like / (``root``,
    else ``FAMOUS_HARDWARE_ROOT``)."""
    from famous.hardware.detector import detect
    from famous.hardware.host import Host
    from famous.matchmaker.advice import unused_accelerator_notes

    report = detect(Host.fake(root) if root is not None else Host.from_env())  # MissingRoot
    report.warnings.extend(unused_accelerator_notes(report))
    return report
