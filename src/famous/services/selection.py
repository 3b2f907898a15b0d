"""Which engine runs MODEL on this machine: package + machine + the user's pin → Selection."""

from __future__ import annotations

from dataclasses import dataclass

from famous.hardware.report import HardwareReport
from famous.manifests.loader import find_package
from famous.manifests.schema import ModelPackage
from famous.matchmaker import NoCompatibleEngine, Selection, select
from famous.store.selections import PinnedEngine, pinned_engine


def machine_report(root: str | None = None) -> HardwareReport:
    """Detect the machine: the real one, or a captured root (``--root`` / FAMOUS_HARDWARE_ROOT)."""
    from famous.hardware.detector import detect
    from famous.hardware.host import Host

    return detect(Host.from_env(root))


@dataclass(frozen=True)
class Resolved:
    package: ModelPackage
    report: HardwareReport
    selection: Selection
    pin: PinnedEngine | None


def resolve_selection(
    model: str,
    *,
    engine: str | None = None,
    option: str | None = None,
    root: str | None = None,
    report: HardwareReport | None = None,
    package: ModelPackage | None = None,
    force: bool = False,
) -> Resolved:
    """Select for ``model``; an engine pinned with ``use-engine`` applies unless one is named.

    A pin that no longer fits this machine raises NoCompatibleEngine, telling how to unpin.
    """
    package = package or find_package(model)
    report = report or machine_report(root)
    pin = pinned_engine(package.name) if engine is None else None
    if pin is not None and pin.engine in package.engines:
        try:
            selection = select(
                package, report, engine=pin.engine, option=option, force=force or pin.forced
            )
        except NoCompatibleEngine as exc:
            raise NoCompatibleEngine(
                package.name,
                exc.evaluations,
                f"engine {pin.engine!r} was pinned with `famous use-engine` but cannot run here; "
                f"run `famous use-engine {package.name} --auto` to let famous choose:",
            ) from None
        return Resolved(package, report, selection, pin)
    selection = select(package, report, engine=engine, option=option, force=force)
    return Resolved(package, report, selection, None)


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


def _missing_install(runtime: str) -> str | None:
    """The install command when ``runtime`` cannot start here, else None."""
    from famous.runtimes import RuntimeNotInstalled, UnknownRuntime, get_runtime

    try:
        get_runtime(runtime).check_installed()
    except RuntimeNotInstalled as exc:
        return exc.install_command
    except UnknownRuntime:
        return f"(famous has no adapter for runtime {runtime!r})"
    return None


def check_runtime(resolved: Resolved) -> RuntimeCheck | None:
    """None when the selected engine can start here; else the install hint and an alternative."""
    engine = resolved.selection.engine
    install = _missing_install(engine.runtime)
    if install is None:
        return None
    alternative = next(
        (
            ev.engine
            for ev in resolved.selection.evaluations
            if ev.compatible
            and not ev.experimental
            and ev.engine != engine.name
            and _missing_install(resolved.package.engines[ev.engine].runtime) is None
        ),
        None,
    )
    return RuntimeCheck(engine.name, engine.runtime, install, alternative)


def runtime_settings(runtime: str) -> dict[str, str]:
    """Configuration keys ``runtime`` understands (kebab-case, as manifests write them), each
    with what it does; empty for a runtime famous has no adapter for."""
    from famous.runtimes import UnknownRuntime, get_runtime

    try:
        adapter = get_runtime(runtime)
    except UnknownRuntime:
        return {}
    return {key.replace("_", "-"): doc for key, doc in adapter.configuration_keys.items()}
