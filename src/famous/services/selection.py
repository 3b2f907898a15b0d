"""What the edges ask about a selection (``famous.matchmaker.resolve`` makes it): can its
engine start here, and which settings does a runtime take."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from famous.matchmaker.resolve import Resolved, machine_report, resolve_selection

log = logging.getLogger("famous.services")

__all__ = ["Resolved", "check_runtime", "machine_report", "resolve_selection", "runtime_settings"]


@dataclass(frozen=True)
class RuntimeCheck:
    """The chosen engine's runtime is missing: how to install it, and what runs right now."""

    engine: str
    runtime: str
    install_command: str
    alternative: str | None  # a compatible engine whose runtime is installed

    def explain(self, model: str) -> str:
        text = (
            f"engine {self.engine} of {model} needs the {self.runtime} runtime, which is not "
            f"installed; install it with: {self.install_command}"
        )
        if self.alternative:
            text += (
                f"\nright now engine {self.alternative} would run instead: "
                f"famous run {model} --engine {self.alternative}"
            )
        return text


def missing_install(runtime: str) -> str | None:
    """The install command when ``runtime`` cannot start here, else None."""
    from famous.runtimes import RuntimeNotInstalled, UnknownRuntime, get_runtime

    try:
        get_runtime(runtime).check_installed()
    except RuntimeNotInstalled as exc:
        if runtime == "llamacpp" and llama_server_buildable():
            return None  # famous run and pull build llama-server before they serve
        return exc.install_command
    except UnknownRuntime:
        return f"(famous has no adapter for runtime {runtime!r})"
    return None


def llama_server_buildable() -> bool:
    """famous may build llama-server here (``llama-server.build`` auto, a C++ toolchain and
    CMake at hand): llama.cpp models need nothing installed beforehand."""
    from famous.runtimes.components import build_policy, missing_toolchain

    try:
        return build_policy() == "auto" and missing_toolchain("cpu") is None
    except Exception:  # an unreadable configuration: the install hint is the safer answer
        return False


def check_runtime(resolved: Resolved) -> RuntimeCheck | None:
    """None when the selected engine can start here; else the install hint and an alternative."""
    engine = resolved.selection.engine
    install = missing_install(engine.runtime)
    if install is None:
        return None
    alternative = next(
        (
            ev.engine
            for ev in resolved.selection.evaluations
            if ev.compatible
            and not ev.experimental
            and ev.engine != engine.name
            and missing_install(resolved.package.engines[ev.engine].runtime) is None
        ),
        None,
    )
    return RuntimeCheck(engine.name, engine.runtime, install, alternative)


def runtime_settings(runtime: str) -> dict[str, str]:
    """Configuration keys ``runtime`` understands (kebab-case, as manifests write them), each
    with what it does; empty for a runtime famous has no adapter for. Read from plain data:
    no adapter is imported."""
    from famous.runtimes.keys import RUNTIME_KEYS

    keys = RUNTIME_KEYS.get(runtime, {})
    return {key.replace("_", "-"): doc for key, doc in keys.items()}


def artifact_configuration(model: str, engine: str, file_format: str) -> tuple[str, dict[str, Any]]:
    """Runtime and effective configuration (engine < user < environment) of ``model``'s
    artifact for ``engine``: what the gateway launches it with."""
    from famous.manifests.generic import artifact_engine
    from famous.store.config import resolve

    runtime, engine_config = artifact_engine(model, engine, file_format)
    keys = runtime_settings(runtime)
    try:
        settings = resolve(engine_config, model=model, runtime_keys=keys)
    except Exception as exc:  # an unreadable user file must not stop serving the model
        log.warning("user configuration ignored for %s: %s", model, exc)
        return runtime, engine_config
    configuration = {
        k: s.value
        for k, s in settings.items()
        if s.value is not None and (k in engine_config or k in keys)
    }
    return runtime, configuration


def every_runtime_key() -> list[str]:
    """Every engine key some runtime understands: what ``famous set KEY=VALUE`` (no
    ``--model``) may set for all models, each applying where the engine understands it."""
    from famous.runtimes.keys import RUNTIME_KEYS

    return sorted({key for runtime in RUNTIME_KEYS for key in runtime_settings(runtime)})


def scoped_configuration(model: str) -> tuple[dict[str, object], list[str]]:
    """What ``famous get/set --model MODEL`` scope to: the engine's configuration and its
    runtime's other keys. A package name resolves to the engine selected for this machine;
    an installed model without a package (imported, or pulled from a repo) to its newest
    artifact's engine."""
    from famous.manifests.errors import PackageNotFound
    from famous.manifests.generic import artifact_engine
    from famous.store.artifacts import list_artifacts

    try:
        engine = resolve_selection(model).selection.engine
        return dict(engine.configuration), sorted(runtime_settings(engine.runtime))
    except PackageNotFound:
        installed = sorted(list_artifacts(model), key=lambda a: a.created_at, reverse=True)
        if not installed:
            raise
        artifact = installed[0]
        runtime, config = artifact_engine(artifact.model, artifact.engine, artifact.format)
        return config, sorted(runtime_settings(runtime))
