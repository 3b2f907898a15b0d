"""llama-server by default: before ``famous run`` or ``famous pull`` serves a GGUF, build
llama.cpp's own server for this machine when the model would otherwise fall back to
llama-cpp-python's (which runs concurrent requests one after another).

The build happens once per machine (``famous.runtimes.components`` keys it by version,
backend and CPU), in the foreground with its time stated up front; ``famous set
llama-server.build=never`` keeps llama_cpp.server instead. The gateway itself never builds:
a model it starts without llama-server says why in ``famous ps``.
"""

from __future__ import annotations

from pathlib import Path

from famous.runtimes.components import build_policy

__all__ = ["backend_to_build", "build_policy"]


def _model_runtime(model: str, local_path: str | None) -> tuple[str, dict[str, object]] | None:
    """(runtime, configuration) ``model`` would be launched with, or None when unknown."""
    from famous.services.selection import artifact_configuration

    if local_path is not None:
        if Path(local_path).suffix.lower() != ".gguf":
            return None
        return artifact_configuration(model, "cpu", "gguf")
    from famous.store.artifacts import list_artifacts
    from famous.store.db import CatalogError

    try:
        found = [a for a in list_artifacts(model) if Path(a.path).exists()]
    except CatalogError:
        return None
    if not found:
        return None
    newest = max(found, key=lambda a: a.created_at)
    return artifact_configuration(newest.model, newest.engine, newest.format)


def backend_to_build(model: str, local_path: str | None = None) -> str | None:
    """The llama.cpp backend (cpu, cuda, …) to build llama-server for before serving
    ``model``; None when it is no llama.cpp model, its configuration picks
    llama-cpp-python, or a llama-server is already at hand."""
    from famous.runtimes.llamacpp import backend, locate_llama_server, server_choice

    launched = _model_runtime(model, local_path)
    if launched is None or launched[0] != "llamacpp":
        return None
    runtime_config = launched[1]
    try:
        if server_choice(runtime_config)[0] == "llama-cpp-python":
            return None
        if locate_llama_server(runtime_config) is not None:
            return None
        return backend(runtime_config)
    except ValueError:  # a bad server/backend value: the launch reports it
        return None
