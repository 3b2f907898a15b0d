"""What ``famous list`` prints: the verified artifacts in the catalog."""

from __future__ import annotations

from typing import TYPE_CHECKING

from famous.cli.render import OutputFormat, emit, print_table
from famous.units import format_size

if TYPE_CHECKING:
    from famous.store.artifacts import InstalledArtifact


def artifact_cells(a: InstalledArtifact) -> tuple[str, str, str, str]:
    """The model, engine, variant and size cells every artifact table starts with."""
    return (a.model, a.engine, a.variant, format_size(a.size_bytes))


def list_installed(model: str | None, fmt: OutputFormat) -> None:
    from famous.store.artifacts import list_artifacts

    items = list_artifacts(model)

    def table() -> None:
        rows = [(*artifact_cells(a), a.path, a.created_at.replace("+00:00", "Z")) for a in items]
        print_table(["model", "engine", "variant", "size", "path", "pulled"], rows)

    emit(items, fmt, table)
