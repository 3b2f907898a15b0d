"""The environment a pulled model's engine is launched with on this machine."""

from __future__ import annotations


def artifact_environment(model: str, engine: str) -> dict[str, str]:
    """Variables ``engine``'s manifest sets for this machine's GPUs; {} without rules.

    The machine is detected only when the engine has rules (ROCm's gfx overrides), so other
    engines launch without paying for detection.
    """
    from famous.errors import FamousError
    from famous.manifests.loader import find_package

    try:
        manifest = find_package(model).engines.get(engine)
    except FamousError:  # an imported model without a package: no rules to apply
        return {}
    if manifest is None or not manifest.environment:
        return {}
    from famous.matchmaker.environment import engine_environment
    from famous.matchmaker.resolve import machine_report

    return engine_environment(manifest, machine_report())
