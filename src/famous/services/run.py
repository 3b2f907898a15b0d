"""``famous run MODEL``, before the gateway: what MODEL names, and installing it if needed.

MODEL is a local model file or folder (the gateway registers it), an installed model, or
something to pull first: a package or a Hub repo, checked for a runtime that can start
before anything is downloaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from famous.errors import Incompatible

if TYPE_CHECKING:
    from famous.hub.progress import ProgressSink
    from famous.hub.pull import PullResult


@dataclass(frozen=True)
class RunTarget:
    name: str  # what requests to the gateway call the model
    local_path: str | None = None  # a local file or folder the gateway must register
    pulled: PullResult | None = None  # the pull that installed it, when one ran


def local_model(model: str) -> RunTarget | None:
    """MODEL as a local model file or folder (a folder with model.yaml is a package)."""
    path = Path(model).expanduser()
    if path.is_file() or (path.is_dir() and not (path / "model.yaml").is_file()):
        return RunTarget(path.stem if path.is_file() else path.name, str(path.resolve()))
    return None


def installed(model: str) -> bool:
    """The catalog has an artifact of ``model`` whose files are still there."""
    from famous.store.artifacts import list_artifacts
    from famous.store.db import CatalogError

    try:
        found = list_artifacts(model)
    except CatalogError:  # an unreadable catalog serves nothing; the pull says why
        return False
    return any(Path(a.path).exists() for a in found)


def ensure_runtime(model: str, engine: str | None, variant: str | None) -> None:
    """Before downloading: raise Incompatible when the chosen engine's runtime is missing."""
    from famous.manifests.errors import PackageNotFound
    from famous.services.selection import check_runtime, resolve_selection

    try:
        resolved = resolve_selection(model, engine=engine, option=variant)
    except PackageNotFound:
        return  # a Hub repo: its package is synthesized by the pull
    missing = check_runtime(resolved)
    if missing is not None:
        raise Incompatible(missing.explain(resolved.package.name))


def prepare(
    model: str,
    engine: str | None = None,
    variant: str | None = None,
    offline: bool = False,
    pull_progress: Callable[[], ProgressSink] | None = None,
) -> RunTarget:
    """What to load for MODEL; a model not installed (or not for ``engine``/``variant``) is
    pulled first. ``pull_progress`` is called just before a pull starts, for its progress."""
    local = local_model(model)
    if local is not None:
        return local
    if engine is None and variant is None and installed(model):
        return RunTarget(model)
    ensure_runtime(model, engine, variant)
    from famous.hub.pull import pull

    progress = pull_progress() if pull_progress is not None else None
    result = pull(model, engine=engine, variant=variant, offline=offline or None, progress=progress)
    return RunTarget(result.model, pulled=result)
