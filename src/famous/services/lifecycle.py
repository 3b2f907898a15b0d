"""Lifecycle policy: removing what is installed (``famous rm``), and which installed artifacts
an engine choice still needs (``famous prune``)."""

from __future__ import annotations

from famous.errors import NotFound
from famous.hardware.report import HardwareReport
from famous.store.artifacts import (
    InstalledArtifact,
    PruneReport,
    list_artifacts,
    remove_artifacts,
)
from famous.store.artifacts import prune as prune_artifacts


def _selected(
    model: str, items: list[InstalledArtifact], report: HardwareReport | None
) -> tuple[tuple[str, str] | None, HardwareReport | None]:
    """(engine, variant) the matchmaker would pick for ``model`` now, and the report it used;
    None when there is no package to ask (an import, a Hub repo) or no engine fits."""
    from famous.manifests.errors import ManifestError, PackageNotFound
    from famous.matchmaker import NoCompatibleEngine
    from famous.services.selection import machine_report, resolve_selection

    try:
        report = report or machine_report()
        package_name = str(items[0].metadata.get("package") or model)
        sel = resolve_selection(package_name, report=report).selection
    except (PackageNotFound, ManifestError, NoCompatibleEngine):
        return None, report
    return (sel.engine.name, sel.option_name), report


def needed_artifact_ids() -> set[int]:
    """Artifacts some engine choice needs: the pinned or best engine of each installed model.

    A model with one artifact keeps it. Otherwise the artifact of the current choice stays;
    with no choice to ask, the matchmaker's latest pick stays, else the newest artifact.
    """
    keep: set[int] = set()
    report: HardwareReport | None = None
    by_model: dict[str, list[InstalledArtifact]] = {}
    for a in list_artifacts():
        by_model.setdefault(a.model, []).append(a)
    for model, items in by_model.items():
        if len(items) == 1:
            keep.add(items[0].id)
            continue
        choice, report = _selected(model, items, report)
        matched = [a for a in items if choice and (a.engine, a.variant) == choice]
        if matched:
            keep.update(a.id for a in matched)
        else:
            picked = [a for a in items if a.metadata.get("selected_by") == "matchmaker"]
            keep.add(max(picked or items, key=lambda a: (a.created_at, a.id)).id)
    return keep


def prune(dry_run: bool = False) -> PruneReport:
    """Remove the artifacts no engine choice needs, and unfinished downloads."""
    return prune_artifacts(needed_artifact_ids(), dry_run=dry_run)


def remove_installed(
    model: str, engine: str | None = None, variant: str | None = None, *, force: bool = False
) -> list[InstalledArtifact]:
    """Forget and delete the artifacts of ``model`` (``famous rm``): NotFound when none is
    installed, ArtifactInUse when a running deployment uses one (unless ``force``)."""
    removed = remove_artifacts(model, engine, variant, force=force)
    if not removed:
        raise NotFound(f"{model} is not installed (see `famous list`)")
    return removed
