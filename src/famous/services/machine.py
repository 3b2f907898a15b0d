"""The machine as famous sees it: detected here, or read from a captured root.

The read-only commands (``show-machine``, ``engines``, ``show-engine``) take this machine's
report from a detection at most ``RECENT_SECONDS`` old (``FAMOUS_HOME/cache/machine.json``),
so a script calling them in a loop detects once; a captured root is always read afresh, and
commands that act (pull, run, serve) always detect now.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from famous.hardware.report import HardwareReport

RECENT_SECONDS = 5.0


def detect_machine(root: Path | None = None, recent: bool = False) -> HardwareReport:
    """What the detector sees: this machine, or a captured root laid out like / (``root``,
    else ``FAMOUS_HARDWARE_ROOT``); with the notes on accelerators no engine uses."""
    from famous.matchmaker.advice import unused_accelerator_notes

    report = recent_report(root) if recent else _detect(root)
    report.warnings.extend(unused_accelerator_notes(report))
    return report


def _detect(root: str | os.PathLike[str] | None) -> HardwareReport:
    from famous.hardware.detector import detect
    from famous.hardware.host import Host

    return detect(Host.from_env(root))  # MissingRoot for a root that is not there


def recent_report(root: str | os.PathLike[str] | None = None) -> HardwareReport:
    """The detector's report; for this machine (no root given or in the environment) one
    made within ``RECENT_SECONDS`` when there is one. An unreadable cache only costs time."""
    from famous.hardware import ENV_ROOT

    if root is not None or os.environ.get(ENV_ROOT):
        return _detect(root)
    from famous.hardware.report import report_from_plain
    from famous.store.cache import cache_dir

    path = cache_dir("machine.json")
    try:
        data = json.loads(path.read_bytes())
        if 0 <= time.time() - float(data["detected_at"]) < RECENT_SECONDS:
            return report_from_plain(data["report"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    report = _detect(None)
    from famous.plain import to_plain
    from famous.store.cache import write_quietly

    write_quietly(path, json.dumps({"detected_at": time.time(), "report": to_plain(report)}))
    return report
