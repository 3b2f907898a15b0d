"""The hardware detector: ``detect(Host.from_env()) -> HardwareReport``.

Names are loaded on first use so that importing ``famous.hardware.report`` (as the
matchmaker does) does not pull in the probes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from famous.hardware.detector import detect
    from famous.hardware.host import FakeHost, Host, RealHost
    from famous.hardware.report import HardwareReport

#: A captured machine root to read instead of / (the tests' and ``--root``'s environment twin).
ENV_ROOT = "FAMOUS_HARDWARE_ROOT"

__all__ = ["ENV_ROOT", "FakeHost", "HardwareReport", "Host", "RealHost", "detect"]

_HOMES = {
    "detect": "famous.hardware.detector",
    "FakeHost": "famous.hardware.host",
    "Host": "famous.hardware.host",
    "RealHost": "famous.hardware.host",
    "HardwareReport": "famous.hardware.report",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'famous.hardware' has no attribute {name!r}")
