"""The variables an engine's process needs on this machine's devices.

An engine manifest's ``environment`` rules name gfx targets; a rule applies when a GPU the
engine runs on has one of them. ROCm has no kernels for RDNA2's gfx1031/1032/1034, which run
gfx1030's with ``HSA_OVERRIDE_GFX_VERSION=10.3.0``; the rule says so once, in the manifest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from famous.hardware.report import HardwareReport
    from famous.manifests.schema import EngineManifest


def engine_environment(
    engine: EngineManifest, report: HardwareReport, slots: set[str] | None = None
) -> dict[str, str]:
    """Every rule's variables whose gfx target a GPU has (only those in ``slots`` if given)."""
    archs = {
        d.gpu.microarchitecture
        for d in report.devices
        if d.gpu is not None and (slots is None or d.slot in slots)
    }
    env: dict[str, str] = {}
    for rule in engine.environment:
        if archs & set(rule.microarchitecture):
            env.update(rule.variables)
    return env
