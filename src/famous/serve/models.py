"""Which models the gateway can serve: the store's installed artifacts plus registered files.

A ``ModelSpec`` is everything the scheduler needs to start a model: the file, the runtime,
the engine's effective configuration and a memory estimate. Catalog rows are read on every
lookup (a small SQLite query), so a model pulled while the gateway runs is servable at once.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from famous.formats import gguf_meta
from famous.formats.projector import is_projector, projector_beside
from famous.plain import to_plain
from famous.runtimes.llamacpp import auto_slots

log = logging.getLogger("famous.serve")

DEFAULT_OVERHEAD = 384 * 1024**2


@dataclass
class ModelSpec:
    """A servable model: what file, on which runtime, with which settings."""

    name: str
    path: Path
    runtime: str = "llamacpp"
    engine: str = "llamacpp"
    configuration: dict[str, Any] = field(default_factory=dict)
    memory_bytes: int | None = None
    embedding: bool | None = None
    artifact_id: int | None = None
    source: str = "registered"
    package: str | None = None  # the catalog model it was pulled as: its engine's env rules

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.name,
            "object": "model",
            "owned_by": "famous",
            "engine": self.engine,
            "runtime": self.runtime,
            "source": self.source,
        }


def _gguf_file(path: Path) -> Path | None:
    if path.is_file():
        return path if path.suffix == ".gguf" else None
    if path.is_dir():
        shards = sorted(path.rglob("*.gguf"))
        first = [p for p in shards if "-00001-of-" in p.name]
        plain = [p for p in shards if not is_projector(p.name)]
        return (first or plain or [None])[0]
    return None


def estimate_memory(path: Path, configuration: Mapping[str, Any] | None = None) -> int | None:
    """weights + KV cache (2 × layers × context × kv-heads × head-dim × 2 bytes, for each of
    llama-server's slots) + overhead.

    The matchmaker's formula, read from the GGUF itself so registered files get one too.
    """
    gguf = _gguf_file(path)
    if gguf is None:
        try:
            return _weights_estimate(path, path.stat().st_mtime_ns)
        except OSError:
            return None
    try:
        stat = gguf.stat()
    except OSError:
        return None
    meta = gguf_meta.cached_metadata(gguf)
    if not meta:  # unreadable header: at least the weights must fit
        return stat.st_size + DEFAULT_OVERHEAD
    trained_ctx = gguf_meta.context_length(meta) or 0
    per_token = gguf_meta.kv_bytes_per_token(meta) or 0
    files = (
        [gguf, *filter(None, [projector_beside(gguf)])] if path.is_file() else path.rglob("*.gguf")
    )
    weights = sum(p.stat().st_size for p in files)  # a vision projector is loaded too
    cfg = {str(k).replace("-", "_"): v for k, v in (configuration or {}).items()}
    ctx = int(cfg.get("ctx_size") or cfg.get("n_ctx") or min(trained_ctx, 4096))
    slots = cfg.get("parallel") or auto_slots(per_token, ctx) or 1  # llama-server's slots
    return int(weights + per_token * ctx * int(slots) + DEFAULT_OVERHEAD)


def _check_model(path: Path) -> None:
    """``famous import``'s own checks (a sound GGUF, or a folder with a config and weights):
    ValueError names what is wrong, before anything is registered."""
    from famous.hub.errors import BadModelFile
    from famous.hub.local import check_source

    relpaths = (
        [path.name]
        if path.is_file()
        else [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
    )
    try:
        check_source(path, relpaths)
    except BadModelFile as exc:
        raise ValueError(str(exc)) from None


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".pte", ".tflite", ".npz", ".onnx")


@functools.lru_cache(maxsize=256)
def _weights_estimate(path: Path, mtime_ns: int) -> int | None:
    """Not a GGUF (safetensors, MLX, OpenVINO IR, edge programs): the weight files' size plus
    the runtime's overhead, so a memory budget still applies (the KV cache is not counted).
    Walked once per version of the folder (``mtime_ns``), not per request."""
    del mtime_ns
    try:
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        weights = sum(p.stat().st_size for p in files if p.suffix.lower() in WEIGHT_SUFFIXES)
    except OSError:
        return None
    return weights + DEFAULT_OVERHEAD if weights else None


class ModelRegistry:
    """The models this gateway serves: files registered with it (tests, ``famous run
    ./file.gguf``, ``POST /famous/api/models``) over the installed artifacts in the catalog."""

    def __init__(self, specs: list[ModelSpec] | None = None, use_store: bool = True) -> None:
        self._registered: dict[str, ModelSpec] = {}
        self._lock = threading.Lock()
        self.use_store = use_store
        for spec in specs or []:
            self.register(spec)

    def register(self, spec: ModelSpec) -> ModelSpec:
        """Add (or replace) a model the gateway may serve; files are checked, not trusted."""
        path = Path(spec.path).expanduser().resolve()
        try:
            found = path.exists()
        except OSError as exc:  # a name too long, a folder it may not enter
            raise ValueError(
                f"model path {str(path)[:300]} cannot be read: {exc.strerror}"
            ) from None
        if not found:
            raise FileNotFoundError(f"model file {path} does not exist")
        _check_model(path)
        spec.path = path
        if spec.memory_bytes is None:
            spec.memory_bytes = estimate_memory(path, spec.configuration)
        with self._lock:
            self._registered[spec.name] = spec
        return spec

    def unregister(self, name: str) -> bool:
        with self._lock:
            return self._registered.pop(name, None) is not None

    def get(self, name: str) -> ModelSpec | None:
        with self._lock:
            spec = self._registered.get(name)
        if spec is not None:
            return spec
        return self._from_store(name) if self.use_store else None

    def names(self) -> list[str]:
        with self._lock:
            names = set(self._registered)
        if self.use_store:
            names.update(row["model"] for row in self._store_rows())
        return sorted(names)

    def all(self) -> list[ModelSpec]:
        out = []
        for name in self.names():
            spec = self.get(name)
            if spec is not None:
                out.append(spec)
        return out

    # -- the store's catalog ---------------------------------------------------------------

    def _store_rows(self, model: str | None = None) -> list[Mapping[str, Any]]:
        """Installed artifacts (by catalog name or repo id), newest first."""
        from famous.store.artifacts import list_artifacts
        from famous.store.db import CatalogError

        try:
            found = list_artifacts(model)
        except CatalogError as exc:
            log.warning("catalog unreadable: %s", exc)
            return []
        rows = [to_plain(a) for a in found]
        rows.sort(key=lambda r: r["created_at"], reverse=True)
        return rows

    def _from_store(self, name: str) -> ModelSpec | None:
        rows = [r for r in self._store_rows(name) if Path(r["path"]).exists()]
        if not rows:
            return None
        row = self._preferred(rows[0]["model"], rows)
        from famous.services.selection import artifact_configuration

        runtime, configuration = artifact_configuration(row["model"], row["engine"], row["format"])
        path = Path(row["path"])
        return ModelSpec(
            name=name,
            path=path,
            runtime=runtime,
            engine=row["engine"],
            configuration=configuration,
            memory_bytes=estimate_memory(path, configuration),
            artifact_id=row["id"],
            source="catalog",
            package=row["model"],
        )

    @staticmethod
    def _preferred(name: str, rows: list[Mapping[str, Any]]) -> Mapping[str, Any]:
        """The artifact of the engine the user pinned (``use-engine``), else the newest."""
        try:
            from famous.store.selections import pinned_engine

            pinned = pinned_engine(name)
        except Exception:  # the selection store is optional for serving
            pinned = None
        if pinned is not None:
            for row in rows:
                if row["engine"] == pinned.engine:
                    return row
        return rows[0]
