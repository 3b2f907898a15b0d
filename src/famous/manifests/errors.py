"""Manifest errors that point at the file, the line and the field, and say what to do."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from famous.errors import InvalidManifest, NotFound


@dataclass(frozen=True)
class ManifestProblem:
    path: Path
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class ManifestError(InvalidManifest, ValueError):
    """One or more problems in a package's manifests; nothing was loaded."""

    def __init__(self, problems: list[ManifestProblem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class PackageNotFound(NotFound, LookupError):
    """No built-in package, package directory or catalog entry has this name."""

    def __init__(self, name: str, known: list[str]):
        self.name = name
        self.known = known
        hint = f"; known packages: {', '.join(known)}" if known else ""
        super().__init__(
            f"no model package named {name!r}{hint}. Use `famous models` to list them, "
            "or pass a package directory"
        )
