"""Scores engines against a machine and picks one, explaining every verdict.

Never starts processes or downloads: it only reads manifests and a HardwareReport.
Names are loaded on first use, so ``famous show-machine`` (which asks only
``famous.matchmaker.advice`` whether a device goes unused) does not load the schemas.
``select`` the function is imported from ``famous.matchmaker.select``: lazily, the package
attribute would be that submodule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from famous.matchmaker.devices import DeviceMatch, match_device
    from famous.matchmaker.memory import MemoryEstimate
    from famous.matchmaker.select import (
        EngineEvaluation,
        NoCompatibleEngine,
        Selection,
        UnknownEngine,
        evaluate,
        evaluate_all,
    )

_HOMES = {
    "DeviceMatch": "famous.matchmaker.devices",
    "match_device": "famous.matchmaker.devices",
    "MemoryEstimate": "famous.matchmaker.memory",
    **{
        name: "famous.matchmaker.select"
        for name in (
            "EngineEvaluation",
            "NoCompatibleEngine",
            "Selection",
            "UnknownEngine",
            "evaluate",
            "evaluate_all",
        )
    },
}

__all__ = [
    "DeviceMatch",
    "EngineEvaluation",
    "MemoryEstimate",
    "NoCompatibleEngine",
    "Selection",
    "UnknownEngine",
    "evaluate",
    "evaluate_all",
    "match_device",
]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'famous.matchmaker' has no attribute {name!r}")
