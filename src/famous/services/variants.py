"""The variants of a pulled model's engine and what each needs: the load check's fallback."""

from __future__ import annotations


def variant_needs(model: str, engine: str) -> list[tuple[str, int]]:
    """(variant, bytes it needs at the engine's context) for every variant ``engine`` of
    ``model``'s package lists; [] for a model without a package or an unknown engine."""
    from famous.errors import FamousError
    from famous.manifests.loader import find_package
    from famous.matchmaker.memory import estimate

    try:
        package = find_package(model)
    except FamousError:
        return []
    manifest = package.engines.get(engine)
    if manifest is None:
        return []
    context = manifest.configuration.get("context-size")
    ctx = context if isinstance(context, int) and context > 0 else None
    return [
        (
            name,
            estimate(
                name, package.option(name), package.shape_of(name), manifest, (None, ""), ctx
            ).total_bytes,
        )
        for name in manifest.model_options
    ]


def load_refusal(model: str, engine: str, need: int, available: int) -> str | None:
    """None when ``need`` fits the RAM ``available`` now, else why not and which smaller
    variant of ``engine`` would fit (the load half of the memory policy)."""
    from famous.matchmaker.memory import load_check

    if need <= available:
        return None  # the common case reads no manifest
    return load_check(need, available, variant_needs(model, engine), model)
