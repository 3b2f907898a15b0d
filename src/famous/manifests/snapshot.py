"""Validated packages snapshotted as JSON, so a read-only command validates a package once.

``read_package`` finds a package as ``find_package`` does. When the package's files are
exactly as they were when it last validated (same paths, sizes and modification times,
same famous version), it returns the snapshot as records (``famous.manifests.records``)
without importing YAML or pydantic. Otherwise it validates the files (errors as
``find_package`` raises them), writes the snapshot, and returns the validated package.
Snapshots live under ``FAMOUS_HOME/cache/packages``; one that cannot be written or read
is only a slower answer, never a different one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from famous.manifests.locate import builtin_package_names, package_dir, user_package_names
from famous.manifests.records import PackageRecord, package_record
from famous.plain import to_plain

if TYPE_CHECKING:
    from famous.manifests.schema import ModelPackage

#: Bump when the snapshot's layout or the records change meaning.
FORMAT = 2


def snapshot_dir() -> Path:
    from famous.store.cache import cache_dir

    return cache_dir("packages")


def _files(directory: Path) -> list[Path]:
    return [directory / "model.yaml", *sorted(directory.glob("engines/*/engine.yaml"))]


def snapshot_key(directory: Path) -> str:
    """What the snapshot depends on: famous's version, the folder, each file's stat."""
    from famous import __version__

    parts = [str(FORMAT), __version__, str(directory.resolve())]
    for file in _files(directory):
        st = file.stat()
        parts.append(f"{file.relative_to(directory)}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _prefix(directory: Path) -> str:
    """One package folder's snapshots share this prefix (its name, a digest of its path)."""
    where = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:8]
    return f"{directory.name}-{where}-"


def _path(directory: Path, key: str) -> Path:
    return snapshot_dir() / f"{_prefix(directory)}{key}.json"


def read_package(name: str) -> ModelPackage | PackageRecord:
    """The package ``name`` (built-in, user, or a directory): its snapshot when current."""
    directory = package_dir(name)
    if directory is None:
        from famous.manifests.errors import PackageNotFound

        raise PackageNotFound(name, sorted({*builtin_package_names(), *user_package_names()}))
    try:
        key: str | None = snapshot_key(directory)
    except OSError:
        key = None  # a file vanished while we looked: validate, keep no snapshot
    if key is not None:
        try:
            data = json.loads(_path(directory, key).read_bytes())
            if data.get("source") == str(directory):
                return package_record(data)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass  # none yet, or damaged: validate and write it again
    from famous.manifests.loader import load_package

    package = load_package(directory)
    if key is not None:
        data = package.model_dump()
        data["engines_json"] = {n: to_plain(e) for n, e in package.engines.items()}
        _write(directory, key, data)
    return package


def _write(directory: Path, key: str, data: dict[str, Any]) -> None:
    """Write the snapshot and drop this package's older ones; a failure only costs time."""
    from famous.store.cache import write_quietly

    path = _path(directory, key)
    if not write_quietly(path, json.dumps(data)):
        return
    for old in path.parent.glob(f"{_prefix(directory)}*.json"):
        if old != path:
            with contextlib.suppress(OSError):
                old.unlink(missing_ok=True)
