"""The catalog of installed artifacts: register (after verification, in one transaction),
list, find, check, remove, disk usage and prune.

Readers never create the catalog: with no catalog file, listings are empty.
Only this module writes the ``artifacts`` and ``artifact_files`` tables.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from famous.errors import FamousError
from famous.store.db import connect, transaction
from famous.store.paths import famous_home, models_dir

ACTIVE_DEPLOYMENT = ("starting", "ready")


@dataclass(kw_only=True)
class ArtifactFile:
    relpath: str
    size_bytes: int
    sha256: str | None = None
    etag: str | None = None
    mtime_ns: int | None = None


@dataclass(kw_only=True)
class InstalledArtifact:
    """One verified artifact on disk: what ``famous list`` and ``show-model`` print.

    Plain dataclasses, not pydantic: rows famous wrote itself, and ``famous list`` prints them
    without importing pydantic."""

    id: int
    model: str  # package name or repo id the user named
    engine: str
    variant: str
    format: str
    repo_id: str | None = None
    revision: str | None = None
    path: str  # file or directory the engine loads
    root: str  # folder the artifact's files live under
    size_bytes: int
    source: str
    owned: bool
    created_at: str
    files: list[ArtifactFile] = field(default_factory=list)
    metadata: dict[str, object] = field(default_factory=dict)


class ArtifactInUse(FamousError, RuntimeError):
    def __init__(self, artifact: InstalledArtifact, deployments: list[str]) -> None:
        self.artifact, self.deployments = artifact, deployments
        super().__init__(
            f"{artifact.model} ({artifact.engine}/{artifact.variant}) is used by the running "
            f"deployment(s) {', '.join(deployments)}; stop them first (`famous stop NAME`)"
        )


@dataclass(kw_only=True)
class DiskUsage:
    artifacts: list[InstalledArtifact]
    total_bytes: int
    # unfinished downloads and imports (resumable, or prunable): partial files, and every
    # folder under models/ no artifact owns
    partial_bytes: int
    orphan_paths: list[str]  # folders under models/ no artifact owns
    free_bytes: int | None


@dataclass(kw_only=True)
class PruneReport:
    removed: list[InstalledArtifact]
    removed_paths: list[str]
    freed_bytes: int
    dry_run: bool


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def _root_of(path: Path, files: list[ArtifactFile]) -> Path:
    """The folder holding the files: ``path`` itself, or its parent for a single-file path."""
    return path if path.is_dir() or not files or len(files) > 1 else path.parent


def _row_to_artifact(row: sqlite3.Row, files: list[ArtifactFile]) -> InstalledArtifact:
    keys = row.keys()
    raw_meta = row["metadata"] if "metadata" in keys else None
    meta = json.loads(raw_meta) if raw_meta else {}
    root = meta.pop("_root", None) if isinstance(meta, dict) else None
    return InstalledArtifact(
        id=row["id"],
        model=row["model"],
        engine=row["engine"],
        variant=row["variant"],
        format=row["format"],
        repo_id=row["repo_id"],
        revision=row["revision"],
        path=row["path"],
        root=root or row["path"],
        size_bytes=row["size_bytes"],
        source=row["source"],
        owned=bool(row["owned"]),
        created_at=row["created_at"],
        files=files,
        metadata=meta,
    )


def _files_of(conn: sqlite3.Connection, artifact_id: int) -> list[ArtifactFile]:
    rows = conn.execute(
        "SELECT * FROM artifact_files WHERE artifact_id = ? ORDER BY relpath", (artifact_id,)
    ).fetchall()
    return [
        ArtifactFile(
            relpath=r["relpath"],
            size_bytes=r["size_bytes"],
            sha256=r["sha256"],
            etag=r["etag"],
            mtime_ns=r["mtime_ns"],
        )
        for r in rows
    ]


def register_artifact(
    *,
    model: str,
    engine: str,
    variant: str,
    format: str,
    path: Path,
    root: Path,
    files: list[ArtifactFile],
    source: str,
    owned: bool,
    repo_id: str | None = None,
    revision: str | None = None,
    metadata: dict[str, object] | None = None,
) -> InstalledArtifact:
    """Record a verified artifact and its files in one transaction (replacing the same key).

    Callers register only after every file is complete and verified: the catalog never
    lists a partial artifact. Deployments of a replaced registration move to the new one;
    files famous owned for it in another folder under models/ are deleted after the commit
    (else they would linger as an "unfinished download"); a user's own files never are.
    """
    conn = connect(create=True)
    assert conn is not None
    meta = dict(metadata or {})
    meta["_root"] = str(root)
    size = sum(f.size_bytes for f in files)
    key = (model, engine, variant)
    try:
        with transaction(conn):
            conn.execute("PRAGMA defer_foreign_keys = ON")  # deployments are re-pointed below
            replaced = [
                _row_to_artifact(r, [])
                for r in conn.execute(
                    "SELECT * FROM artifacts WHERE model = ? AND engine = ? AND variant = ?", key
                )
            ]
            busy = {a.id for a in replaced if _deployments_using(conn, a.id)}
            conn.execute(
                "DELETE FROM artifacts WHERE model = ? AND engine = ? AND variant = ?", key
            )
            cur = conn.execute(
                "INSERT INTO artifacts (model, engine, variant, format, repo_id, revision, path,"
                " size_bytes, source, owned, created_at, metadata)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    model,
                    engine,
                    variant,
                    format,
                    repo_id,
                    revision,
                    str(path),
                    size,
                    source,
                    int(owned),
                    _now(),
                    json.dumps(meta, default=str),
                ),
            )
            artifact_id = cur.lastrowid
            conn.executemany(
                "INSERT INTO artifact_files (artifact_id, relpath, size_bytes, sha256, etag,"
                " mtime_ns) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (artifact_id, f.relpath, f.size_bytes, f.sha256, f.etag, f.mtime_ns)
                    for f in files
                ],
            )
            for old in replaced:
                conn.execute(
                    "UPDATE deployments SET artifact_id = ? WHERE artifact_id = ?",
                    (artifact_id, old.id),
                )
        for old in replaced:
            if old.id not in busy and not _shared_root(conn, old.root, -1):
                _delete_replaced(old, root)
        row = conn.execute("SELECT * FROM artifacts WHERE id = ?", (artifact_id,)).fetchone()
        return _row_to_artifact(row, _files_of(conn, artifact_id))
    finally:
        conn.close()


def _delete_replaced(old: InstalledArtifact, new_root: Path) -> None:
    """Delete the folder of a registration just replaced, when famous made it under models/
    and the new registration does not live in (or around) it. A running engine's files stay
    (the caller skips those); a crash before this leaves an orphan that prune removes."""
    try:
        old_root, new = Path(old.root).resolve(), new_root.resolve()
    except OSError:
        return
    if old_root == new or old_root in new.parents or new in old_root.parents:
        return
    if models_dir().resolve() in old_root.parents:
        _delete_files(old)


def list_artifacts(
    model: str | None = None, *, with_files: bool = False
) -> list[InstalledArtifact]:
    """Installed artifacts (all, or of ``model`` by name or repo id); [] with no catalog."""
    conn = connect(create=False)
    if conn is None:
        return []
    try:
        if model is None:
            rows = conn.execute(
                "SELECT * FROM artifacts ORDER BY model, engine, variant"
            ).fetchall()
        else:
            rows = conn.execute(
                "SELECT * FROM artifacts WHERE model = ? OR lower(repo_id) = lower(?)"
                " ORDER BY model, engine, variant",
                (model, model),
            ).fetchall()
        return [_row_to_artifact(r, _files_of(conn, r["id"]) if with_files else []) for r in rows]
    finally:
        conn.close()


def installed_artifacts(model: str) -> list[InstalledArtifact]:
    """What is installed for ``model`` (name or repo id), with files and checksums."""
    return list_artifacts(model, with_files=True)


def find_artifact(
    model: str, engine: str | None = None, variant: str | None = None
) -> InstalledArtifact | None:
    """The newest installed artifact of ``model`` matching engine/variant when given."""
    found = [
        a
        for a in installed_artifacts(model)
        if (engine is None or a.engine == engine) and (variant is None or a.variant == variant)
    ]
    found.sort(key=lambda a: a.created_at, reverse=True)
    return found[0] if found else None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_artifact(artifact: InstalledArtifact, *, deep: bool = False) -> list[str]:
    """Problems with the files on disk ([] = servable). A file whose mtime changed since it
    was verified is re-hashed (``deep`` re-hashes all)."""
    problems = []
    root = Path(artifact.root)
    for f in artifact.files:
        path = root / f.relpath
        try:
            st = path.stat()
        except OSError:
            problems.append(f"{f.relpath}: missing")
            continue
        if st.st_size != f.size_bytes:
            problems.append(f"{f.relpath}: {st.st_size} bytes, expected {f.size_bytes}")
            continue
        if f.sha256 and (deep or f.mtime_ns is None or st.st_mtime_ns != f.mtime_ns):
            actual = file_sha256(path)
            if actual != f.sha256:
                problems.append(f"{f.relpath}: sha256 {actual[:12]}… expected {f.sha256[:12]}…")
    return problems


def _deployments_using(conn: sqlite3.Connection, artifact_id: int) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM deployments WHERE artifact_id = ? AND status IN (?, ?)",
        (artifact_id, *ACTIVE_DEPLOYMENT),
    ).fetchall()
    return [r["name"] for r in rows]


def _shared_root(conn: sqlite3.Connection, root: str, artifact_id: int) -> bool:
    for row in conn.execute("SELECT metadata, path FROM artifacts WHERE id != ?", (artifact_id,)):
        meta = json.loads(row["metadata"]) if row["metadata"] else {}
        if (meta.get("_root") or row["path"]) == root:
            return True
    return False


def _delete_files(artifact: InstalledArtifact) -> int:
    """Delete an owned artifact's folder; bytes freed.

    Only ever under ``models/`` (pulled) or ``packages/`` (built by ``famous build``). A
    package famous built (it holds ``build.json``) goes with its last artifact: without
    its files it could neither be served nor pulled again.
    """
    root = Path(artifact.root)
    bases = [models_dir().resolve(), (famous_home() / "packages").resolve()]
    try:
        resolved = root.resolve()
    except OSError:
        return 0
    base = next((b for b in bases if b in resolved.parents), None)
    if not artifact.owned or base is None:
        return 0
    freed = _tree_size(resolved)
    shutil.rmtree(resolved, ignore_errors=True)
    package = resolved.parent
    if package.parent == bases[1] and (package / "build.json").is_file():
        shutil.rmtree(package, ignore_errors=True)
    parent = resolved.parent
    while parent != base and base in parent.parents:  # drop empty repo folders
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent
    return freed


def remove_artifacts(
    model: str, engine: str | None = None, variant: str | None = None, *, force: bool = False
) -> list[InstalledArtifact]:
    """Forget and delete (when famous owns the files) the matching artifacts.

    Raises ArtifactInUse when a running deployment uses one (unless ``force``).
    """
    targets = [
        a
        for a in installed_artifacts(model)
        if (engine is None or a.engine == engine) and (variant is None or a.variant == variant)
    ]
    if not targets:
        return []
    conn = connect(create=False)
    assert conn is not None
    try:
        for artifact in targets:
            users = _deployments_using(conn, artifact.id)
            if users and not force:
                raise ArtifactInUse(artifact, users)
        delete: list[InstalledArtifact] = []
        with transaction(conn):
            for artifact in targets:
                conn.execute(
                    "UPDATE deployments SET artifact_id = NULL WHERE artifact_id = ?",
                    (artifact.id,),
                )
                conn.execute("DELETE FROM artifacts WHERE id = ?", (artifact.id,))
                if not _shared_root(conn, artifact.root, artifact.id):
                    delete.append(artifact)
        for artifact in delete:  # files go after the rows: a crash leaves an orphan, not a lie
            _delete_files(artifact)
        return targets
    finally:
        conn.close()


def _tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _artifact_dirs() -> Iterable[Path]:
    """Folders under models/ that hold (or held) one artifact: ``hub/REPO/VARIANT``, ``local/X``."""
    base = models_dir()
    for kind in ("hub", "local"):
        top = base / kind
        if not top.is_dir():
            continue
        if kind == "local":
            yield from (p for p in top.iterdir() if p.is_dir())
            continue
        for repo in top.iterdir():
            if repo.is_dir():
                yield from (p for p in repo.iterdir() if p.is_dir())


def disk_usage() -> DiskUsage:
    artifacts = list_artifacts()
    roots = {str(Path(a.root).resolve()) for a in artifacts}
    partial = 0
    orphans = []
    for folder in _artifact_dirs():
        partial_dir = folder / ".famous" / "partial"
        if str(folder.resolve()) not in roots:  # a pull or import that never finished
            orphans.append(str(folder))
            partial += _tree_size(folder)
        elif partial_dir.is_dir():
            partial += _tree_size(partial_dir)
    free = None
    probe = models_dir()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    with contextlib.suppress(OSError):
        free = shutil.disk_usage(probe).free
    seen: set[str] = set()
    total = 0
    for a in artifacts:
        if a.owned and a.root not in seen:
            seen.add(a.root)
            total += a.size_bytes
    return DiskUsage(
        artifacts=artifacts,
        total_bytes=total,
        partial_bytes=partial,
        orphan_paths=sorted(orphans),
        free_bytes=free,
    )


def _registered(folder: Path) -> bool:
    return str(folder.resolve()) in {str(Path(a.root).resolve()) for a in list_artifacts()}


def prune(keep_ids: set[int], *, dry_run: bool = False) -> PruneReport:
    """Remove artifacts not in ``keep_ids`` (and not deployed) plus unfinished downloads
    nobody is running. The caller decides what is needed (the current engine choices)."""
    from famous.store.locks import try_held

    removed: list[InstalledArtifact] = []
    freed = 0
    conn = connect(create=False)
    artifacts = list_artifacts()
    if conn is not None:
        try:
            for artifact in artifacts:
                if artifact.id in keep_ids or _deployments_using(conn, artifact.id):
                    continue
                removed.append(artifact)
        finally:
            conn.close()
    kept_roots = {a.root for a in artifacts if a not in removed}
    if not dry_run:
        for artifact in removed:
            remove_artifacts(artifact.model, artifact.engine, artifact.variant)
    freed = sum(
        a.size_bytes for a in {a.root: a for a in removed if a.root not in kept_roots}.values()
    )
    paths = []
    usage = disk_usage()
    for orphan in usage.orphan_paths:
        with try_held(orphan) as got:  # a pull or import in progress holds its folder's lock
            if not got or _registered(Path(orphan)):  # it finished since disk_usage() looked
                continue
            size = _tree_size(Path(orphan))
            paths.append(orphan)
            freed += size
            if not dry_run:
                shutil.rmtree(orphan, ignore_errors=True)
    return PruneReport(removed=removed, removed_paths=paths, freed_bytes=freed, dry_run=dry_run)
