"""Scores engines against a machine and picks one, explaining every verdict.

Never starts processes or downloads: it only reads manifests and a HardwareReport.
"""

from famous.matchmaker.devices import DeviceMatch, match_device
from famous.matchmaker.memory import MemoryEstimate
from famous.matchmaker.select import (
    EngineEvaluation,
    NoCompatibleEngine,
    Selection,
    UnknownEngine,
    evaluate,
    evaluate_all,
    select,
)

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
    "select",
]
